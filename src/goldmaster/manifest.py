"""The manifest: canonical YAML that describes everything in a bundle."""

from __future__ import annotations

import hashlib
import re
import shlex
from datetime import datetime, timezone
from typing import Any

import yaml

from . import SCHEMA_VERSION
from .codec import ByteGroup, undo_command
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

# PyYAML's wheels include libyaml, whose parser reads a 20,000-file manifest
# several times faster than the pure-Python parser. Both feed the same safe
# constructor and resolver, so they build the same data.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump(data: dict[str, Any]) -> bytes:
    """Render ``data`` as canonical YAML: the same data always gives the same bytes."""
    files = data.get("files")
    if not isinstance(files, list) or not files:
        return _dump(data)
    # The files list is most of a large manifest. When all its entries are
    # simple, _dump_entry renders them much faster than the YAML emitter, and
    # gives the same text.
    entries = [_dump_entry(entry) for entry in files]
    if any(entry is None for entry in entries):
        return _dump(data)
    marker = f"{_FILES_MARKER}-{len(files)}"
    rest = _dump(dict(data, files=marker))
    line = f"files: {marker}\n".encode()
    if rest.count(line) != 1:
        return _dump(data)
    return rest.replace(line, b"files:\n" + b"".join(entries))  # type: ignore[arg-type]


def _dump(data: Any) -> bytes:
    text = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 20,
    )
    return text.encode("utf-8")


_FILES_MARKER = "goldmaster-files-list"
# Strings that the YAML emitter writes without quotes when they resolve to
# str: no spaces, no indicator characters, no leading dot or dash.
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./+-]*")
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"
_SIMPLE_KEYS = (("path", "size", "sha256"), ("path", "size", "sha256", "same_as"))


# Plain strings that YAML reads back as strings, so the resolver is skipped.
# A "/" appears in no int, float, bool, null or timestamp. A run of hex
# digits with a letter, without a dot or a leading 0b (a binary int), is
# neither a number nor a date.
_SURELY_STR = re.compile(r"[^/]*/.*|(?!0b)[0-9a-f]*[a-f][0-9a-f]*")


def _plain(value: Any) -> bool:
    return (
        type(value) is str
        and _PLAIN.fullmatch(value) is not None
        and (
            _SURELY_STR.fullmatch(value) is not None
            or _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _STR_TAG
        )
    )


def _dump_entry(entry: Any) -> bytes | None:
    """Render one files-list entry as the YAML emitter would inside the list,
    or return None when only a full dump renders it exactly.

    The common entry (path, size, sha256 and an optional same_as, in that
    order, with strings that need no quotes) is formatted directly. Other
    entries whose keys and strings all need no quotes are dumped alone, which
    gives the same text as inside the list.
    """
    if (
        type(entry) is dict
        and tuple(entry) in _SIMPLE_KEYS
        and type(entry["size"]) is int
        and all(_plain(entry[k]) for k in entry if k != "size")
    ):
        text = f"- path: {entry['path']}\n  size: {entry['size']}\n  sha256: {entry['sha256']}\n"
        if "same_as" in entry:
            text += f"  same_as: {entry['same_as']}\n"
        return text.encode("ascii")
    if _all_plain(entry):
        return _dump([entry])
    return None


def _all_plain(value: Any) -> bool:
    if type(value) is dict:
        return all(_plain(k) and _all_plain(v) for k, v in value.items())
    return type(value) is int or _plain(value)


def load(raw: bytes) -> dict[str, Any]:
    """Parse and check a manifest; raise BundleFormatError when it is not one."""
    try:
        text = raw.decode("utf-8")
        data = _load_fast(text)
        if data is None:
            data = yaml.load(text, Loader=_Loader)
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


# The files list as dump writes it: one entry per group of lines, each value
# on its own line. _load_fast parses such a list without the YAML library.
_FILES_START = re.compile(r"^files:\n", re.MULTILINE)
_KEY_START = re.compile(r"[A-Za-z_][A-Za-z0-9_]*:[ \n]")
_ENTRY = re.compile(
    r"- path: (\S+)\n  size: (0|[1-9][0-9]{0,17})\n  sha256: (\S+)\n(?:  same_as: (\S+)\n)?"
)


def _load_fast(text: str) -> dict[str, Any] | None:
    """Parse a manifest whose files list has only simple entries, or return
    None for the YAML library to parse it.

    The YAML library builds each of tens of thousands of entries in Python,
    which takes most of a second. Here the lines of the files list are
    matched one entry at a time and checked to be exactly what dump writes
    for those values, and the rest is parsed by the library with a stand-in
    for the list. Anything else, a comment or an unusual name included,
    returns None, so the result is always what the library would build.
    """
    starts = list(_FILES_START.finditer(text))
    marker = f"{_FILES_MARKER}-loaded"
    if len(starts) != 1 or marker in text:
        return None
    position = starts[0].end()
    files: list[dict[str, Any]] = []
    while position < len(text) and text.startswith("- ", position):
        match = _ENTRY.match(text, position)
        if match is None:
            return None
        path, size, digest, same_as = match.groups()
        entry: dict[str, Any] = {"path": path, "size": int(size), "sha256": digest}
        if same_as is not None:
            entry["same_as"] = same_as
        if _dump_entry(entry) != match.group(0).encode():
            return None
        files.append(entry)
        position = match.end()
    # The list must end where the next top-level key starts, as in dump's output.
    if not files or not (position == len(text) or _KEY_START.match(text, position)):
        return None
    rest = text[: starts[0].start()] + f"files: {marker}\n" + text[position:]
    try:
        data = yaml.load(rest, Loader=_Loader)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict) or data.get("files") != marker:
        return None
    data["files"] = files
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
    return (text + _encoded_section(manifest.get("files", []))).encode()


def _encoded_section(files: list[dict[str, Any]]) -> str:
    """Tell how to undo the bytegroup codec on each member stored with it."""
    encoded = [entry for entry in files if isinstance(entry.get("stored"), dict)]
    if not encoded:
        return ""
    lines = [
        "",
        "Weights stored with the bytegroup codec",
        "  These files are stored as NAME.bytegroup: the bytes of each value",
        "  are grouped, byte 0 of every value first, then byte 1, and so on, in",
        "  blocks, which compresses float tensors better. SHA256SUMS covers the",
        "  stored form. In the extracted folder, rebuild each file and check it",
        "  with python3 (3.8 or later) and sha256sum:",
    ]
    for entry in encoded:
        codec = ByteGroup.from_manifest(entry["stored"], entry["size"])
        lines.append("    " + undo_command(codec, entry["stored"]["path"], entry["path"]))
        check = shlex.quote(f"{entry['sha256']}  {entry['path']}")
        lines.append(f"    echo {check} | sha256sum -c")
    return "\n".join(lines) + "\n"


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
