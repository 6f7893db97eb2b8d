"""Background compression for the bundle writer.

The writer's own thread reads and hashes the members; CompressorThread feeds
zstd and writes its output in a second thread, and _Flusher starts writing
that output to disk in a third, while the bundle is still being compressed.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import threading
from collections.abc import Callable
from typing import BinaryIO

import zstandard

# Chunks queued for the compressor thread; with the one being read, the
# writer holds at most IN_FLIGHT + 1 read buffers.
IN_FLIGHT = 4
# Bytes of output after which the kernel is asked to write the bundle to
# disk in the background.
FLUSH_BYTES = 64 << 20


class _Frames:
    """Writes zstd frames at the current position of a file, one level at a time."""

    def __init__(self, fh: BinaryIO, threads: int) -> None:
        self._fh = fh
        # threads >= 1 selects zstd's multi-threaded mode, whose output does not
        # depend on the number of workers, so bundles match across --threads.
        self._threads = max(1, threads)
        self._writer: zstandard.ZstdCompressionWriter | None = None
        self._level: int | None = None

    def write(self, data: bytes | bytearray | memoryview, level: int) -> None:
        if self._writer is None or level != self._level:
            self.finish()
            params = zstandard.ZstdCompressionParameters.from_level(
                level, threads=self._threads, write_checksum=True
            )
            compressor = zstandard.ZstdCompressor(compression_params=params)
            self._writer = compressor.stream_writer(self._fh, closefd=False)
            self._level = level
        self._writer.write(data)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.flush(zstandard.FLUSH_FRAME)
            self._writer = None
            self._level = None


@functools.cache
def _writeback_function() -> Callable[[int], None]:
    """Return a function that starts writing a file's dirty pages to disk and
    returns without waiting for them.

    That is Linux's sync_file_range with SYNC_FILE_RANGE_WRITE. Unlike
    fdatasync it neither waits for the disk nor commits the file system's
    journal, so it does not slow the compression. A write error still
    reaches the final fsync. Where the call is missing, fdatasync is used.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (AttributeError, OSError):
        # NOTE: only a libc without sync_file_range reaches this fallback,
        # and no test runs it.
        return os.fdatasync
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int) -> None:
        if call(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return start


_SYNC_FILE_RANGE_WRITE = 2


class _Flusher:
    """Starts writing the bundle to disk while it is still being compressed.

    Without it the kernel keeps the whole bundle as dirty pages until the
    final fsync, which then waits for all of it; with it the disk writes
    overlap with compression and the final fsync waits for the tail only.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wake = threading.Event()
        self._stopping = False
        self.error: OSError | None = None
        self._thread = threading.Thread(
            target=self._run, name="bundle-flusher", daemon=True
        )
        self._thread.start()

    def request(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                _writeback_function()(self._fd)
            except OSError as exc:
                # With fdatasync, Linux reports a write-back error to one
                # fsync only, so this one must reach the caller through close().
                self.error = exc
                return

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()


# A job for the compressor thread: data and its level, or None for "end the
# frame", and a callback that returns the data's buffer to the reader.
_Job = tuple[bytes | bytearray | memoryview | None, int, Callable[[], None] | None]


class CompressorThread:
    """Feeds ``_Frames`` from a bounded queue in a thread of its own.

    zstd's workers do the compression; this thread hands them the input and
    writes their output to the file. Running it apart from the caller lets
    those waits and writes overlap with the reading and hashing that the
    caller does. A failure is raised in the caller at its next call.
    """

    def __init__(self, fh: BinaryIO, threads: int) -> None:
        self._fh = fh
        self._frames = _Frames(fh, threads)
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=IN_FLIGHT)
        self._error: BaseException | None = None
        self._discard = False
        self._thread: threading.Thread | None = None
        self._flusher: _Flusher | None = None
        self._flushed_to = 0

    def submit(
        self,
        data: bytes | bytearray | memoryview | None,
        level: int,
        release: Callable[[], None] | None = None,
    ) -> None:
        """Queue ``data`` for compression at ``level``; ``None`` ends the frame."""
        if self._error is not None:
            if release is not None:
                release()
            self._raise()
        if self._thread is None:
            self._start()
        self._jobs.put((data, level, release))

    def _start(self) -> None:
        try:
            self._flusher = _Flusher(self._fh.fileno())
        except (AttributeError, OSError, ValueError):
            self._flusher = None  # an in-memory file has nothing to flush
        self._thread = threading.Thread(
            target=self._run, name="bundle-compressor", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            data, level, release = job
            try:
                if self._error is None and not self._discard:
                    self._compress(data, level)
            except BaseException as exc:  # noqa: BLE001 - the caller re-raises it
                self._error = exc
            finally:
                if release is not None:
                    release()

    def _compress(
        self, data: bytes | bytearray | memoryview | None, level: int
    ) -> None:
        if data is None:
            self._frames.finish()
        else:
            self._frames.write(data, level)
        if self._flusher is not None:
            position = self._fh.tell()
            if position - self._flushed_to >= FLUSH_BYTES:
                self._flushed_to = position
                self._flusher.request()

    def close(self) -> None:
        """End the last frame, wait for the thread, and raise what failed in it."""
        if self._thread is not None:
            self.submit(None, 0)
        self._stop()
        self._raise()

    def abort(self) -> None:
        """Drop the queued data and stop the thread, after the caller failed."""
        self._discard = True
        self._stop()

    def _stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self._flusher is not None:
            self._flusher.close()
            if self._error is None and self._flusher.error is not None:
                self._error = self._flusher.error
            self._flusher = None

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
