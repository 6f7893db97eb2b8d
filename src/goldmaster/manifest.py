"""The manifest: canonical YAML that describes everything in a bundle."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any

import yaml

from . import SCHEMA_VERSION
from .errors import BundleFormatError

SCHEMA = f"goldmaster/v{SCHEMA_VERSION}"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
SUFFIX = ".gm.tar.zst"


class _Dumper(yaml.SafeDumper):
    """Safe YAML with block style, kept key order and literal multi-line strings."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data: dict[str, Any]) -> bytes:
    """Render ``data`` as canonical YAML: the same data always gives the same bytes."""
    text = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 20,
    )
    return text.encode("utf-8")


def load(raw: bytes) -> dict[str, Any]:
    """Parse and check a manifest; raise BundleFormatError when it is not one."""
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleFormatError(f"manifest.yaml is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise BundleFormatError(
            f"manifest.yaml is not valid YAML: {yaml_problem(exc)}",
            "the bundle is damaged or was not written by goldmaster",
        ) from exc
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("goldmaster/"):
        raise BundleFormatError("not a goldmaster bundle: manifest.yaml has no goldmaster schema")
    if data["schema"] != SCHEMA:
        raise BundleFormatError(
            f"unsupported manifest schema {data['schema']!r}; this goldmaster reads {SCHEMA}",
            "upgrade goldmaster",
        )
    files = data.get("files")
    if not isinstance(files, list) or not all(_valid_entry(f) for f in files):
        raise BundleFormatError("manifest.yaml has an invalid files list")
    return data


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("path"), str)
        and isinstance(entry.get("size"), int)
        and entry["size"] >= 0
        and isinstance(entry.get("sha256"), str)
        and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None
    )


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a safe bundle name or version, else raise."""
    from .errors import UsageError

    if not NAME_PATTERN.match(value):
        raise UsageError(
            f"invalid {what} {value!r}",
            "use letters, digits, '.', '_', '+' or '-', starting with a letter or digit",
        )
    return value


def timestamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def top_folder(name: str, version: str) -> str:
    return f"{name}-{version}"


def content_digest(manifest: dict[str, Any]) -> str:
    """Digest of the manifest without its image section and image files.

    The container image is built after the other members are hashed and is
    labelled with this digest, so the label can be checked against the bundle.
    """
    trimmed = {k: v for k, v in manifest.items() if k != "image"}
    trimmed["files"] = [f for f in manifest.get("files", []) if not f["path"].startswith("image/")]
    return "sha256:" + hashlib.sha256(dump(trimmed)).hexdigest()


def sha256sums(entries: list[tuple[str, str]]) -> bytes:
    """Render (path, digest) pairs in the format that ``sha256sum -c`` reads."""
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(entries)).encode()


def parse_sha256sums(raw: bytes) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if not match:
            raise BundleFormatError(f"SHA256SUMS has an invalid line: {line[:80]!r}")
        sums[match.group(2)] = match.group(1)
    return sums


def readme(manifest: dict[str, Any]) -> bytes:
    """Render the README.txt that explains how to check and restore the bundle by hand."""
    top = top_folder(manifest["name"], manifest["version"])
    text = f"""\
{top}: a goldmaster bundle
{'=' * (len(top) + 22)}

This archive is a golden master of the model {manifest['name']} version
{manifest['version']}, made by goldmaster {manifest['goldmaster']} on {manifest['created']}.
Everything here can be checked and used without goldmaster.

Contents
  manifest.yaml   what is in the bundle: files, code, environment, system
  SHA256SUMS      sha256 of every other file, in sha256sum format
  weights/        the model files as they were
  code/           the code (git-tracked files), with git/ for its state
  env/            Python environment records and lockfiles (when captured)
  system/         raw outputs of the system and GPU probes (when captured)
  image/          the container image and its Dockerfile (when captured)
  checks/         recorded outputs of the golden-output checks (when captured)

Verify by hand
  tar --zstd -xf {top}{SUFFIX}
  cd {top} && sha256sum -c SHA256SUMS

Restore by hand
  Create a virtual environment with the Python version recorded under
  environment in manifest.yaml, then:
    python -m venv .venv
    .venv/bin/pip install --no-index --require-hashes -r env/requirements.lock
  (without vendored wheels in env/wheels, drop --no-index and add the
  index URLs recorded in the manifest). Load a saved image with
    docker load -i image/image.tar

With goldmaster
  goldmaster verify {top}{SUFFIX}
  goldmaster restore {top}{SUFFIX} DEST
"""
    return text.encode()


def model_digest(manifest: dict[str, Any]) -> str:
    """Return the digest of the weights: sha256 over their ``sha256sum`` listing.

    The listing has one ``DIGEST  PATH`` line per file under ``weights/``,
    sorted by path, with paths relative to ``weights/``. Two bundles of the
    same model files have the same model digest whatever else changed.
    """
    prefix = "weights/"
    entries = [
        (entry["path"][len(prefix) :], entry["sha256"])
        for entry in manifest.get("files", [])
        if entry["path"].startswith(prefix)
    ]
    return "sha256:" + hashlib.sha256(sha256sums(entries)).hexdigest()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Describe a YAML parse error on one line, with its 1-based line and column."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or exc.context or "invalid YAML"
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())
