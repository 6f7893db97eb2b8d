"""The bundle container: a tar stream split over several zstd frames.

Layout of a bundle file, in order:

1. a zstd frame holding the tar member ``TOP/manifest.yaml``;
2. a zstd skippable frame that pads the space reserved for that first frame;
3. one zstd frame per run of members compressed at the same level;
4. a last frame with README.txt, SHA256SUMS and the tar end-of-archive blocks.

Concatenated zstd frames decompress to one stream, and decoders skip
skippable frames, so ``tar --zstd -xf`` reads the file as one plain tar. The
manifest is written last into the reserved space at the start, which lets
capture hash every file while it compresses it and still put the manifest
first, where ``inspect`` finds it after decompressing a few kilobytes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import queue
import re
import stat
import struct
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from .codec import ByteGroup, Transform, stored_name
from .compressor import IN_FLIGHT, CompressorThread
from .errors import BundleFormatError, InputError, SourceChangedError, UnsafeMemberError

BLOCK = 512
RECORD = 20 * BLOCK
CHUNK = 4 << 20
# Files up to this size are read whole and, with their tar headers, gathered
# into batches of about BATCH bytes before they reach zstd.
SMALL_FILE = 256 << 10
BATCH = 1 << 20
# zstd level of the manifest frame. Level 19 makes a 20,000-file manifest only
# 17% smaller than level 3 but takes a hundred times longer.
HEAD_LEVEL = 3
SKIPPABLE_MAGIC = 0x184D2A50
SKIPPABLE_HEADER = 8
MAX_MANIFEST_BYTES = 64 << 20
# Extra header bytes allowed per member when capping decompressed output.
HEADER_ALLOWANCE = 8 * BLOCK

ProgressFn = Callable[[int], None]


def _noop(_: int) -> None:
    pass


# ---------------------------------------------------------------------------
# Writing


def tar_header(name: str, size: int, mtime: int, mode: int = 0o644, link: str = "") -> bytes:
    """Return the PAX tar header for a regular file or a hard link, with owner
    and group normalised to root so that bundles are byte-reproducible."""
    fast = _ustar_header(name, size, mtime, mode, link)
    if fast is not None:
        return fast
    info = tarfile.TarInfo(name)
    info.size = 0 if link else size
    info.mtime = mtime
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if link:
        info.type = tarfile.LNKTYPE
        info.linkname = link
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


_ROOT_FIELD = b"root".ljust(32, b"\0")
_USTAR_MAGIC = b"ustar\x0000"


def _ustar_header(name: str, size: int, mtime: int, mode: int, link: str) -> bytes | None:
    """Build the header that tarfile writes in PAX format, in a fifth of the time.

    Only headers that need no PAX record are built here: ASCII names of up to
    100 characters, and sizes and times that fit their octal fields. Every
    other case returns None. A test compares the two byte for byte.
    """
    if not (name.isascii() and link.isascii() and len(name) <= 100 and len(link) <= 100):
        return None
    size = 0 if link else size
    if not (0 <= size < USTAR_LIMIT and 0 <= mtime < USTAR_LIMIT):
        return None
    if type(size) is not int or type(mtime) is not int:
        return None
    header = bytearray(
        name.encode("ascii").ljust(100, b"\0")
        + b"%07o\0%07o\0%07o\0%011o\0%011o\0        " % (mode & 0o7777, 0, 0, size, mtime)
        + (tarfile.LNKTYPE if link else tarfile.REGTYPE)
        + link.encode("ascii").ljust(100, b"\0")
        + _USTAR_MAGIC
        + _ROOT_FIELD
        + _ROOT_FIELD
    )
    header += bytes(BLOCK - len(header))
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


@dataclass(frozen=True)
class WrittenFile:
    """A member that the writer stored, with the digest of its content.

    With a ``codec`` the member contains the file transformed, under the name
    ``stored_arcname``, and ``stored_sha256`` is the digest of the member.
    """

    arcname: str
    size: int
    sha256: str
    link: str | None = None
    codec: ByteGroup | None = None
    stored_sha256: str | None = None

    @property
    def stored_arcname(self) -> str:
        return stored_name(self.arcname) if self.codec is not None else self.arcname


class BundleWriter:
    """Streams members into a bundle file, hashing each byte as it is compressed.

    The caller writes the body with :meth:`add_file` and :meth:`add_bytes`,
    then :meth:`close` with the tail members and the manifest text, or
    :meth:`abort` after a failure. The first ``head_reserve`` bytes of the
    file are left for the manifest frame.

    The caller's thread reads and hashes; a second thread feeds zstd and
    writes the output. Small members are gathered with their tar headers into
    batches, so that a tree of thousands of small files costs a few calls
    into zstd instead of three per file.
    """

    def __init__(
        self,
        fh: BinaryIO,
        top: str,
        mtime: int,
        threads: int,
        head_reserve: int,
        progress: ProgressFn = _noop,
    ) -> None:
        self._fh = fh
        self._top = top
        self._mtime = mtime
        self._compressor = CompressorThread(fh, threads)
        self._head_reserve = head_reserve
        self._progress = progress
        self._buffers: queue.Queue[bytearray] = queue.Queue()
        self._buffer_count = 0
        self._batch = bytearray()
        self._batch_level = 0
        self.files: list[WrittenFile] = []
        fh.seek(head_reserve)

    def _name(self, arcname: str) -> str:
        return f"{self._top}/{arcname}"

    def _emit(self, data: bytes | bytearray, level: int) -> None:
        """Append ``data`` to the batch, or send it on its own when it is large."""
        if level != self._batch_level:
            self._flush_batch()
            self._batch_level = level
        if len(data) >= BATCH:
            self._flush_batch()
            self._compressor.submit(data, level)
            return
        self._batch += data
        if len(self._batch) >= BATCH:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if self._batch:
            self._compressor.submit(self._batch, self._batch_level)
            self._batch = bytearray()

    def add_bytes(self, arcname: str, data: bytes, level: int, mode: int = 0o644) -> WrittenFile:
        self._emit(tar_header(self._name(arcname), len(data), self._mtime, mode), level)
        self._emit(data, level)
        self._emit(padding(len(data)), level)
        written = WrittenFile(arcname, len(data), hashlib.sha256(data).hexdigest())
        self.files.append(written)
        return written

    def add_link(self, arcname: str, target: WrittenFile, level: int) -> WrittenFile:
        """Store ``arcname`` as a hard link to ``target``. A link to a member
        stored with a codec is named and points like the stored member."""
        written = WrittenFile(
            arcname,
            target.size,
            target.sha256,
            link=target.arcname,
            codec=target.codec,
            stored_sha256=target.stored_sha256,
        )
        link = self._name(target.stored_arcname)
        header = tar_header(self._name(written.stored_arcname), 0, self._mtime, link=link)
        self._emit(header, level)
        self.files.append(written)
        return written

    def add_file(
        self,
        arcname: str,
        source: Path,
        level: int,
        mode: int = 0o644,
        codec: ByteGroup | None = None,
    ) -> WrittenFile:
        """Stream ``source`` into the bundle and fail if it changes meanwhile.

        With ``codec`` the file is stored transformed, as ``arcname`` plus the
        codec's suffix.
        """
        try:
            fd = os.open(source, os.O_RDONLY)
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}") from exc
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise InputError(f"{source} is not a regular file")
            size = before.st_size
            stored = stored_name(arcname) if codec is not None else arcname
            header = tar_header(self._name(stored), size, self._mtime, mode)
            stored_digest = None
            if size <= SMALL_FILE and codec is None:
                data = _read_small(fd, source, size)
                self._check_unchanged(fd, source, before, at_end=True)
                self._emit(header + data + padding(size), level)
                digest = hashlib.sha256(data).hexdigest()
                self._progress(size)
            else:
                self._emit(header, level)
                if codec is None:
                    digest = self._stream(fd, source, size, level)
                else:
                    digest, stored_digest = self._stream_transformed(
                        fd, source, size, level, codec
                    )
                self._check_unchanged(fd, source, before)
                self._emit(padding(size), level)
        finally:
            os.close(fd)
        written = WrittenFile(arcname, size, digest, codec=codec, stored_sha256=stored_digest)
        self.files.append(written)
        return written

    def _take_buffer(self) -> bytearray:
        """Return a free read buffer; at most IN_FLIGHT + 1 exist, so the reader
        waits here while the compressor thread is that far behind."""
        try:
            return self._buffers.get_nowait()
        except queue.Empty:
            pass
        if self._buffer_count <= IN_FLIGHT:
            self._buffer_count += 1
            return bytearray(CHUNK)
        return self._buffers.get()

    def _read_chunk(self, fd: int, source: Path, remaining: int) -> tuple[bytearray, int]:
        """Read the next chunk of ``source`` into a free buffer."""
        buffer = self._take_buffer()
        try:
            count = os.readv(fd, [memoryview(buffer)[: min(CHUNK, remaining)]])
        except OSError as exc:
            self._buffers.put(buffer)
            raise InputError(f"read error in {source}: {exc.strerror}") from exc
        if count == 0:
            self._buffers.put(buffer)
            raise SourceChangedError(
                f"{source} shrank while it was read",
                "make sure nothing writes to the model or code while capturing",
            )
        return buffer, count

    def _stream(self, fd: int, source: Path, size: int, level: int) -> str:
        digest = hashlib.sha256()
        self._flush_batch()
        remaining = size
        while remaining:
            buffer, count = self._read_chunk(fd, source, remaining)
            chunk = memoryview(buffer)[:count]
            # hashlib releases the GIL, so this runs while the compressor
            # thread and zstd's workers handle the chunks before this one.
            digest.update(chunk)
            self._compressor.submit(chunk, level, functools.partial(self._buffers.put, buffer))
            remaining -= count
            self._progress(count)
        return digest.hexdigest()

    def _stream_transformed(
        self, fd: int, source: Path, size: int, level: int, codec: ByteGroup
    ) -> tuple[str, str]:
        """Stream ``source`` through the codec; return the digests of the file
        and of the transformed bytes."""
        digest = hashlib.sha256()
        stored = hashlib.sha256()
        transform = Transform(codec)
        self._flush_batch()
        remaining = size
        while remaining:
            buffer, count = self._read_chunk(fd, source, remaining)
            chunk = memoryview(buffer)[:count]
            digest.update(chunk)
            # The transform copies what it keeps, so the buffer is free after it.
            for piece in transform.feed(chunk):
                stored.update(piece)
                self._compressor.submit(piece, level)
            chunk.release()
            self._buffers.put(buffer)
            remaining -= count
            self._progress(count)
        tail = transform.finish()
        stored.update(tail)
        self._compressor.submit(tail, level)
        return digest.hexdigest(), stored.hexdigest()

    @staticmethod
    def _check_unchanged(
        fd: int, source: Path, before: os.stat_result, at_end: bool = False
    ) -> None:
        """Fail when ``source`` changed since ``before``. ``at_end`` skips the
        read past the old end of the file: the caller's read already looked
        there, or the file is small enough that a write to it changes its
        size or mtime before this fstat."""
        after = os.fstat(fd)
        grew = not at_end and os.pread(fd, 1, before.st_size) != b""
        if grew or after.st_size != before.st_size or after.st_mtime_ns != before.st_mtime_ns:
            raise SourceChangedError(
                f"{source} changed while it was read",
                "make sure nothing writes to the model or code while capturing",
            )

    def close(self, tail: list[tuple[str, bytes]], manifest: bytes, level: int) -> None:
        """Write the tail members, the end of the archive, then the manifest frame."""
        for arcname, data in tail:
            self.add_bytes(arcname, data, level)
        self._emit(b"\0" * (2 * BLOCK), level)
        self._flush_batch()
        self._compressor.close()
        self._write_head(manifest)

    def abort(self) -> None:
        """Stop the compressor thread after a failure; the file is left incomplete."""
        self._batch = bytearray()
        self._compressor.abort()

    def _write_head(self, manifest: bytes) -> None:
        self._fh.flush()
        frame = compress_head(self._top, manifest, self._mtime)
        gap = self._head_reserve - len(frame) - SKIPPABLE_HEADER
        if gap < 0:
            raise _HeadTooLarge(frame)
        self._fh.seek(0)
        self._fh.write(frame)
        self._fh.write(struct.pack("<II", SKIPPABLE_MAGIC, gap))
        # The gap itself stays a hole in the file: zeros on read, no disk used.
        self._fh.seek(0, os.SEEK_END)


def _read_small(fd: int, source: Path, size: int) -> bytes:
    """Read a file of ``size`` bytes to its end; fail when it is not that long."""
    parts: list[bytes] = []
    count = 0
    while True:
        requested = size + 1 - count
        try:
            data = os.read(fd, requested)
        except OSError as exc:
            raise InputError(f"read error in {source}: {exc.strerror}") from exc
        parts.append(data)
        count += len(data)
        # Reading exactly ``size`` bytes ends the loop without a second read
        # per file: the fstat after it catches a file that grew.
        if not data or count == size:
            break
        if count > size:
            raise SourceChangedError(
                f"{source} changed while it was read",
                "make sure nothing writes to the model or code while capturing",
            )
    if count < size:
        raise SourceChangedError(
            f"{source} shrank while it was read",
            "make sure nothing writes to the model or code while capturing",
        )
    return b"".join(parts)


class _HeadTooLarge(Exception):
    """The manifest frame did not fit the reserved space."""

    def __init__(self, frame: bytes) -> None:
        super().__init__("manifest frame larger than reserved")
        self.frame = frame


def head_tar(top: str, manifest: bytes, mtime: int) -> bytes:
    name = f"{top}/manifest.yaml"
    return tar_header(name, len(manifest), mtime) + manifest + padding(len(manifest))


def compress_head(top: str, manifest: bytes, mtime: int = 0) -> bytes:
    """Return the zstd frame that holds the manifest member.

    The frame's size depends a little on ``mtime``, which is in the tar header.
    """
    head = head_tar(top, manifest, mtime)
    return zstandard.ZstdCompressor(level=HEAD_LEVEL, write_checksum=True).compress(head)


def rewrite_with_head(tmp: Path, frame: bytes, body_start: int, out: BinaryIO) -> None:
    """Copy a bundle whose manifest frame outgrew its reserve into ``out``,
    with ``frame`` and a zero-length skippable frame in front of the body."""
    out.write(frame)
    out.write(struct.pack("<II", SKIPPABLE_MAGIC, 0))
    out.flush()
    with open(tmp, "rb") as src:
        size = os.fstat(src.fileno()).st_size - body_start
        offset = body_start
        while size:
            sent = os.copy_file_range(src.fileno(), out.fileno(), size, offset)
            if sent == 0:
                break
            offset += sent
            size -= sent


# ---------------------------------------------------------------------------
# Reading


class _Source:
    """Decompressed bytes of a bundle, read in order."""

    # Where in the tar stream reading is, for error messages: " in member 'x'".
    where = ""
    # The bundle file, as named in error messages.
    label = "the bundle"

    def read(self, size: int) -> memoryview:
        """Return up to ``size`` bytes; fewer only at the end of the stream."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop decompressing."""

    def read_exact(self, size: int) -> bytes:
        if size < 0:
            raise BundleFormatError(f"negative size in a tar header{self.where}")
        parts = []
        while size:
            view = self.read(size)
            if not view:
                raise BundleFormatError(
                    f"the bundle is truncated{self.where}", "copy it again from its source"
                )
            parts.append(bytes(view))
            size -= len(view)
        return b"".join(parts)


class _OnDemand(_Source):
    """Decompresses in the caller's thread and only as far as the caller reads.

    Reading the manifest this way decompresses little more than the first
    frame, so a damaged or cut-off body does not stop ``inspect`` and a
    bundle of any size costs the same.
    """

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self.limit = limit
        self.produced = 0
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            fh, read_size=1 << 16, read_across_frames=True, closefd=False
        )

    def read(self, size: int) -> memoryview:
        try:
            data = self._reader.read(min(size, CHUNK))
        except zstandard.ZstdError as exc:
            raise _zstd_error(exc, self.label, self.where) from exc
        self.produced += len(data)
        if self.produced > self.limit:
            raise BundleFormatError(
                "the bundle decompresses to more bytes than its manifest declares",
                "the file is corrupt or hostile: do not use it",
            )
        return memoryview(data)


class _Decompressed(_Source):
    """Decompresses a bundle in a background thread and serves the output.

    The thread lets decompression overlap with the hashing done by the
    reader. ``limit`` caps the total output so that a stream that expands far
    beyond its declared sizes is stopped early; it can be raised once the
    manifest declares how much to expect.
    """

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self.limit = limit
        self.produced = 0
        # Where the reader is, for error messages: " in member 'x'" or " after member 'x'".
        self.where = ""
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._buffer = b""
        self._offset = 0
        self._done = False
        reader = zstandard.ZstdDecompressor().stream_reader(
            fh, read_size=1 << 20, read_across_frames=True, closefd=False
        )
        self._thread = threading.Thread(target=self._run, args=(reader,), daemon=True)
        self._thread.start()

    def _run(self, reader: zstandard.ZstdDecompressionReader) -> None:
        try:
            while not self._stop.is_set():
                chunk = reader.read(CHUNK)
                if not chunk:
                    self._put(None)
                    return
                self._put(chunk)
        except Exception as exc:  # noqa: BLE001 - the reader reports every failure
            # Any exception must reach the reader, or it would wait forever.
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)

    def _fill(self) -> bool:
        if self._done:
            return False
        item = self._queue.get()
        if item is None:
            self._done = True
            return False
        if isinstance(item, BaseException):
            self._done = True
            raise _zstd_error(item, self.label, self.where) from item
        self.produced += len(item)
        if self.produced > self.limit:
            raise BundleFormatError(
                f"the bundle decompresses to more bytes than its manifest declares{self.where}",
                "the file is corrupt or hostile: do not use it",
            )
        self._buffer = item
        self._offset = 0
        return True

    def read(self, size: int) -> memoryview:
        """Return up to ``size`` bytes; fewer only at the end of the stream."""
        if self._offset >= len(self._buffer) and not self._fill():
            return memoryview(b"")
        view = memoryview(self._buffer)[self._offset : self._offset + size]
        self._offset += len(view)
        return view


def _zstd_error(exc: BaseException, label: str, where: str) -> BundleFormatError:
    """Describe a decompression failure of the file ``label`` in one line."""
    text = str(exc)
    if "Unknown frame descriptor" in text or "unknown frame" in text.lower():
        return BundleFormatError(
            f"{label} is not a zstd-compressed file",
            "give a goldmaster bundle (NAME-VERSION.gm.tar.zst), "
            "not a tar, zip or text file",
        )
    if isinstance(exc, OSError):
        return BundleFormatError(f"cannot read {label}{where}: {exc}")
    return BundleFormatError(
        f"the zstd stream of {label} is corrupt or truncated{where} ({text})",
        "the file is damaged: copy it again from its source",
    )


@dataclass
class Member:
    """One tar member as read from a bundle, its name relative to the top folder."""

    path: str
    kind: str  # "file", "link" or "dir"
    size: int
    link: str | None
    mode: int


_DECIMAL = re.compile(rb"[0-9]{1,20}")
# PAX keys that change how GNU tar reads the member's data: a reader that
# ignored them would see other bytes than tar does, so bundles never use them.
_REJECTED_PAX_PREFIXES = ("GNU.sparse.", "SCHILY.", "LIBARCHIVE.")
# Largest size that fits the 11 octal digits of a ustar size field.
USTAR_MAX_SIZE = 8**11 - 1
USTAR_LIMIT = USTAR_MAX_SIZE + 1


def _parse_pax(data: bytes, member: str) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos)
        if space < 0 or not _DECIMAL.fullmatch(data[pos:space]):
            raise BundleFormatError(f"malformed PAX header near {member!r}")
        length = int(data[pos:space])
        if length <= space - pos or pos + length > len(data) or data[pos + length - 1] != 10:
            raise BundleFormatError(f"malformed PAX header near {member!r}")
        record = data[space + 1 : pos + length - 1]
        key, sep, value = record.partition(b"=")
        if not sep:
            raise BundleFormatError(f"malformed PAX header near {member!r}")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _unsafe(name: str, what: str = "unsafe member name") -> UnsafeMemberError:
    return UnsafeMemberError(f"{what} {name!r}", "do not restore this bundle")


def safe_relpath(name: str, top: str | None) -> tuple[str, str]:
    """Split a member name into its top folder and a safe relative path, or raise.

    Rejected: absolute paths, ``..`` and ``.`` components, empty components,
    backslashes and control characters.
    """
    if not name or name.startswith("/") or "\\" in name or any(ord(c) < 32 for c in name):
        raise _unsafe(name)
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise _unsafe(name)
    if len(parts) < 2 and top is None:
        # Only the first member has no top folder to compare with. Other tar
        # files start like this, so it means "not a bundle", not "hostile".
        raise BundleFormatError(
            f"not a goldmaster bundle: its first member {name!r} is not inside a "
            "NAME-VERSION folder"
        )
    if len(parts) < 2:
        raise UnsafeMemberError(f"member {name!r} is outside the bundle's top folder")
    if top is not None and parts[0] != top:
        raise UnsafeMemberError(
            f"member {name!r} is outside the bundle's top folder {top!r}"
        )
    return parts[0], "/".join(parts[1:])


def _could_escape(name: str) -> bool:
    """Tell whether a name read by a tar tool that ignores PAX headers could
    land outside the folder it extracts into."""
    return name.startswith("/") or "\\" in name or ".." in name.split("/")


def _check_ustar_field(member: str, field: str, ustar: str, pax: str, width: int) -> None:
    """Reject a PAX value that does not match the ustar header field it replaces.

    Python's tarfile, which writes bundles, puts a PAX record only where the
    value is longer than the field or not ASCII, and then stores the value with
    '?' for each non-ASCII character, cut to the field's width. Any other
    difference means that tools which ignore PAX headers would see another
    member than goldmaster does.
    """
    if ustar == pax:
        return
    if ustar == pax.encode("ascii", "replace")[:width].decode("ascii"):
        return
    raise UnsafeMemberError(
        f"member {member!r}: its PAX {field} does not match the tar header's {ustar!r}",
        "do not restore this bundle",
    )


def _pax_size(member: str, info: tarfile.TarInfo, pax: dict[str, str]) -> int:
    if "size" not in pax:
        return info.size
    if not _DECIMAL.fullmatch(pax["size"].encode("utf-8", "surrogateescape")):
        raise BundleFormatError(f"invalid PAX size {pax['size']!r} for {member!r}")
    size = int(pax["size"])
    # tarfile writes 0 in the ustar field when the size does not fit it.
    if size != info.size and not (info.size == 0 and size > USTAR_MAX_SIZE):
        raise UnsafeMemberError(
            f"member {member!r}: its PAX size {size} does not match the tar header's "
            f"{info.size}",
            "do not restore this bundle",
        )
    return size


class TarStream:
    """A strict, streaming tar reader over a decompressed bundle.

    Only regular files, hard links and directories are accepted. Every other
    type (symbolic links, devices, FIFOs, GNU long names, global PAX headers)
    is rejected with its name. PAX records must agree with the ustar fields
    they replace, so that every tar reader sees the same members.
    """

    def __init__(self, source: _Source) -> None:
        self._src = source
        self._pending = 0
        self._size = 0
        self._name = ""
        self.top: str | None = None

    def __iter__(self) -> Iterator[Member]:
        return self

    def __next__(self) -> Member:
        self.skip_data()
        self._src.where = f" after member {self._name!r}" if self._name else ""
        pax: dict[str, str] = {}
        while True:
            block = self._src.read_exact(BLOCK)
            if block == b"\0" * BLOCK:
                raise StopIteration
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise BundleFormatError(f"corrupt tar header{self._src.where}: {exc}") from exc
            if info.type == tarfile.XHDTYPE:
                pax.update(self._read_pax(info))
                continue
            if info.type == tarfile.XGLTYPE:
                raise UnsafeMemberError(
                    f"global PAX header {info.name!r}{self._src.where} is not allowed",
                    "do not restore this bundle",
                )
            if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                raise UnsafeMemberError(
                    f"GNU long-name header {info.name!r}{self._src.where} is not allowed",
                    "do not restore this bundle",
                )
            return self._member(info, pax)

    def _read_pax(self, info: tarfile.TarInfo) -> dict[str, str]:
        if _could_escape(info.name):
            raise _unsafe(info.name, "unsafe PAX header name")
        if not 0 <= info.size <= MAX_MANIFEST_BYTES:
            raise BundleFormatError(
                f"PAX header of {info.size} bytes{self._src.where} is too large"
            )
        data = self._src.read_exact(info.size + len(padding(info.size)))
        return _parse_pax(data[: info.size], info.name)

    def _member(self, info: tarfile.TarInfo, pax: dict[str, str]) -> Member:
        name = pax.get("path", info.name)
        self._name = name
        self._src.where = f" in member {name!r}"
        rejected = sorted(key for key in pax if key.startswith(_REJECTED_PAX_PREFIXES))
        if rejected:
            raise UnsafeMemberError(
                f"member {name!r} has the PAX key {rejected[0]!r}, which bundles never use",
                "do not restore this bundle",
            )
        if "path" in pax:
            _check_ustar_field(name, "path", info.name, name, tarfile.LENGTH_NAME)
        if _could_escape(info.name):
            raise _unsafe(info.name)
        size = _pax_size(name, info, pax)
        if size < 0:
            raise BundleFormatError(f"negative size for {name!r}")
        top, rel = safe_relpath(name, self.top)
        self.top = top
        kind, link = self._kind(info, pax, name, top)
        if kind != "file" and size != 0:
            raise UnsafeMemberError(
                f"member {name!r} is a {_type_name(info.type)} with {size} bytes of data",
                "do not restore this bundle",
            )
        self._pending = size + len(padding(size))
        self._size = size
        return Member(rel, kind, size, link, info.mode & 0o777)

    @staticmethod
    def _kind(
        info: tarfile.TarInfo, pax: dict[str, str], name: str, top: str
    ) -> tuple[str, str | None]:
        if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
            return "file", None
        if info.type == tarfile.DIRTYPE:
            return "dir", None
        if info.type != tarfile.LNKTYPE:
            raise UnsafeMemberError(
                f"member {name!r} is a {_type_name(info.type)}, which bundles never contain",
                "do not restore this bundle",
            )
        target = pax.get("linkpath", info.linkname)
        if "linkpath" in pax:
            _check_ustar_field(name, "linkpath", info.linkname, target, tarfile.LENGTH_LINK)
        if _could_escape(info.linkname):
            raise _unsafe(info.linkname, f"hard link {name!r} points to the unsafe path")
        try:
            _, link = safe_relpath(target, top)
        except UnsafeMemberError as exc:
            raise UnsafeMemberError(
                f"hard link {name!r} points to {target!r}, outside the bundle's top folder",
                "do not restore this bundle",
            ) from exc
        return "link", link

    def read_data(self, sink: Callable[[memoryview], None]) -> None:
        """Pass the current member's data to ``sink`` in chunks."""
        remaining = self._size
        while remaining:
            view = self._src.read(min(CHUNK, remaining))
            if not view:
                raise self._truncated()
            sink(view)
            remaining -= len(view)
            self._pending -= len(view)
        self._size = 0

    def skip_data(self) -> None:
        while self._pending:
            view = self._src.read(min(CHUNK, self._pending))
            if not view:
                raise self._truncated()
            self._pending -= len(view)
        self._size = 0

    def _truncated(self) -> BundleFormatError:
        return BundleFormatError(
            f"the bundle is truncated in member {self._name!r}", "copy it again from its source"
        )

    def read_all(self) -> bytes:
        chunks: list[bytes] = []
        self.read_data(lambda view: chunks.append(bytes(view)))
        self.skip_data()
        return b"".join(chunks)


def _type_name(kind: bytes) -> str:
    names = {
        tarfile.SYMTYPE: "symbolic link",
        tarfile.CHRTYPE: "character device",
        tarfile.BLKTYPE: "block device",
        tarfile.FIFOTYPE: "FIFO",
        tarfile.LNKTYPE: "hard link",
        tarfile.DIRTYPE: "directory",
    }
    return names.get(kind, f"tar member of type {kind!r}")


class HashingFile:
    """A read-only file wrapper that hashes every byte read through it."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.digest.update(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        count = self._fh.readinto(buffer)  # type: ignore[attr-defined]
        self.digest.update(memoryview(buffer)[:count])
        return count

    def finish(self) -> str:
        """Hash the rest of the file and return the hex digest of all of it."""
        while chunk := self._fh.read(CHUNK):
            self.digest.update(chunk)
        return self.digest.hexdigest()


class BundleReader:
    """Opens a bundle for one sequential pass over its members.

    With ``head_only`` the reader decompresses only what is read, for callers
    that stop after the manifest; otherwise a background thread decompresses
    ahead of the reader.
    """

    def __init__(self, path: Path, hash_file: bool = False, head_only: bool = False) -> None:
        try:
            # The reader keeps the file open until close(); the context manager is the reader.
            self._fh = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError as exc:
            raise InputError(f"bundle not found: {path}") from exc
        except IsADirectoryError as exc:
            raise InputError(f"{path} is a folder, not a bundle file") from exc
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from exc
        self.size = os.fstat(self._fh.fileno()).st_size
        if self.size == 0:
            self._fh.close()
            raise BundleFormatError(f"{path} is empty")
        self.hashing = HashingFile(self._fh) if hash_file else None
        source = self.hashing if self.hashing is not None else self._fh
        self._stream: _OnDemand | _Decompressed
        if head_only:
            self._stream = _OnDemand(source, MAX_MANIFEST_BYTES)  # type: ignore[arg-type]
        else:
            self._stream = _Decompressed(source, MAX_MANIFEST_BYTES)  # type: ignore[arg-type]
        self._stream.label = str(path)
        self.tar = TarStream(self._stream)

    def allow(self, total: int) -> None:
        """Raise the cap on decompressed bytes once the manifest declares sizes."""
        self._stream.limit = total

    def file_digest(self) -> str:
        """Stop decompressing, hash the rest of the file and return the sha256
        of the whole bundle file. Needs ``hash_file=True``."""
        assert self.hashing is not None
        self._stream.close()
        return self.hashing.finish()

    def close(self) -> None:
        self._stream.close()
        self._fh.close()

    def __enter__(self) -> BundleReader:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
