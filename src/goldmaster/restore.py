"""Restore: verify a bundle while extracting it safely into a destination."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .archive import Member
from .checks import run_checks
from .container import ImageBuildError
from .doctor import compare_host, enforce
from .env_restore import find_python
from .environment import restore_environment
from .errors import (
    DestinationError,
    GoldmasterError,
    HostMismatchError,
    UnsafeMemberError,
)
from .gpu import probe_system
from .image import restore_image
from .progress import Reporter
from .verify import BundleWalk, Sink, read_manifest

STAGING_PREFIX = ".goldmaster-restore-"
PARTIAL_NAME = ".goldmaster-partial"
PARTIAL_MARKER = "RESTORE-INCOMPLETE.txt"
# Smallest all-zero chunk that restore leaves as a hole instead of writing.
ZERO_RUN = 64 << 10


@dataclass
class RestoreOptions:
    """Options of ``goldmaster restore``."""

    force: bool = False
    keep_partial: bool = False
    check: bool = False
    # Fail (after extracting) when this host cannot run what the bundle captured.
    strict_host: bool = False
    env: bool = True
    python: str | None = None
    offline: bool | None = None
    image: bool = False
    """Load the saved image into the engine (or build it), tag and smoke-test it."""


@dataclass
class RestoreResult:
    """Outcome of a restore: the files written and the reports of later stages."""

    bundle: Path
    dest: Path
    manifest: dict[str, Any]
    files: int
    bytes: int
    stages: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "goldmaster.restore/v1",
            "bundle": str(self.bundle),
            "dest": str(self.dest),
            "name": self.manifest.get("name"),
            "version": self.manifest.get("version"),
            "files": self.files,
            "bytes": self.bytes,
            "stages": self.stages,
            "notices": self.notices,
        }


class _FileSink(Sink):
    """Writes one member under the staging folder, refusing to follow links."""

    def __init__(self, root: Path, member: Member) -> None:
        self._root = root
        self._path = root / member.path
        self._name = member.path
        _make_parents(root, member.path)
        try:
            self._fd = os.open(
                self._path,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                member.mode & 0o755 or 0o644,
            )
        except OSError as exc:
            raise _write_error(self._name, exc) from exc
        self._size = 0

    def write(self, view: memoryview) -> None:
        try:
            if _is_zero_run(view):
                # Leave a hole: the file reads back as zeros without using disk,
                # so sparse files restore sparse.
                os.lseek(self._fd, len(view), os.SEEK_CUR)
                self._size += len(view)
                return
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self._size += written
        except OSError as exc:
            os.close(self._fd)
            self._fd = -1
            raise _write_error(self._name, exc) from exc

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            # A hole at the end exists only once the size is set.
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            raise _write_error(self._name, exc) from exc
        finally:
            os.close(self._fd)
            self._fd = -1


def _is_zero_run(view: memoryview) -> bool:
    """Tell whether ``view`` is long enough to be worth a hole and all zero.

    The first and last bytes are checked before the full comparison, which
    copies the chunk, so that ordinary weights cost almost nothing extra.
    """
    if len(view) < ZERO_RUN or view[0] or view[-1]:
        return False
    return view.tobytes() == bytes(len(view))


class _LinkSink(Sink):
    def __init__(self, root: Path) -> None:
        self._root = root

    def write(self, view: memoryview) -> None:
        raise AssertionError("a link member has no data")

    def link(self, member: Member, target: str) -> None:
        _make_parents(self._root, member.path)
        source = self._root / target
        dest = self._root / member.path
        try:
            os.link(source, dest, follow_symlinks=False)
        except OSError:
            try:
                shutil.copyfile(source, dest, follow_symlinks=False)
            except OSError as exc:
                raise _write_error(member.path, exc) from exc


def _make_parents(root: Path, relpath: str) -> None:
    """Create the folders above ``relpath`` inside ``root``; none of them may
    be anything but a real folder that this restore made."""
    folder = root
    for part in relpath.split("/")[:-1]:
        folder = folder / part
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            if folder.is_symlink() or not folder.is_dir():
                raise UnsafeMemberError(
                    f"member {relpath!r} would be written through {part!r}, which is not a folder",
                    "do not restore this bundle",
                ) from None
        except OSError as exc:
            raise _write_error(relpath, exc) from exc


def _write_error(name: str, exc: OSError) -> GoldmasterError:
    if exc.errno == errno.ENOSPC:
        return DestinationError(
            f"no space left on the device while writing {name}",
            "free some space or restore elsewhere",
        )
    if exc.errno == errno.EEXIST:
        return UnsafeMemberError(f"member {name!r} is written twice", "do not restore this bundle")
    return DestinationError(f"cannot write {name}: {exc.strerror}")


def _check_free_space(dest: Path, needed: int) -> None:
    """Fail before extracting when the destination cannot hold the declared files."""
    folder = dest if dest.exists() else next(p for p in dest.parents if p.exists())
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DestinationError(
            f"not enough free space in {folder}: {free / 1e6:,.0f} MB free, "
            f"{needed / 1e6:,.0f} MB needed for the files of the bundle",
            "free some space or restore elsewhere",
        )


def _check_destination(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise DestinationError(f"destination is not a folder: {dest}")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise DestinationError(
            f"destination is not empty: {dest}",
            "choose an empty folder, or pass --force to replace what the bundle contains",
        )


def restore(
    bundle: Path,
    dest: Path,
    options: RestoreOptions | None = None,
    reporter: Reporter | None = None,
) -> RestoreResult:
    """Verify ``bundle`` while extracting it into ``dest`` (without its top
    folder), then run the later restore stages.

    Files land in a staging folder inside ``dest`` and move into place only
    after every member has been checked, so a failed restore leaves ``dest``
    as it was, or, with ``keep_partial``, a marked partial folder.
    """
    options = options or RestoreOptions()
    reporter = reporter or Reporter()
    _check_destination(dest, options.force)
    manifest = read_manifest(bundle)
    total = sum(entry["size"] for entry in manifest["files"])
    _check_python(options, manifest)
    created = not dest.exists()
    staging = dest / f"{STAGING_PREFIX}{secrets.token_hex(4)}"

    def sinks(member: Member, entry: dict[str, Any]) -> Sink:
        return _LinkSink(staging) if member.kind == "link" else _FileSink(staging, member)

    reporter.step(f"verifying and extracting {bundle.name}")
    # Everything from the first folder created on is inside the try block, so
    # that an error or Ctrl-C at any point removes what this restore made.
    try:
        # The folder comes first, so that a path that cannot be created is
        # reported as such rather than as a lack of space.
        _make_folder(dest, parents=True)
        _check_free_space(dest, total)
        _make_folder(staging, parents=False)
        walk = BundleWalk(bundle, strict=True, sinks=sinks)
        reporter.start(total, "extracting")
        report = walk.run(reporter.advance)
        reporter.finish()
        _write_raw(staging, walk.raw)
        _move_into_place(staging, dest)
    except BaseException:
        reporter.finish()
        _discard(staging, dest if created else None, options.keep_partial)
        raise
    result = RestoreResult(bundle, dest, report.manifest, report.files, report.bytes)
    _later_stages(result, options, reporter)
    return result


def _check_python(options: RestoreOptions, manifest: dict[str, Any]) -> None:
    """Check a --python interpreter before anything is extracted, so that a
    wrong one fails at once instead of after the whole extraction."""
    env = manifest.get("environment")
    if options.python is None or not options.env or not env or env.get("conda"):
        return
    find_python(options.python, env["interpreter"])


def _write_raw(staging: Path, raw: dict[str, bytes]) -> None:
    """Write manifest.yaml and SHA256SUMS exactly as they were read."""
    for name, data in raw.items():
        try:
            (staging / name).write_bytes(data)
        except OSError as exc:
            raise _write_error(name, exc) from exc


def _make_folder(path: Path, parents: bool) -> None:
    try:
        path.mkdir(parents=parents, exist_ok=parents)
    except OSError as exc:
        raise DestinationError(
            f"cannot create {path}: {exc.strerror}", "choose a destination you can write to"
        ) from exc


def _move_into_place(staging: Path, dest: Path) -> None:
    for entry in sorted(staging.iterdir()):
        target = dest / entry.name
        try:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.rename(entry, target)
        except OSError as exc:
            raise DestinationError(
                f"cannot move {entry.name} into {dest}: {exc.strerror}",
                "check the destination's permissions and free space",
            ) from exc
    staging.rmdir()


def _discard(staging: Path, created: Path | None, keep: bool) -> None:
    """Remove the staging folder, and the destination when this restore made
    it; or, with ``keep``, rename the staging folder to a marked name."""
    if not keep:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            with contextlib.suppress(OSError):
                created.rmdir()
        return
    marked = staging.parent / PARTIAL_NAME
    if marked.exists():
        shutil.rmtree(marked, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rename(staging, marked)
        (marked / PARTIAL_MARKER).write_text(
            "This restore failed part way. The files here were not all verified.\n"
        )


def _later_stages(result: RestoreResult, options: RestoreOptions, reporter: Reporter) -> None:
    """Run what follows extraction: environment, host comparison, image, checks."""
    if options.env and result.manifest.get("environment"):
        reporter.step("rebuilding the Python environment")
        stage = restore_environment(
            result.dest, result.manifest, python=options.python, offline=options.offline
        )
        result.stages["environment"] = stage
        for notice in stage["notices"]:
            result.notices.append(notice)
            reporter.notice(notice)
    _compare_host(result, options, reporter)
    image_ref = None
    if options.image:
        reporter.step("loading the container image")
        try:
            restored = restore_image(result.dest, result.manifest)
        except ImageBuildError as exc:
            # The build hint names capture's --no-image, which restore lacks.
            exc.hint = "fix the failing step, or restore without --image"
            raise
        result.stages["image"] = restored.to_json()
        image_ref = restored.id
    if options.check:
        # With the image restored, the checks run in it rather than in DEST/.venv.
        report = run_checks(
            result.dest, result.manifest, image_ref=image_ref, reporter=reporter
        )
        result.stages["checks"] = report.to_json()


def _compare_host(result: RestoreResult, options: RestoreOptions, reporter: Reporter) -> None:
    """Compare this host with the captured system section; report findings as notices."""
    captured = result.manifest.get("system")
    if not isinstance(captured, dict):
        return
    reporter.step("comparing this host with the one the bundle was captured on")
    # NOTE: the host's Python is goldmaster's own interpreter until the
    # environment stage chooses the one the restored environment will use.
    host = probe_system(None).data
    findings = compare_host(captured, host)
    result.stages["host"] = {"findings": [finding.to_dict() for finding in findings]}
    for finding in findings:
        line = f"host {finding.severity} ({finding.code}): {finding.message}. {finding.advice}"
        result.notices.append(line)
        reporter.notice(line)
    try:
        enforce(findings, options.strict_host, flag="--strict-host")
    except HostMismatchError as exc:
        message = f"{exc.message}; the files are restored in {result.dest}"
        raise HostMismatchError(message, exc.hint) from exc
