"""Find the dependency and lock files in a code folder and copy them into env/."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path
from typing import Any

from goldmaster.env_indexes import requirement_file_sources, toml_sources
from goldmaster.parts import Part
from goldmaster.redact import redact_text

LOCKFILES_ARCDIR = "env/lockfiles"
MAX_DEPTH = 4

_EXACT_NAMES = {
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "uv.toml",
    "Pipfile",
    "Pipfile.lock",
    "pdm.lock",
    "pixi.lock",
    "pixi.toml",
    "conda-lock.yml",
    "conda-lock.yaml",
    "environment.yml",
    "environment.yaml",
}
_PATTERNS = ("*requirements*.txt", "*requirements*.in", "*constraints*.txt")
_SKIPPED_DIRS = {"node_modules", "__pycache__", "site-packages"}


def _is_lockfile(path: Path) -> bool:
    name = path.name
    if name in _EXACT_NAMES:
        return True
    if any(fnmatch.fnmatch(name, pattern) for pattern in _PATTERNS):
        return True
    return path.parent.name == "requirements" and path.suffix in (".txt", ".in")


def _skip_dir(path: Path) -> bool:
    if path.name.startswith(".") or path.name in _SKIPPED_DIRS:
        return True
    return (path / "pyvenv.cfg").exists() or (path / "conda-meta").is_dir()


def find_lockfiles(code_dir: Path) -> list[Path]:
    """Return lock and requirements files under ``code_dir``, sorted.

    The search goes at most four folders deep and skips hidden folders,
    virtual environments and conda prefixes, whose own files describe
    other projects.
    """
    found = []
    for root, dirs, files in os.walk(code_dir):
        here = Path(root)
        depth = len(here.relative_to(code_dir).parts)
        dirs[:] = sorted(
            name for name in dirs if depth < MAX_DEPTH and not _skip_dir(here / name)
        )
        found += [here / name for name in files if _is_lockfile(here / name)]
    return sorted(found)


def copy_lockfiles(
    code_dir: Path,
) -> tuple[list[dict], list[Part], list[dict], list[str]]:
    """Copy each lockfile verbatim, unless it holds credentials.

    A file with credentials in a URL is copied with them replaced by the
    placeholder and marked ``redacted``, because nothing in a bundle may
    carry a secret. Returns the listing, the parts, the index sources
    written in those files, and notices.
    """
    listing, parts, sources, notices = [], [], [], []
    for path in find_lockfiles(code_dir):
        relative = path.relative_to(code_dir).as_posix()
        raw = path.read_bytes()
        data, redacted = _redacted_copy(raw)
        arcname = f"{LOCKFILES_ARCDIR}/{relative}"
        parts.append(Part(arcname, data=data))
        listing.append(
            {
                "path": relative,
                "file": arcname,
                "sha256": hashlib.sha256(raw).hexdigest(),
                "redacted": redacted,
            }
        )
        if redacted:
            notices.append(
                f"{relative} contains credentials; the copy in the bundle has them replaced"
            )
        sources += _index_sources(path, relative)
    return listing, parts, sources, notices


def _redacted_copy(raw: bytes) -> tuple[bytes, bool]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw, False
    cleaned = redact_text(text)
    return cleaned.encode("utf-8"), cleaned != text


def _index_sources(path: Path, relative: str) -> list[dict[str, Any]]:
    if path.suffix in (".txt", ".in"):
        return requirement_file_sources(path, relative)
    if path.name in ("pyproject.toml", "uv.toml"):
        return toml_sources(path, relative)
    return []
