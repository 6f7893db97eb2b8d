"""Build bundles member by member, including malformed and hostile ones.

The tests write tar headers themselves (through tarfile's header encoder or by
hand) so that each bundle reaches exactly the check under test: a valid
manifest.yaml comes first, then the members, SHA256SUMS and the end blocks.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

import zstandard

from goldmaster import __version__, manifest

NAME = "evil"
VERSION = "1"
TOP = f"{NAME}-{VERSION}"
BLOCK = 512
END = b"\0" * (2 * BLOCK)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def header(
    name: str,
    size: int = 0,
    kind: bytes = tarfile.REGTYPE,
    linkname: str = "",
    mode: int = 0o644,
    pax: dict[str, str] | None = None,
    fmt: int = tarfile.USTAR_FORMAT,
) -> bytes:
    """Encode one tar header. ``pax`` records go into an extended header in
    front of it, with no check that they agree with the ustar fields."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.mtime = 1_700_000_000
    info.uname = info.gname = "root"
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    raw = info.tobuf(format=fmt, encoding="utf-8", errors="surrogateescape")
    if pax:
        raw = pax_header(pax) + raw
    return raw


def pax_header(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """Encode a PAX extended (or, with XGLTYPE, global) header with ``records``."""
    body = b""
    for key, value in records.items():
        record = f" {key}={value}\n".encode()
        length = len(record) + 1
        while len(str(length)) + len(record) != length:
            length = len(str(length)) + len(record)
        body += str(length).encode() + record
    return header("././@PaxHeader", len(body), kind) + pad(body)


def file_member(name: str, data: bytes, **kwargs: Any) -> bytes:
    return header(name, len(data), **kwargs) + pad(data)


def entry(path: str, data: bytes) -> dict[str, Any]:
    """A manifest files entry for ``data`` stored at ``path`` under the top folder."""
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def manifest_bytes(files: list[dict[str, Any]]) -> bytes:
    return manifest.dump(
        {
            "schema": manifest.SCHEMA,
            "goldmaster": __version__,
            "name": NAME,
            "version": VERSION,
            "created": "2024-01-01T00:00:00Z",
            "files": sorted(files, key=lambda f: f["path"]),
        }
    )


def tar_stream(
    body: list[bytes],
    files: list[dict[str, Any]],
    sums: dict[str, str] | None = None,
) -> bytes:
    """Return an uncompressed bundle: manifest, ``body``, SHA256SUMS, end blocks.

    SHA256SUMS lists ``files`` and the manifest unless ``sums`` replaces it.
    """
    text = manifest_bytes(files)
    if sums is None:
        sums = {f["path"]: f["sha256"] for f in files}
        sums["manifest.yaml"] = hashlib.sha256(text).hexdigest()
    sums_text = manifest.sha256sums(sorted(sums.items()))
    return (
        file_member(f"{TOP}/manifest.yaml", text)
        + b"".join(body)
        + file_member(f"{TOP}/SHA256SUMS", sums_text)
        + END
    )


def write_bundle(path: Path, raw: bytes) -> Path:
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(raw))
    return path


def build(path: Path, body: list[bytes], files: list[dict[str, Any]]) -> Path:
    """Write a bundle whose manifest lists ``files`` and whose body is ``body``."""
    return write_bundle(path, tar_stream(body, files))


def valid_files() -> tuple[list[bytes], list[dict[str, Any]]]:
    """Members and manifest entries of a small bundle that restores cleanly."""
    weights = b"weights " * 1000
    code = b"print('hello')\n"
    body = [
        file_member(f"{TOP}/code/infer.py", code),
        file_member(f"{TOP}/weights/model.bin", weights),
    ]
    return body, [entry("code/infer.py", code), entry("weights/model.bin", weights)]
