"""Find the dependency and lock files in a code folder and copy them into env/."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import subprocess
from pathlib import Path, PurePath
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


_PATTERN = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in _PATTERNS))


def is_lockfile(path: PurePath) -> bool:
    """Tell whether a file name is a dependency or lock file, by name only."""
    return is_lockfile_name(path.name, path.parent.name)


def is_lockfile_name(name: str, folder: str) -> bool:
    """Tell whether a file ``name`` in a folder named ``folder`` is a
    dependency or lock file."""
    if name in _EXACT_NAMES or _PATTERN.match(name):
        return True
    return folder == "requirements" and os.path.splitext(name)[1] in (".txt", ".in")


def _skip_dir(path: Path) -> bool:
    if path.name.startswith(".") or path.name in _SKIPPED_DIRS:
        return True
    return (path / "pyvenv.cfg").exists() or (path / "conda-meta").is_dir()


def find_lockfiles(code_dir: Path) -> list[Path]:
    """Return lock and requirements files under ``code_dir``, sorted.

    In a git work tree only tracked and unignored files count, so build
    output and earlier restores stay out. The search goes at most four
    folders deep and skips hidden folders, virtual environments and conda
    prefixes, whose own files describe other projects.
    """
    listed = _git_listed(code_dir)
    if listed is None:
        return _walk(code_dir)
    found = []
    for name in listed:
        path = code_dir / name
        folders = Path(name).parts[:-1]
        if len(folders) > MAX_DEPTH or not path.is_file() or not is_lockfile(path):
            continue
        parents = [code_dir.joinpath(*folders[: i + 1]) for i in range(len(folders))]
        if not any(_skip_dir(parent) for parent in parents):
            found.append(path)
    return sorted(found)


def _git_listed(code_dir: Path) -> list[str] | None:
    """List the tracked and unignored files under ``code_dir``, or None outside git."""
    command = ["git", "-C", str(code_dir), "ls-files", "-z", "--cached", "--others"]
    try:
        result = subprocess.run(
            [*command, "--exclude-standard"],
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    names = result.stdout.split(b"\0")
    return sorted({name.decode("utf-8", "surrogateescape") for name in names if name})


def _walk(code_dir: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(code_dir):
        folder = Path(root)
        depth = len(folder.relative_to(code_dir).parts)
        dirs[:] = sorted(
            name for name in dirs if depth < MAX_DEPTH and not _skip_dir(folder / name)
        )
        found += [folder / name for name in files if is_lockfile(folder / name)]
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
