"""Verify: every mismatch is found and named, unreadable input exits 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import zstandard

from conftest import Invoke
from goldmaster.errors import BundleFormatError
from goldmaster.verify import verify
from helpers import (
    body_start,
    compress,
    data_offset,
    decompress,
    member_bytes,
    paths_under,
    rewrite,
    sidecar_for,
    write_sidecar,
)


def _flip_byte(bundle: Path, relpath: str, index: int, out: Path) -> None:
    """Flip one byte inside a member's data, leaving every other byte of the
    tar stream as it was, and compress the result into ``out``."""
    stream = bytearray(decompress(bundle))
    offset = data_offset(bytes(stream), relpath) + index
    stream[offset] ^= 0x01
    compress(bytes(stream), out)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def test_intact_bundle_passes(bundle: Path, invoke: Invoke) -> None:
    report = verify(bundle)

    assert report.ok
    assert report.sidecar == "match"
    assert report.files == len(report.manifest["files"])
    assert len(paths_under(report.manifest, "weights", "code")) == 5
    assert (
        report.mismatched
        == report.missing
        == report.extra
        == report.sums_mismatched
        == []
    )
    result = invoke("verify", bundle)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"OK  {bundle}  {report.files} files")


def test_recompressed_bundle_passes(bundle: Path, tmp_path: Path) -> None:
    """A bundle recompressed into one zstd frame is still the same bundle."""
    copy = tmp_path / "copy" / bundle.name
    copy.parent.mkdir()
    compress(decompress(bundle), copy)

    report = verify(copy)

    assert report.ok
    assert report.sidecar == "absent"


def test_flipped_weights_byte_reported(
    bundle: Path, tmp_path: Path, invoke: Invoke
) -> None:
    bad = tmp_path / "bad" / bundle.name
    bad.parent.mkdir()
    _flip_byte(bundle, "weights/model.safetensors", 5000, bad)
    write_sidecar(bad)

    report = verify(bad)
    result = invoke("verify", bad)

    assert not report.ok
    assert [m.path for m in report.mismatched] == ["weights/model.safetensors"]
    assert report.sums_mismatched == ["weights/model.safetensors"]
    assert report.sidecar == "match"
    assert result.exit_code == 1
    assert "MISMATCH  weights/model.safetensors" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("FAILED")
    assert result.stderr.count("Error:") == 0


def test_flipped_compressed_byte_is_unreadable(
    bundle: Path, tmp_path: Path, invoke: Invoke
) -> None:
    """Damage inside a compressed frame stops decompression: the zstd frame
    checksum or the frame structure fails, which is unreadable input."""
    data = bytearray(bundle.read_bytes())
    # The middle of the body lies inside the frame of the weights.
    data[(body_start(bundle) + len(data)) // 2] ^= 0xFF
    bad = tmp_path / bundle.name
    bad.write_bytes(bytes(data))

    result = invoke("verify", bad)

    assert result.exit_code == 2
    assert len(_error_lines(result.stderr)) == 1
    assert "corrupt" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_tampered_sha256sums_reported(
    bundle: Path, tmp_path: Path, invoke: Invoke
) -> None:
    bad = tmp_path / "bad" / bundle.name
    bad.parent.mkdir()

    def edit(rel: str, data: bytes) -> tuple[str, bytes]:
        if rel != "SHA256SUMS":
            return rel, data
        lines = data.decode().splitlines(keepends=True)
        lines = [
            ("0" * 64) + line[64:] if "code/infer.py" in line else line
            for line in lines
        ]
        return rel, "".join(lines).encode()

    rewrite(bundle, bad, edit)
    write_sidecar(bad)

    report = verify(bad)
    result = invoke("verify", "--json", bad)

    assert report.mismatched == []
    assert report.sums_mismatched == ["code/infer.py"]
    assert result.exit_code == 1
    assert json.loads(result.stdout)["sha256sums_mismatched"] == ["code/infer.py"]


def test_tampered_sidecar_reported(bundle: Path, invoke: Invoke) -> None:
    sidecar_for(bundle).write_text(f"{'ab' * 32}  {bundle.name}\n")

    report = verify(bundle)
    result = invoke("verify", bundle)

    assert report.sidecar == "mismatch"
    assert not report.ok
    assert result.exit_code == 1
    assert f"SIDECAR   {bundle.name}.sha256 does not match the bundle" in result.stdout


def test_garbage_sidecar_fails(bundle: Path, invoke: Invoke) -> None:
    sidecar_for(bundle).write_text("garbage\n")

    report = verify(bundle)
    result = invoke("verify", bundle)

    assert report.sidecar == "invalid"
    assert not report.ok
    assert result.exit_code == 1
    assert f"SIDECAR   {bundle.name}.sha256 is invalid: it starts with 'garbage'" in result.stdout
    assert "FAILED" in result.stdout


def test_sidecar_folder_fails(bundle: Path, invoke: Invoke) -> None:
    sidecar_for(bundle).unlink()
    sidecar_for(bundle).mkdir()

    result = invoke("verify", "--json", bundle)

    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["sidecar"] == "invalid"
    assert data["sidecar_problem"] == "it is a folder, not a file"
    assert data["ok"] is False


def test_absent_sidecar_passes(bundle: Path, invoke: Invoke) -> None:
    sidecar_for(bundle).unlink()

    result = invoke("verify", bundle)

    assert result.exit_code == 0
    assert "sidecar absent" in result.stdout


def test_missing_member_reported(bundle: Path, tmp_path: Path, invoke: Invoke) -> None:
    bad = tmp_path / bundle.name

    def drop(rel: str, data: bytes) -> tuple[str, bytes] | None:
        return None if rel == "weights/tokenizer.json" else (rel, data)

    rewrite(bundle, bad, drop)

    report = verify(bad)
    result = invoke("verify", bad)

    assert report.missing == ["weights/tokenizer.json"]
    assert report.sums_mismatched == ["weights/tokenizer.json"]
    assert result.exit_code == 1
    assert "MISSING   weights/tokenizer.json" in result.stdout


def test_extra_member_reported(bundle: Path, tmp_path: Path, invoke: Invoke) -> None:
    bad = tmp_path / bundle.name
    rewrite(
        bundle, bad, lambda rel, data: (rel, data), extra=(("weights/extra.bin", b"x"),)
    )

    report = verify(bad)
    result = invoke("verify", bad)

    assert report.extra == ["weights/extra.bin"]
    assert result.exit_code == 1
    assert "EXTRA     weights/extra.bin" in result.stdout


def test_changed_member_size_reported(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / bundle.name

    def grow(rel: str, data: bytes) -> tuple[str, bytes]:
        return rel, data + b"\n" if rel == "code/infer.py" else data

    rewrite(bundle, bad, grow)

    report = verify(bad)

    [mismatch] = report.mismatched
    assert mismatch.path == "code/infer.py"
    assert "bytes" in mismatch.expected
    assert report.missing == []


def test_resized_member_one_line(bundle: Path, tmp_path: Path, invoke: Invoke) -> None:
    bad = tmp_path / bundle.name

    def grow(rel: str, data: bytes) -> tuple[str, bytes]:
        return rel, data + b"\n" if rel == "code/infer.py" else data

    rewrite(bundle, bad, grow)

    result = invoke("verify", bad)

    assert result.exit_code == 1
    assert "MISMATCH  code/infer.py" in result.stdout
    assert "MISSING" not in result.stdout


def test_missing_sha256sums_line(bundle: Path, tmp_path: Path, invoke: Invoke) -> None:
    bad = tmp_path / bundle.name

    def drop(rel: str, data: bytes) -> tuple[str, bytes] | None:
        return None if rel == "SHA256SUMS" else (rel, data)

    rewrite(bundle, bad, drop)

    result = invoke("verify", bad)

    assert result.exit_code == 1
    assert "SHA256SUMS is missing" in result.stdout
    assert "disagrees on SHA256SUMS" not in result.stdout


def test_json_report_keys(bundle: Path, invoke: Invoke) -> None:
    result = invoke("verify", "--json", bundle)

    data = json.loads(result.stdout)
    assert result.exit_code == 0
    assert list(data) == [
        "schema",
        "bundle",
        "ok",
        "name",
        "version",
        "files",
        "bytes",
        "mismatched",
        "missing",
        "extra",
        "sha256sums_mismatched",
        "sidecar",
        "sidecar_problem",
    ]
    assert data["schema"] == "goldmaster.verify/v1"
    assert data["ok"] is True
    assert data["name"] == "tiny-bert"
    assert data["version"] == "1.0"


def _plain_tar_zst(tmp_path: Path) -> Path:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    target = tmp_path / "plain.tar.zst"
    subprocess.run(
        ["tar", "--zstd", "-cf", str(target), "-C", str(tmp_path), "plain"], check=True
    )
    return target


def _bundles(bundle: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    data = bundle.read_bytes()
    truncated = tmp_path / "truncated.gm.tar.zst"
    truncated.write_bytes(data[: len(data) - 300])
    head_only = tmp_path / "head-only.gm.tar.zst"
    head_only.write_bytes(data[:2000])
    not_zstd = tmp_path / "text.gm.tar.zst"
    not_zstd.write_text("this is not a bundle\n")
    empty = tmp_path / "empty.gm.tar.zst"
    empty.write_bytes(b"")
    tar_only = tmp_path / "tar-only.gm.tar.zst"
    tar_only.write_bytes(zstandard.ZstdCompressor().compress(b"\0" * 1024))
    plain = _plain_tar_zst(tmp_path)
    return {
        "truncated": (truncated, "truncated"),
        "head only": (head_only, "truncated"),
        "not zstd": (not_zstd, "not a zstd-compressed file"),
        "empty": (empty, "empty"),
        "empty archive": (tar_only, "empty archive"),
        "plain tar.zst": (plain, "not a goldmaster bundle"),
        "missing": (tmp_path / "absent.gm.tar.zst", "not found"),
        "folder": (tmp_path, "is a folder"),
    }


CASES = [
    "truncated",
    "head only",
    "not zstd",
    "empty",
    "empty archive",
    "plain tar.zst",
    "missing",
    "folder",
]


@pytest.mark.parametrize("case", CASES)
def test_unreadable_input_exits_2(
    bundle: Path, tmp_path: Path, invoke: Invoke, case: str
) -> None:
    path, message = _bundles(bundle, tmp_path)[case]

    result = invoke("verify", path)

    assert result.exit_code == 2, result.stdout + result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def _corrupt_stream(bundle: Path, tmp_path: Path) -> Path:
    """Copy ``bundle`` with compressed bytes in its body frames scrambled."""
    data = bytearray(bundle.read_bytes())
    start = body_start(bundle) + 64
    for offset in range(start, start + 256):
        data[offset] ^= 0x5A
    target = tmp_path / "corrupt.gm.tar.zst"
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("verify", "not zstd"),
        ("inspect", "not zstd"),
        ("doctor", "not zstd"),
        ("verify", "corrupt"),
    ],
)
def test_zstd_error_names_file(
    bundle: Path, tmp_path: Path, invoke: Invoke, command: str, case: str
) -> None:
    if case == "corrupt":
        path = _corrupt_stream(bundle, tmp_path)
    else:
        path, _ = _bundles(bundle, tmp_path)[case]

    result = invoke(command, path)

    lines = result.stderr.splitlines()
    errors = _error_lines(result.stderr)
    assert result.exit_code == 2
    assert len(errors) == 1, result.stderr
    assert str(path) in errors[0]
    assert lines[lines.index(errors[0]) + 1].startswith("Tip: ")


def test_plain_tar_zst_raises_format_error(tmp_path: Path) -> None:
    with pytest.raises(BundleFormatError) as info:
        verify(_plain_tar_zst(tmp_path))

    assert "not a goldmaster bundle" in info.value.message


def test_manifest_without_schema_rejected(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / bundle.name

    def edit(rel: str, data: bytes) -> tuple[str, bytes]:
        if rel == "manifest.yaml":
            data = data.replace(b"schema: goldmaster/v1", b"schema: other/v1")
        return rel, data

    rewrite(bundle, bad, edit)

    with pytest.raises(BundleFormatError) as info:
        verify(bad)

    assert "not a goldmaster bundle" in info.value.message


def test_sha256sums_member_matches_manifest(bundle: Path) -> None:
    """The manifest is covered by SHA256SUMS, so verify rechecks both."""
    sums = member_bytes(bundle, "SHA256SUMS").decode()

    assert "  manifest.yaml\n" in sums



def test_summary_count_singular() -> None:
    from goldmaster.console import plural

    assert plural(1, "file") == "1 file"
    assert plural(0, "file") == "0 files"
    assert plural(5, "file") == "5 files"
