"""Restore and verify on hostile bundles: every case is rejected with an
error that names the member, and nothing lands outside the destination."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

from bundle_craft import (
    END,
    TOP,
    build,
    entry,
    file_member,
    header,
    pad,
    pax_header,
    tar_stream,
    valid_files,
    write_bundle,
)
from goldmaster.cli import cli
from goldmaster.errors import GoldmasterError
from goldmaster.restore import PARTIAL_MARKER, PARTIAL_NAME, RestoreOptions, restore
from goldmaster.verify import verify
from helpers import paths_under


@dataclass
class Area:
    """A scratch folder with a bundle path, a destination and a sibling folder
    that a hostile bundle would like to write into."""

    root: Path
    bundle: Path
    dest: Path
    sibling: Path


@pytest.fixture
def area(tmp_path: Path) -> Area:
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    (sibling / "keep.txt").write_text("precious\n")
    return Area(tmp_path, tmp_path / "hostile.gm.tar.zst", tmp_path / "dest", sibling)


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every path under ``folder`` with its content, or its kind if not a file."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = "symlink"
        elif path.is_file():
            found[rel] = path.read_bytes()
        else:
            found[rel] = "dir"
    return found


# Each case returns the body members, the manifest entries and the member
# name that the error must contain.
Case = Callable[[Area], tuple[list[bytes], list[dict], str]]


def _valid() -> tuple[list[bytes], list[dict]]:
    return valid_files()


def absolute_path(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{area.sibling}/pwned"
    return body + [file_member(name, b"x")], files, name


def dotdot(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/../sibling/pwned"
    return body + [file_member(name, b"x")], files, name


def dotdot_deep(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/../../sibling/pwned"
    return (
        body + [file_member(name, b"x")],
        files + [entry("../sibling/pwned", b"x")],
        name,
    )


def symlink(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/link"
    return (
        body + [header(name, kind=tarfile.SYMTYPE, linkname="../../sibling")],
        files,
        name,
    )


def symlink_chain(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    first = f"{TOP}/weights/link1"
    body += [
        header(first, kind=tarfile.SYMTYPE, linkname="link2"),
        header(f"{TOP}/weights/link2", kind=tarfile.SYMTYPE, linkname="../../sibling"),
    ]
    return body, files, first


def symlink_then_file(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    link = f"{TOP}/weights/dir"
    body += [
        header(link, kind=tarfile.SYMTYPE, linkname=str(area.sibling)),
        file_member(f"{link}/pwned", b"x"),
    ]
    return body, files + [entry("weights/dir/pwned", b"x")], link


def hardlink_absolute(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/hard"
    body.append(header(name, kind=tarfile.LNKTYPE, linkname=f"{area.sibling}/keep.txt"))
    return body, files + [entry("weights/hard", b"precious\n")], name


def hardlink_dotdot(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/hard"
    body.append(
        header(name, kind=tarfile.LNKTYPE, linkname=f"{TOP}/../sibling/keep.txt")
    )
    return body, files + [entry("weights/hard", b"precious\n")], name


def hardlink_to_later(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    data = b"later member\n"
    body += [
        header(
            f"{TOP}/weights/hard", kind=tarfile.LNKTYPE, linkname=f"{TOP}/weights/later"
        ),
        file_member(f"{TOP}/weights/later", data),
    ]
    files += [entry("weights/hard", data), entry("weights/later", data)]
    return body, files, "weights/hard"


def hardlink_to_manifest(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/hard"
    body.append(header(name, kind=tarfile.LNKTYPE, linkname=f"{TOP}/manifest.yaml"))
    return body, files + [entry("weights/hard", b"")], "weights/hard"


def hardlink_then_file(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    weights = next(f for f in files if f["path"] == "weights/model.bin")
    body += [
        header(
            f"{TOP}/weights/d",
            kind=tarfile.LNKTYPE,
            linkname=f"{TOP}/weights/model.bin",
        ),
        file_member(f"{TOP}/weights/d/pwned", b"x"),
    ]
    files += [dict(weights, path="weights/d"), entry("weights/d/pwned", b"x")]
    return body, files, "weights/d/pwned"


def file_then_folder_use(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    body += [
        file_member(f"{TOP}/weights/x/inner", b"inner"),
        file_member(f"{TOP}/weights/x", b"outer"),
    ]
    files += [entry("weights/x/inner", b"inner"), entry("weights/x", b"outer")]
    return body, files, "weights/x"


def char_device(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/null"
    return body + [header(name, kind=tarfile.CHRTYPE)], files, name


def block_device(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/sda"
    return body + [header(name, kind=tarfile.BLKTYPE)], files, name


def fifo(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/pipe"
    return body + [header(name, kind=tarfile.FIFOTYPE)], files, name


def duplicate_name(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    return (
        body + [file_member(f"{TOP}/weights/model.bin", b"other")],
        files,
        "weights/model.bin",
    )


def duplicate_as_folder(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    folder = header(f"{TOP}/weights/model.bin/", kind=tarfile.DIRTYPE)
    return body + [folder], files, "weights/model.bin"


def duplicate_manifest(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    return (
        body + [file_member(f"{TOP}/manifest.yaml", b"schema: x\n")],
        files,
        "manifest.yaml",
    )


def pax_size_larger(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/lie"
    data = b"short"
    lie = header(name, len(data), pax={"size": str(1 << 20)}) + pad(data)
    return body + [lie], files + [entry("weights/lie", data)], name


def pax_size_smuggles_member(area: Area) -> tuple[list[bytes], list[dict], str]:
    """The ustar size covers a hidden member; the PAX size declares 0, so a reader
    that honours PAX would see the hidden member as a real one."""
    body, files = _valid()
    name = f"{TOP}/weights/cover"
    hidden = file_member(f"{TOP}/../sibling/pwned", b"x")
    lie = header(name, len(hidden), pax={"size": "0"}) + hidden
    return body + [lie], files + [entry("weights/cover", b"")], name


def header_size_lie(area: Area) -> tuple[list[bytes], list[dict], str]:
    """A header declares more data than follows, so the next headers are read
    as the member's data."""
    body, files = _valid()
    name = f"{TOP}/weights/long"
    data = b"ten bytes!"
    lie = header(name, 4096) + pad(data)
    return (
        body + [lie],
        files + [dict(entry("weights/long", data), size=4096)],
        "weights/long",
    )


def pax_path_differs(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    data = b"renamed"
    lie = header(f"{TOP}/weights/a", len(data), pax={"path": f"{TOP}/weights/b"}) + pad(
        data
    )
    return body + [lie], files + [entry("weights/b", data)], "weights/b"


def pax_path_escapes(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/../../sibling/pwned"
    lie = header(f"{TOP}/weights/a", 1, pax={"path": name}) + pad(b"x")
    return body + [lie], files, name


def ustar_name_escapes(area: Area) -> tuple[list[bytes], list[dict], str]:
    """The PAX path is harmless but tar tools that ignore PAX headers would
    write to the ustar name, outside the destination."""
    body, files = _valid()
    data = b"x"
    lie = header("../../sibling/pwned", 1, pax={"path": f"{TOP}/weights/a"}) + pad(data)
    return body + [lie], files + [entry("weights/a", data)], "weights/a"


def pax_linkpath_escapes(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/hard"
    lie = header(
        name,
        kind=tarfile.LNKTYPE,
        linkname=f"{TOP}/weights/model.bin",
        pax={"linkpath": f"{area.sibling}/keep.txt"},
    )
    return body + [lie], files + [entry("weights/hard", b"precious\n")], name


def global_pax_path(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    glob = pax_header({"path": f"{area.sibling}/pwned"}, kind=tarfile.XGLTYPE)
    return (
        [glob] + body,
        files,
        f"global PAX header '././@PaxHeader' after member '{TOP}/manifest.yaml'",
    )


def gnu_sparse_pax(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = f"{TOP}/weights/sparse"
    lie = header(name, 1, pax={"GNU.sparse.size": "1000000"}) + pad(b"x")
    return body + [lie], files + [entry("weights/sparse", b"x")], name


def gnu_long_name(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    long = header("././@LongLink", 20, kind=tarfile.GNUTYPE_LONGNAME) + pad(
        b"../../sibling/pwned\0"
    )
    message = f"'././@LongLink' after member '{TOP}/weights/model.bin'"
    return body + [long, file_member(f"{TOP}/weights/short", b"x")], files, message


def other_top_folder(area: Area) -> tuple[list[bytes], list[dict], str]:
    body, files = _valid()
    name = "other-2/weights/model.bin"
    return body + [file_member(name, b"x")], files, name


HOSTILE: list[Case] = [
    absolute_path,
    dotdot,
    dotdot_deep,
    symlink,
    symlink_chain,
    symlink_then_file,
    hardlink_absolute,
    hardlink_dotdot,
    hardlink_to_later,
    hardlink_to_manifest,
    hardlink_then_file,
    file_then_folder_use,
    char_device,
    block_device,
    fifo,
    duplicate_name,
    duplicate_as_folder,
    duplicate_manifest,
    pax_size_larger,
    pax_size_smuggles_member,
    header_size_lie,
    pax_path_differs,
    pax_path_escapes,
    ustar_name_escapes,
    pax_linkpath_escapes,
    global_pax_path,
    gnu_sparse_pax,
    gnu_long_name,
    other_top_folder,
]


def check_untouched(area: Area, before: dict[str, bytes | str]) -> None:
    assert tree(area.sibling) == before
    assert sorted(p.name for p in area.root.iterdir()) == [
        "hostile.gm.tar.zst",
        "sibling",
    ]
    assert not Path("/pwned").exists()


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.__name__)
def test_restore_rejects_hostile_member(area: Area, case: Case) -> None:
    body, files, name = case(area)
    build(area.bundle, body, files)
    before = tree(area.sibling)

    with pytest.raises(GoldmasterError) as raised:
        restore(area.bundle, area.dest)

    assert name in raised.value.message
    assert not area.dest.exists()
    check_untouched(area, before)


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.__name__)
def test_verify_rejects_hostile_member(area: Area, case: Case) -> None:
    body, files, name = case(area)
    build(area.bundle, body, files)
    before = tree(area.sibling)

    result = CliRunner().invoke(cli, ["verify", str(area.bundle)])

    assert result.exit_code in (1, 2), result.output
    assert name in result.output
    assert "unexpected failure" not in result.output
    check_untouched(area, before)


def test_craft_valid_bundle_restores(area: Area) -> None:
    body, files = valid_files()
    build(area.bundle, body, files)

    report = verify(area.bundle)
    result = restore(area.bundle, area.dest)

    assert report.ok
    assert result.files == 2
    assert (area.dest / "weights" / "model.bin").read_bytes() == b"weights " * 1000
    assert (area.dest / "manifest.yaml").is_file()


# ---------------------------------------------------------------------------
# A manifest that disagrees with the members


def _disagreeing(kind: str) -> tuple[list[bytes], list[dict], str]:
    body, files = valid_files()
    if kind == "extra":
        body.append(file_member(f"{TOP}/code/unlisted.py", b"x"))
        return body, files, "code/unlisted.py"
    if kind == "missing":
        return body, files + [entry("code/absent.py", b"x")], "code/absent.py"
    target = next(f for f in files if f["path"] == "code/infer.py")
    if kind == "size":
        target["size"] += 1
    else:
        target["sha256"] = hashlib.sha256(b"other").hexdigest()
    return body, files, "code/infer.py"


@pytest.mark.parametrize("kind", ["extra", "missing", "size", "digest"])
def test_verify_reports_manifest_disagreement(area: Area, kind: str) -> None:
    body, files, name = _disagreeing(kind)
    build(area.bundle, body, files)

    result = CliRunner().invoke(cli, ["verify", str(area.bundle)])

    assert result.exit_code == 1, result.output
    assert name in result.output
    assert "FAILED" in result.output


@pytest.mark.parametrize("kind", ["extra", "missing", "size", "digest"])
def test_restore_rejects_manifest_disagreement(area: Area, kind: str) -> None:
    body, files, name = _disagreeing(kind)
    build(area.bundle, body, files)

    with pytest.raises(GoldmasterError) as raised:
        restore(area.bundle, area.dest)

    assert name in raised.value.message
    assert not area.dest.exists()


def test_restore_rejects_wrong_sha256sums(area: Area) -> None:
    body, files = valid_files()
    sums = {f["path"]: f["sha256"] for f in files}
    sums["code/infer.py"] = "0" * 64
    write_bundle(area.bundle, tar_stream(body, files, sums))

    with pytest.raises(GoldmasterError) as raised:
        restore(area.bundle, area.dest)

    assert "SHA256SUMS" in raised.value.message
    assert not area.dest.exists()


# ---------------------------------------------------------------------------
# A stream that decompresses far beyond the declared sizes


def _bomb(path: Path, declared: int, actual: int) -> str:
    """Write a bundle whose manifest declares ``declared`` bytes for one
    member whose tar header and zero-filled data are ``actual`` bytes."""
    body, files = valid_files()
    name = "weights/zeros"
    files.append(
        {"path": name, "size": declared, "sha256": hashlib.sha256(b"").hexdigest()}
    )
    full = tar_stream(body, files)
    head, tail = full[: -len(END)], END
    sums_start = head.rindex(f"{TOP}/SHA256SUMS".encode()) - 0
    sums_header_start = sums_start - sums_start % 512
    before, sums = head[:sums_header_start], head[sums_header_start:]
    params = zstandard.ZstdCompressionParameters.from_level(1)
    with open(path, "wb") as fh:
        writer = zstandard.ZstdCompressor(compression_params=params).stream_writer(fh)
        writer.write(before + header(f"{TOP}/{name}", actual))
        zeros = bytes(4 << 20)
        remaining = actual
        while remaining:
            count = min(len(zeros), remaining)
            writer.write(zeros[:count])
            remaining -= count
        writer.write(sums + tail)
        writer.flush(zstandard.FLUSH_FRAME)
    return name


def test_bomb_stays_small_on_disk(area: Area) -> None:
    _bomb(area.bundle, 1024, 1 << 30)

    assert area.bundle.stat().st_size < 1 << 20


def test_verify_stops_decompression_bomb(area: Area) -> None:
    name = _bomb(area.bundle, 1024, 1 << 30)

    with pytest.raises(GoldmasterError) as raised:
        verify(area.bundle)

    assert name in raised.value.message
    assert "more bytes than its manifest declares" in raised.value.message


def test_restore_stops_decompression_bomb(area: Area) -> None:
    name = _bomb(area.bundle, 1024, 1 << 30)
    before = tree(area.sibling)

    with pytest.raises(GoldmasterError) as raised:
        restore(area.bundle, area.dest)

    assert name in raised.value.message
    assert not area.dest.exists()
    check_untouched(area, before)


# ---------------------------------------------------------------------------
# Failing midway


def _fails_late(area: Area) -> None:
    body, files = valid_files()
    build(
        area.bundle,
        body + [header(f"{TOP}/weights/pipe", kind=tarfile.FIFOTYPE)],
        files,
    )


def test_restore_failure_removes_written_files(area: Area) -> None:
    _fails_late(area)

    with pytest.raises(GoldmasterError):
        restore(area.bundle, area.dest)

    assert not area.dest.exists()


def test_restore_failure_keeps_existing_destination(area: Area) -> None:
    _fails_late(area)
    area.dest.mkdir()
    (area.dest / "old.txt").write_text("old\n")

    with pytest.raises(GoldmasterError):
        restore(area.bundle, area.dest, RestoreOptions(force=True))

    assert tree(area.dest) == {"old.txt": b"old\n"}


def test_restore_keep_partial_marks_folder(area: Area) -> None:
    _fails_late(area)

    with pytest.raises(GoldmasterError):
        restore(area.bundle, area.dest, RestoreOptions(keep_partial=True))

    assert sorted(p.name for p in area.dest.iterdir()) == [PARTIAL_NAME]
    partial = area.dest / PARTIAL_NAME
    assert (partial / PARTIAL_MARKER).read_text().startswith("This restore failed")
    assert (partial / "weights" / "model.bin").read_bytes() == b"weights " * 1000
    assert not (partial / "weights" / "pipe").exists()


def test_restore_cli_names_member_and_exits_2(area: Area) -> None:
    _fails_late(area)

    result = CliRunner().invoke(cli, ["restore", str(area.bundle), str(area.dest)])

    assert result.exit_code == 2
    assert f"Error: member '{TOP}/weights/pipe' is a FIFO" in result.output
    assert "Traceback" not in result.output


def test_real_bundle_with_long_and_unicode_names_restores(tmp_path: Path) -> None:
    """The PAX checks accept what tarfile writes for names that do not fit a
    ustar header: longer than 100 characters, or not ASCII."""
    from goldmaster.capture import CaptureOptions, capture

    model = tmp_path / "model"
    long_name = "shard-" + "x" * 120 + ".bin"
    (model / "sub").mkdir(parents=True)
    (model / long_name).write_bytes(b"long")
    (model / "sub" / "größe-模型.bin").write_bytes(b"unicode")
    code = tmp_path / "code"
    code.mkdir()
    (code / "infer.py").write_text("print(1)\n")
    options = CaptureOptions(
        model=model, output=tmp_path / "out", code=code, version="1", env=False)
    bundle = capture(options).bundle

    report = verify(bundle)
    restored = restore(bundle, tmp_path / "dest")

    assert report.ok
    assert restored.files == len(restored.manifest["files"])
    assert paths_under(restored.manifest, "weights", "code") == sorted(
        [f"weights/{long_name}", "weights/sub/größe-模型.bin", "code/infer.py"]
    )
    assert (tmp_path / "dest" / "weights" / long_name).read_bytes() == b"long"
    assert (
        tmp_path / "dest" / "weights" / "sub" / "größe-模型.bin"
    ).read_bytes() == b"unicode"
