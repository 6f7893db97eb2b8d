"""The bundle container: the reserved manifest frame and its fallback."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from goldmaster.archive import (
    SKIPPABLE_HEADER,
    BundleReader,
    BundleWriter,
    _HeadTooLarge,
    compress_head,
    rewrite_with_head,
)
from helpers import decompress

MTIME = 1_700_000_000


def _write_body(fh: io.BufferedRandom, reserve: int, source: Path) -> BundleWriter:
    writer = BundleWriter(fh, "m-1", MTIME, threads=1, head_reserve=reserve)
    writer.add_file("weights/w.bin", source, level=3)
    writer.add_bytes("code/a.py", b"print(1)\n", level=9)
    return writer


def _names(path: Path) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(decompress(path))) as tar:
        return tar.getnames()


def test_manifest_fits_exact_reserve(tmp_path: Path) -> None:
    source = tmp_path / "w.bin"
    source.write_bytes(os.urandom(100_000))
    # Random hex digits compress poorly, like a manifest full of sha256 digests.
    manifest = os.urandom(30_000).hex().encode()
    bundle = tmp_path / "m-1.gm.tar.zst"

    with open(bundle, "w+b") as fh:
        reserve = len(compress_head("m-1", manifest, MTIME)) + SKIPPABLE_HEADER
        writer = _write_body(fh, reserve, source)
        writer.close([("SHA256SUMS", b"")], manifest, level=9)

    assert _names(bundle) == [
        "m-1/manifest.yaml",
        "m-1/weights/w.bin",
        "m-1/code/a.py",
        "m-1/SHA256SUMS",
    ]


def test_oversized_manifest_moves_body(tmp_path: Path) -> None:
    source = tmp_path / "w.bin"
    source.write_bytes(os.urandom(200_000))
    manifest = os.urandom(20_000).hex().encode()
    first = tmp_path / "first"
    reserve = 1024

    with open(first, "w+b") as fh:
        writer = _write_body(fh, reserve, source)
        with pytest.raises(_HeadTooLarge) as info:
            writer.close([("SHA256SUMS", b"")], manifest, level=9)
    final = tmp_path / "m-1.gm.tar.zst"
    with open(final, "wb") as out:
        rewrite_with_head(first, info.value.frame, reserve, out)

    assert _names(final)[0] == "m-1/manifest.yaml"
    with tarfile.open(fileobj=io.BytesIO(decompress(final))) as tar:
        head = tar.extractfile("m-1/manifest.yaml")
        weights = tar.extractfile("m-1/weights/w.bin")
        assert head is not None and weights is not None
        assert head.read() == manifest
        assert weights.read() == source.read_bytes()
    with BundleReader(final, head_only=True) as reader:
        member = next(reader.tar)
        assert member.path == "manifest.yaml"
        assert reader.tar.read_all() == manifest
