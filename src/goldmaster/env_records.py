"""Turn probe output into origin records and a pip-installable requirements lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from goldmaster.redact import redact_url

LOCK_ARCNAME = "env/requirements.lock"
WHEELS_ARCDIR = "env/wheels"

# Installers whose distributions belong to conda's spec rather than pip's lock.
CONDA_INSTALLERS = {"conda", "mamba", "micromamba"}


def _path_from_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return unquote(parts.path)


def _inside(path: str, code_dir: Path | None) -> str | None:
    """Return ``path`` relative to the code folder, or None when it lies outside."""
    if code_dir is None:
        return None
    try:
        relative = Path(path).resolve().relative_to(code_dir.resolve())
    except (ValueError, OSError):
        return None
    return relative.as_posix()


def _archive_sha256(archive_info: dict[str, Any]) -> str | None:
    hashes = archive_info.get("hashes") or {}
    if "sha256" in hashes:
        return str(hashes["sha256"])
    legacy = archive_info.get("hash") or ""
    algorithm, _, value = legacy.partition("=")
    return value if algorithm == "sha256" and value else None


def _vcs_origin(direct_url: dict[str, Any]) -> dict[str, Any]:
    info = direct_url["vcs_info"]
    url = redact_url(direct_url.get("url", ""))
    vcs = info.get("vcs", "git")
    commit = info.get("commit_id")
    requirement_url = f"{vcs}+{url}" + (f"@{commit}" if commit else "")
    subdirectory = direct_url.get("subdirectory")
    if subdirectory:
        requirement_url += f"#subdirectory={subdirectory}"
    return {
        "kind": "vcs",
        "vcs": vcs,
        "url": url,
        "commit": commit,
        "requested_revision": info.get("requested_revision"),
        "subdirectory": subdirectory,
        "requirement_url": requirement_url,
    }


def _direct_origin(direct_url: dict[str, Any], code_dir: Path | None) -> dict[str, Any]:
    url = direct_url.get("url", "")
    if "vcs_info" in direct_url:
        return _vcs_origin(direct_url)
    path = _path_from_url(url)
    if "dir_info" in direct_url:
        editable = bool(direct_url["dir_info"].get("editable"))
        return {
            "kind": "editable" if editable else "dir",
            "path": path or redact_url(url),
            "exists": bool(path and Path(path).is_dir()),
            "in_code": _inside(path, code_dir) if path else None,
        }
    sha256 = _archive_sha256(direct_url.get("archive_info") or {})
    if path is not None:
        return {
            "kind": "file",
            "path": path,
            "exists": Path(path).is_file(),
            "in_code": _inside(path, code_dir),
            "sha256": sha256,
        }
    return {"kind": "url", "url": redact_url(url), "sha256": sha256}


def classify_origin(dist: dict[str, Any], code_dir: Path | None) -> dict[str, Any]:
    """Say where one installed distribution came from.

    PEP 610's direct_url.json records URL, VCS, local folder and
    editable installs, and a legacy ``.egg-link`` for ``setup.py develop``.
    Without either, pip and uv installed it from an index, and conda from
    its channel.
    """
    direct_url = dist.get("direct_url")
    if isinstance(direct_url, dict) and "url" in direct_url:
        return _direct_origin(direct_url, code_dir)
    link = dist.get("egg_link")
    if link:
        path = link["project_dir"]
        return {
            "kind": "egg-link",
            "path": path,
            "exists": Path(path).is_dir(),
            "in_code": _inside(path, code_dir),
        }
    installer = (dist.get("installer") or "").lower()
    if installer in CONDA_INSTALLERS:
        return {"kind": "conda"}
    return {"kind": "index" if installer else "unknown"}


def needs_carried_source(origin: dict[str, Any]) -> bool:
    """Tell whether a restore needs a wheel that the bundle itself carries.

    That is every local install whose source is not in the bundle's code
    folder: those files exist on no index and on no other machine.
    """
    kind = origin["kind"]
    return kind in ("file", "dir", "editable", "egg-link") and not origin.get("in_code")


def _source_line(
    dist: dict[str, Any], origin: dict[str, Any], wheel: dict | None
) -> str:
    name, version, kind = dist["name"], dist["version"], origin["kind"]
    if wheel is not None:
        return f"./{WHEELS_ARCDIR}/{wheel['file']}"
    if kind == "vcs":
        return f"{name} @ {origin['requirement_url']}"
    if kind == "url":
        return f"{name} @ {origin['url']}"
    if kind in ("editable", "egg-link") and origin.get("in_code"):
        return f"-e ./code/{origin['in_code']}"
    if kind in ("dir", "file") and origin.get("in_code"):
        return f"./code/{origin['in_code']}"
    return f"{name}=={version}"


def lock_text(entries: list[dict[str, Any]], vendored: bool, header: list[str]) -> str:
    """Write env/requirements.lock.

    ``entries`` carry ``dist``, ``origin`` and ``wheel`` (the vendored file
    or None). With vendored wheels every line is an exact pin with its
    sha256, for ``pip install --no-index --require-hashes``, and a
    distribution that could not be vendored stays as a comment so the
    rest still installs. Without them, pins and URLs come from the origin
    and local sources point into the bundle.
    """
    lines = [f"# {line}" if line else "#" for line in header]
    for entry in entries:
        dist, origin, wheel = entry["dist"], entry["origin"], entry["wheel"]
        if origin["kind"] == "conda":
            continue
        if vendored and wheel is None:
            lines.append(f"# not vendored: {dist['name']}=={dist['version']}")
        elif vendored:
            lines.append(
                f"{dist['name']}=={dist['version']} \\\n"
                f"    --hash=sha256:{wheel['sha256']}"
            )
        else:
            carried = wheel if needs_carried_source(origin) else None
            lines.append(_source_line(dist, origin, carried))
    return "\n".join(lines) + "\n"


def freeze_line(dist: dict[str, Any], origin: dict[str, Any]) -> str:
    """Write one line as ``pip freeze`` would, for targets without pip."""
    kind = origin["kind"]
    if kind == "vcs":
        return f"{dist['name']} @ {origin['requirement_url']}"
    if kind in ("editable", "egg-link"):
        return f"-e {origin['path']}"
    if kind in ("dir", "file"):
        return f"{dist['name']} @ file://{origin['path']}"
    if kind == "url":
        return f"{dist['name']} @ {origin['url']}"
    return f"{dist['name']}=={dist['version']}"
