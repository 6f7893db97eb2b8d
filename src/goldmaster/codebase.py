"""Snapshot the code that goes with a model, and its git state."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .model import SourceFile, matches
from .redact import redact_url

GIT_TIMEOUT = 60

# Files that commonly hold credentials. They stay out of the code snapshot
# unless named with --include, and the manifest lists them.
SECRET_PATTERNS = [
    ".env",
    ".env.*",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".aws",
    ".ssh",
    "credentials.json",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".docker",
]

# Skipped when the code folder is not a git repository: caches and virtual
# environments that no one commits.
UNTRACKED_NOISE = ["__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git"]


@dataclass
class CodeSnapshot:
    """The code files to archive, the git facts and the generated git files."""

    files: list[SourceFile]
    info: dict[str, Any]
    extra: dict[str, bytes] = field(default_factory=dict)  # arcname -> content
    notices: list[str] = field(default_factory=list)


def _git(root: Path, *args: str, check: bool = True) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise InputError("git is not installed", "install git or capture outside a repository") from exc
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"git {args[0]} timed out after {GIT_TIMEOUT} s in {root}") from exc
    if check and done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"git {args[0]} failed in {root}: {message[-1] if message else ''}")
    return done.stdout


def find_repository(folder: Path) -> Path | None:
    """Return the top of the git work tree that contains ``folder``, if any."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return Path(done.stdout.decode().strip())


def snapshot_code(
    folder: Path,
    excludes: list[str],
    includes: list[str],
    skip: list[Path],
) -> CodeSnapshot:
    """Collect the code of ``folder``: the git-tracked files of its repository,
    or every file of the folder outside git. ``skip`` lists paths such as the
    model and the output folder that must not be archived as code."""
    if not folder.exists():
        raise InputError(f"code folder not found: {folder}", "pass an existing folder to --code")
    if not folder.is_dir():
        raise InputError(f"code path is not a folder: {folder}")
    folder = folder.resolve()
    repo = find_repository(folder)
    if repo is not None:
        names = _git(repo, "ls-files", "-z", "--cached").split(b"\0")
        root = repo
        candidates = sorted({n.decode("utf-8", "surrogateescape") for n in names if n})
        info = git_state(repo)
        extra = _git_files(repo, info)
    else:
        root = folder
        candidates = sorted(_walk_plain(folder, excludes))
        info = {"git": None}
        extra = {}
    snapshot = _select(root, candidates, excludes, includes, skip)
    snapshot.info.update(info)
    snapshot.info["root_name"] = root.name
    # Where --code sits inside the archived tree, so that commands recorded
    # with the code folder as working directory can run there after restore.
    snapshot.info["subdir"] = folder.relative_to(root).as_posix() if folder != root else ""
    snapshot.extra = extra
    return snapshot


def _walk_plain(root: Path, excludes: list[str]) -> list[str]:
    found: list[str] = []
    for folder, dirs, names in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        rel_folder = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
        dirs[:] = [
            d
            for d in dirs
            if not matches(rel_folder + d, excludes + UNTRACKED_NOISE)
            and not (Path(folder, d) / "pyvenv.cfg").exists()
        ]
        found.extend(rel_folder + name for name in names)
    return found


def _select(
    root: Path, candidates: list[str], excludes: list[str], includes: list[str], skip: list[Path]
) -> CodeSnapshot:
    snapshot = CodeSnapshot(files=[], info={})
    left_out: list[str] = []
    links: list[str] = []
    skipped = [p.resolve() for p in skip]
    folders: dict[str, str] = {}  # relative folder -> the folder it resolves to
    top = str(root).rstrip("/") + "/"
    for rel in candidates:
        if matches(rel, excludes) or matches(rel, UNTRACKED_NOISE[:2]):
            continue
        if matches(rel, SECRET_PATTERNS) and not matches(rel, includes):
            left_out.append(rel)
            continue
        # Paths are strings here: a Path per file costs more than the lstat.
        try:
            st = os.lstat(top + rel)
        except FileNotFoundError:
            continue  # tracked but deleted in the work tree; the diff records it
        if stat.S_ISLNK(st.st_mode):
            if not any(_inside(Path(top + rel).resolve(), other) for other in skipped):
                links.append(rel)
            continue
        # A file that is not a link resolves to its resolved folder plus its
        # name, so each folder is resolved once, not each file.
        real = _resolved_folder(root, rel, folders) + "/" + rel.rpartition("/")[2]
        if any(_inside(real, other) for other in skipped):
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        snapshot.files.append(
            SourceFile(
                f"code/{rel}", Path(top + rel), st.st_size, (st.st_dev, st.st_ino)
            )
        )
    snapshot.info["files"] = len(snapshot.files)
    snapshot.info["bytes"] = sum(f.size for f in snapshot.files)
    snapshot.info["left_out_secrets"] = left_out
    snapshot.info["symbolic_links_skipped"] = links
    if left_out:
        snapshot.notices.append(
            f"left {len(left_out)} credential-like files out of the code "
            f"({', '.join(left_out[:3])}{'...' if len(left_out) > 3 else ''}); "
            "name them with --include to keep them"
        )
    return snapshot


def _resolved_folder(root: Path, rel: str, cache: dict[str, str]) -> str:
    folder = rel.rpartition("/")[0]
    if folder not in cache:
        cache[folder] = str((root / folder).resolve()).rstrip("/")
    return cache[folder]


def _inside(path: Path | str, other: Path) -> bool:
    """Tell whether the resolved ``path`` is ``other`` or lies under it."""
    inner, outer = str(path), str(other)
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def git_state(repo: Path) -> dict[str, Any]:
    """Return remote (without credentials), commit, branch, dirty flag and
    untracked files of a repository."""
    head = _git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False).decode().strip()
    branch = _git(repo, "symbolic-ref", "--short", "-q", "HEAD", check=False).decode().strip()
    remote = _remote(repo)
    status = _git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=no")
    untracked = _git(repo, "ls-files", "-z", "--others", "--exclude-standard").split(b"\0")
    return {
        "git": {
            "commit": head or None,
            "branch": branch or None,
            "remote": remote,
            "dirty": bool(status.strip(b"\0")),
            "untracked": sorted(u.decode("utf-8", "surrogateescape") for u in untracked if u),
        }
    }


def _remote(repo: Path) -> dict[str, str] | None:
    names = _git(repo, "remote", check=False).decode().split()
    if not names:
        return None
    name = "origin" if "origin" in names else names[0]
    url = _git(repo, "remote", "get-url", name, check=False).decode().strip()
    return {"name": name, "url": redact_url(url)}


def _git_files(repo: Path, info: dict[str, Any]) -> dict[str, bytes]:
    git = info["git"]
    files: dict[str, bytes] = {}
    if git["commit"] and git["dirty"]:
        files["git/uncommitted.diff"] = _git(repo, "diff", "--binary", "HEAD")
        git["diff"] = "git/uncommitted.diff"
    if git["untracked"]:
        files["git/untracked.txt"] = "".join(f"{u}\n" for u in git["untracked"]).encode()
    return files
