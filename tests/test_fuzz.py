"""Property tests: random corruptions, truncations and tar headers fed to the
bundle reader, verify and restore end in a GoldmasterError, never in another
exception or a hang."""

from __future__ import annotations

import contextlib
import signal
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundle_craft import END, TOP, file_member, pad, pax_header, tar_stream, valid_files
from goldmaster.archive import BundleReader
from goldmaster.capture import CaptureOptions, capture
from goldmaster.errors import GoldmasterError
from goldmaster.restore import restore
from goldmaster.verify import read_manifest, verify
from helpers import paths_under

# Each example decompresses at most a few megabytes; 10 s means a hang.
EXAMPLE_TIMEOUT_S = 10
FUZZ = settings(
    max_examples=60,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)


class Hang(Exception):
    """An example ran past EXAMPLE_TIMEOUT_S."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_members(path: Path) -> None:
    """Walk every member header and datum with the bare reader."""
    with BundleReader(path) as reader:
        reader.allow(1 << 30)
        for _member in reader.tar:
            reader.tar.skip_data()


def run_all(data: bytes) -> None:
    """Feed ``data`` as a bundle file to every reading entry point. Each may
    succeed or raise a GoldmasterError; anything else fails the test."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        bundle = root / "fuzzed.gm.tar.zst"
        bundle.write_bytes(data)
        steps: list[Callable[[], object]] = [
            lambda: read_members(bundle),
            lambda: read_manifest(bundle),
            lambda: verify(bundle),
            lambda: restore(bundle, root / "dest"),
        ]
        for step in steps:
            with time_limit(EXAMPLE_TIMEOUT_S), contextlib.suppress(GoldmasterError):
                step()
        assert sorted(p.name for p in root.iterdir()) in (
            ["fuzzed.gm.tar.zst"],
            ["dest", "fuzzed.gm.tar.zst"],
        )


@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small bundle written by capture: several zstd frames and a hard link."""
    root = tmp_path_factory.mktemp("fuzz-source")
    model = root / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}      ")
    (model / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (model / "copy.bin").hardlink_to(model / "weights.bin")
    code = root / "code"
    code.mkdir()
    (code / "infer.py").write_text("print('hi')\n")
    options = CaptureOptions(model=model, output=root / "out", code=code, version="1", env=False)
    return capture(options).bundle.read_bytes()


@pytest.fixture(scope="module")
def plain_tar() -> bytes:
    body, files = valid_files()
    return tar_stream(body, files)


def test_real_bundle_passes_every_step(real_bundle: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        bundle = Path(folder) / "ok.gm.tar.zst"
        bundle.write_bytes(real_bundle)
        assert verify(bundle).ok
        restored = restore(bundle, Path(folder) / "dest")
        assert restored.files == len(restored.manifest["files"])
        assert paths_under(restored.manifest, "weights", "code") == [
            "code/infer.py",
            "weights/copy.bin",
            "weights/model.safetensors",
            "weights/weights.bin",
        ]


edits = st.lists(
    st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
    min_size=1,
    max_size=8,
)


def apply(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for position, value in changes:
        buffer[position % len(buffer)] = value
    return bytes(buffer)


@FUZZ
@given(changes=edits)
def test_fuzz_corrupted_bundle_file(
    real_bundle: bytes, changes: list[tuple[int, int]]
) -> None:
    run_all(apply(real_bundle, changes))


@FUZZ
@given(cut=st.integers(min_value=0))
def test_fuzz_truncated_bundle_file(real_bundle: bytes, cut: int) -> None:
    run_all(real_bundle[: cut % len(real_bundle)])


@FUZZ
@given(changes=edits)
def test_fuzz_corrupted_tar_stream(
    plain_tar: bytes, changes: list[tuple[int, int]]
) -> None:
    """Corrupt the tar bytes before compression, so the zstd layer is valid and
    every error comes from the tar and manifest checks."""
    run_all(zstandard.ZstdCompressor().compress(apply(plain_tar, changes)))


@FUZZ
@given(cut=st.integers(min_value=0), extra=st.binary(max_size=1024))
def test_fuzz_truncated_tar_stream(plain_tar: bytes, cut: int, extra: bytes) -> None:
    run_all(
        zstandard.ZstdCompressor().compress(plain_tar[: cut % len(plain_tar)] + extra)
    )


TYPES = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.LNKTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.GNUTYPE_SPARSE,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
]

names = st.one_of(
    st.sampled_from(
        [
            f"{TOP}/weights/model.bin",
            f"{TOP}/code/infer.py",
            f"{TOP}/../x",
            "/etc/passwd",
            f"{TOP}/manifest.yaml",
            f"{TOP}/SHA256SUMS",
            TOP,
            "",
        ]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=120),
)

size_fields = st.one_of(
    st.integers(min_value=0, max_value=8**11 - 1).map(lambda n: b"%011o\0" % n),
    st.integers(min_value=-(2**60), max_value=2**60).map(
        lambda n: bytes([0xFF if n < 0 else 0x80]) + (n % 2**88).to_bytes(11, "big")
    ),
    st.binary(min_size=12, max_size=12),
)


def _field(value: bytes, width: int) -> bytes:
    return value[:width].ljust(width, b"\0")


@st.composite
def raw_headers(draw: st.DrawFn) -> bytes:
    """A 512-byte ustar header with random fields and a correct checksum, so
    that the reader gets past the checksum to the checks under test."""
    name = draw(names).encode("utf-8", "surrogateescape")
    link = draw(names).encode("utf-8", "surrogateescape")
    fields = [
        _field(name, 100),
        _field(draw(st.sampled_from([b"0000644\0", b"0007777\0", b"garbage!"])), 8),
        b"0000000\0",
        b"0000000\0",
        draw(size_fields),
        b"00000000000\0",
        b" " * 8,
        draw(st.one_of(st.sampled_from(TYPES), st.binary(min_size=1, max_size=1))),
        _field(link, 100),
        draw(st.sampled_from([b"ustar\x0000", b"ustar  \0", b"\0" * 8])),
        _field(b"root", 32),
        _field(b"root", 32),
        b"0000001\0",
        b"0000003\0",
        _field(draw(st.binary(max_size=20)), 155),
    ]
    block = bytearray(_field(b"".join(fields), 512))
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


pax_records = st.dictionaries(
    st.one_of(
        st.sampled_from(["path", "size", "linkpath", "mtime", "GNU.sparse.size"]),
        st.text(min_size=1, max_size=12).filter(lambda k: "=" not in k),
    ),
    st.one_of(
        st.sampled_from(
            [f"{TOP}/weights/model.bin", "../x", "0", "99999999999999", "-1"]
        ),
        st.text(max_size=40),
    ),
    max_size=3,
)


@FUZZ
@given(
    head=raw_headers(),
    pax=st.one_of(st.none(), pax_records),
    data=st.binary(max_size=2048),
    before=st.booleans(),
)
def test_fuzz_random_tar_header(
    head: bytes, pax: dict | None, data: bytes, before: bool
) -> None:
    """A valid manifest, then one random header with optional PAX records and
    data, placed before or after the valid members."""
    body, files = valid_files()
    member = (pax_header(pax) if pax is not None else b"") + head + pad(data)
    body = [member] + body if before else body + [member]
    run_all(zstandard.ZstdCompressor().compress(tar_stream(body, files)))


@FUZZ
@given(blocks=st.lists(st.binary(min_size=512, max_size=512), min_size=1, max_size=4))
def test_fuzz_random_blocks_after_manifest(blocks: list[bytes]) -> None:
    _, files = valid_files()
    raw = tar_stream([], files)[: -len(END)]
    raw = raw[: raw.rindex(f"{TOP}/SHA256SUMS".encode())]
    run_all(zstandard.ZstdCompressor().compress(raw + b"".join(blocks) + END))


def test_file_member_helper_pads_to_blocks() -> None:
    assert len(file_member(f"{TOP}/a", b"x")) == 1024
