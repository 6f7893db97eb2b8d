"""File-system helpers: atomic writes and temporary files beside their target."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".goldmaster-tmp-"


@contextlib.contextmanager
def temporary_path(final: Path) -> Iterator[Path]:
    """Yield a free temporary path in the folder of ``final`` and remove it on
    the way out, whether the block succeeded, failed or was interrupted.

    The block renames the file to its final name when it is complete; the
    temporary name is hidden and marked so that leftovers are recognisable.
    """
    tmp = final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def make_folders(folder: Path) -> Path | None:
    """Create ``folder`` and its missing parents. Return the topmost folder
    that was created, or None when ``folder`` existed. OSError passes through."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing[-1] if missing else None


def remove_empty_folders(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to and including ``top`` while they are empty."""
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:
            return
        if path == top:
            return


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``path`` and flush it to the disk."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one."""
    with temporary_path(path) as tmp:
        write_synced(tmp, data)
        os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def deferred_signals(
    signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them again.

    Use it around a few steps that must happen together, such as two renames.
    Outside the main thread, where Python cannot set handlers, it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {s: signal.signal(s, lambda num, _: arrived.append(num)) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in arrived[:1]:
            signal.raise_signal(signum)
