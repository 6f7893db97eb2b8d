"""The bytegroup codec: the transform, its choice per file, and bundles that use it."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

import bundle_craft as craft
from goldmaster import codec
from goldmaster.codec import ByteGroup, Transform, group, plan, undo_command, ungroup
from goldmaster.errors import BundleFormatError, UnsafeMemberError
from goldmaster.restore import restore
from goldmaster.verify import verify
from helpers import member_bytes, members, run_capture, write_safetensors


def _transform(data: bytes, params: ByteGroup, decode: bool, chunk: int) -> bytes:
    transform = Transform(params, decode=decode)
    out = []
    for start in range(0, len(data), chunk):
        out += [bytes(piece) for piece in transform.feed(data[start : start + chunk])]
    out.append(bytes(transform.finish()))
    return b"".join(out)


def _model(folder: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", tensors, seed=7)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    return folder


# ---------------------------------------------------------------------------
# The transform


@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("size", [0, 1, 3, 7, 8, 9, 4099])
def test_group_round_trip_odd_sizes(width: int, size: int) -> None:
    data = os.urandom(size)

    grouped = group(data, width)

    assert len(grouped) == size
    assert bytes(ungroup(grouped, width)) == data
    whole = size // width * width
    assert grouped[: whole // width] == data[0:whole:width]
    assert grouped[whole:] == data[whole:]


def test_group_puts_bf16_high_bytes_together() -> None:
    values = np.array([1.0, -2.0, 0.5], dtype=np.float32).view(np.uint32) >> 16
    data = values.astype("<u2").tobytes()

    grouped = group(data, 2)

    assert grouped[:3] == data[0::2]
    assert grouped[3:] == bytes([0x3F, 0xC0, 0x3F])


@pytest.mark.parametrize("seed", range(6))
def test_transform_streams_in_any_chunks(seed: int) -> None:
    rng = random.Random(seed)
    width = rng.choice([2, 4, 8])
    params = ByteGroup(
        offset=rng.randrange(0, 300), width=width, block=rng.choice([1, 5, 64])
    )
    data = os.urandom(rng.randrange(0, 5000))
    block_bytes = params.block * width
    body = data[params.offset :]
    expected = data[: params.offset] + b"".join(
        group(body[i : i + block_bytes], width)
        for i in range(0, len(body), block_bytes)
    )

    stored = _transform(data, params, decode=False, chunk=rng.randrange(1, 700))

    assert stored == expected
    assert _transform(stored, params, decode=True, chunk=rng.randrange(1, 700)) == data


@pytest.mark.parametrize(("dtype", "width"), [("BF16", 2), ("F16", 2), ("F32", 4)])
def test_plan_chooses_width_and_header_offset(
    tmp_path: Path, dtype: str, width: int
) -> None:
    model = _model(tmp_path / "m", {"w": (dtype, (1024, 1024)), "b": (dtype, (1024,))})
    path = model / "model.safetensors"
    header_length = int.from_bytes(path.read_bytes()[:8], "little")

    chosen = plan(path, path.stat().st_size, level=1)

    assert chosen == ByteGroup(offset=8 + header_length, width=width)


def test_plan_skips_integer_and_small_files(tmp_path: Path) -> None:
    integers = (
        _model(tmp_path / "i", {"ids": ("I64", (512, 512))}) / "model.safetensors"
    )
    small = _model(tmp_path / "s", {"w": ("BF16", (64, 64))}) / "model.safetensors"
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((10**9).to_bytes(8, "little") + os.urandom(2 << 20))

    assert plan(integers, integers.stat().st_size, level=1) is None
    assert plan(small, small.stat().st_size, level=1) is None
    assert plan(broken, broken.stat().st_size, level=1) is None


def test_plan_skips_data_that_does_not_compress(tmp_path: Path) -> None:
    model = _model(tmp_path / "m", {"w": ("F32", (1024, 512))})
    path = model / "model.safetensors"
    raw = path.read_bytes()
    offset = 8 + int.from_bytes(raw[:8], "little")
    path.write_bytes(raw[:offset] + os.urandom(len(raw) - offset))

    assert plan(path, path.stat().st_size, level=1) is None


def test_undo_command_rebuilds_file(tmp_path: Path) -> None:
    params = ByteGroup(offset=13, width=4, block=100)
    data = os.urandom(4 * 100 * 3 + 7 + 13)
    (tmp_path / "x.bytegroup").write_bytes(_transform(data, params, False, 1000))

    subprocess.run(
        undo_command(params, "x.bytegroup", "x out"),
        shell=True,
        cwd=tmp_path,
        check=True,
    )

    assert (tmp_path / "x out").read_bytes() == data


@pytest.mark.parametrize(
    "stored",
    [
        {"codec": "zipnn", "offset": 8, "width": 2, "block": 16},
        {"codec": "bytegroup", "offset": 8, "width": 3, "block": 16},
        {"codec": "bytegroup", "offset": -1, "width": 2, "block": 16},
        {"codec": "bytegroup", "offset": 8, "width": 2, "block": 1 << 40},
        {"codec": "bytegroup", "offset": "8", "width": 2, "block": 16},
        {"codec": "bytegroup", "offset": 2000, "width": 2, "block": 16},
    ],
)
def test_invalid_parameters_rejected(stored: dict[str, object]) -> None:
    with pytest.raises(BundleFormatError):
        ByteGroup.from_manifest(stored, size=1000)


# ---------------------------------------------------------------------------
# Bundles


@pytest.fixture
def code_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "infer.py").write_text("print('hi')\n")
    return folder


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
def test_capture_restore_round_trip(
    tmp_path: Path, code_folder: Path, dtype: str
) -> None:
    # 1,000,003 values: the last block is short and odd-sized.
    model = _model(tmp_path / "m", {"a": (dtype, (1000, 1000)), "b": (dtype, (3,))})
    original = (model / "model.safetensors").read_bytes()
    result = run_capture(
        model, code_folder, tmp_path / "out", name="m", version="1", codec="bytegroup"
    )
    entry = next(
        f for f in result.manifest["files"] if f["path"] == "weights/model.safetensors"
    )
    names = [info.name for info in members(result.bundle)]
    stored = member_bytes(result.bundle, "weights/model.safetensors.bytegroup")

    report = verify(result.bundle)
    restored = restore(result.bundle, tmp_path / "dest")

    assert "m-1/weights/model.safetensors.bytegroup" in names
    assert "m-1/weights/model.safetensors" not in names
    assert entry["sha256"] == hashlib.sha256(original).hexdigest()
    assert entry["stored"]["sha256"] == hashlib.sha256(stored).hexdigest()
    assert entry["stored"]["path"] == "weights/model.safetensors.bytegroup"
    assert entry["stored"]["codec"] == "bytegroup"
    # The safetensors header stays readable in front of the grouped tensors.
    assert stored[: entry["stored"]["offset"]] == original[: entry["stored"]["offset"]]
    assert stored != original
    assert report.ok, report.to_json()
    assert report.digests["weights/model.safetensors"] == entry["sha256"]
    assert (restored.dest / "weights" / "model.safetensors").read_bytes() == original
    assert not (restored.dest / "weights" / "model.safetensors.bytegroup").exists()


def test_bytegroup_bundle_is_smaller(tmp_path: Path, code_folder: Path) -> None:
    model = _model(tmp_path / "m", {"a": ("BF16", (2048, 1024))})

    plain = run_capture(model, code_folder, tmp_path / "a", name="m", version="1")
    grouped = run_capture(
        model, code_folder, tmp_path / "b", name="m", version="1", codec="bytegroup"
    )

    assert grouped.size < plain.size * 0.95
    assert ".bytegroup" not in "".join(info.name for info in members(plain.bundle))
    assert all("stored" not in f for f in plain.manifest["files"])


def test_readme_commands_restore_by_hand(tmp_path: Path, code_folder: Path) -> None:
    model = _model(tmp_path / "m", {"a": ("BF16", (1000, 1001))})
    os.link(model / "model.safetensors", model / "copy.safetensors")
    result = run_capture(
        model, code_folder, tmp_path / "out", name="m", version="1", codec="bytegroup"
    )
    extracted = tmp_path / "x"
    extracted.mkdir()
    subprocess.run(
        ["tar", "--zstd", "-xf", str(result.bundle), "-C", str(extracted)], check=True
    )
    top = extracted / "m-1"
    readme = (top / "README.txt").read_text()
    commands = [
        line.strip()
        for line in readme.splitlines()
        if line.strip().startswith(("python3", "echo"))
    ]

    sums = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=top, capture_output=True
    )
    for command in commands:
        subprocess.run(command, shell=True, cwd=top, check=True, capture_output=True)

    assert sums.returncode == 0, sums.stdout
    assert len(commands) == 4
    original = (model / "model.safetensors").read_bytes()
    assert (top / "weights" / "model.safetensors").read_bytes() == original
    assert (top / "weights" / "copy.safetensors").read_bytes() == original


def test_hard_link_to_encoded_file_restores(tmp_path: Path, code_folder: Path) -> None:
    model = _model(tmp_path / "m", {"a": ("F32", (512, 1024))})
    os.link(model / "model.safetensors", model / "same.safetensors")
    result = run_capture(
        model, code_folder, tmp_path / "out", name="m", version="1", codec="bytegroup"
    )
    links = [info for info in members(result.bundle) if info.islnk()]

    restored = restore(result.bundle, tmp_path / "dest")

    assert [info.name for info in links] == ["m-1/weights/same.safetensors.bytegroup"]
    assert links[0].linkname == "m-1/weights/model.safetensors.bytegroup"
    original = (model / "model.safetensors").read_bytes()
    assert (restored.dest / "weights" / "same.safetensors").read_bytes() == original


def test_verify_reports_wrong_decoded_digest(tmp_path: Path, code_folder: Path) -> None:
    model = _model(tmp_path / "m", {"a": ("BF16", (1024, 1024))})
    result = run_capture(
        model, code_folder, tmp_path / "out", name="m", version="1", codec="bytegroup"
    )
    data = yaml.safe_load(member_bytes(result.bundle, "manifest.yaml"))
    entry = next(f for f in data["files"] if f["path"] == "weights/model.safetensors")
    stored = member_bytes(result.bundle, entry["stored"]["path"])
    wrong = dict(entry, sha256="0" * 64)
    body = [craft.file_member(f"{craft.TOP}/{entry['stored']['path']}", stored)]
    text = craft.manifest_bytes([wrong])
    sums = {
        entry["stored"]["path"]: entry["stored"]["sha256"],
        "manifest.yaml": hashlib.sha256(text).hexdigest(),
    }
    raw = craft.tar_stream(body, [wrong], sums=sums)
    bundle = craft.write_bundle(tmp_path / "evil.gm.tar.zst", raw)

    report = verify(bundle)

    assert not report.ok
    assert [m.path for m in report.mismatched] == ["weights/model.safetensors"]
    assert report.mismatched[0].expected == "0" * 64
    assert report.mismatched[0].actual == entry["sha256"]
    assert report.sums_mismatched == []


def _stored_entry(
    path: str, data: bytes, stored_path: str | None = None
) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    return {
        "path": path,
        "size": len(data),
        "sha256": digest,
        "stored": {
            "path": stored_path or path + codec.SUFFIX,
            "sha256": digest,
            "codec": "bytegroup",
            "offset": 0,
            "width": 2,
            "block": 16,
        },
    }


def test_stored_path_must_extend_file_path(tmp_path: Path) -> None:
    data = bytes(64)
    entry = _stored_entry("weights/a.bin", data, stored_path="code/x.bytegroup")
    body = [craft.file_member(f"{craft.TOP}/code/x.bytegroup", data)]
    bundle = craft.build(tmp_path / "evil.gm.tar.zst", body, [entry])

    with pytest.raises(BundleFormatError) as raised:
        verify(bundle)

    assert "stored form" in raised.value.message


def test_decoded_path_must_be_safe(tmp_path: Path) -> None:
    # "weights/...bytegroup" is a safe member name, but it decodes to "weights/..".
    data = bytes(64)
    entry = _stored_entry("weights/..", data)
    body = [craft.file_member(f"{craft.TOP}/weights/...bytegroup", data)]
    bundle = craft.build(tmp_path / "evil.gm.tar.zst", body, [entry])

    with pytest.raises(UnsafeMemberError) as raised:
        restore(bundle, tmp_path / "dest")

    assert "unsafe path" in raised.value.message
    assert not (tmp_path / "dest").exists()


def test_decoded_path_cannot_repeat_member(tmp_path: Path) -> None:
    data = bytes(64)
    body = [
        craft.file_member(f"{craft.TOP}/weights/a.bin", data),
        craft.file_member(f"{craft.TOP}/weights/a.bin.bytegroup", data),
    ]
    files = [craft.entry("weights/a.bin", data), _stored_entry("weights/a.bin", data)]
    bundle = craft.write_bundle(
        tmp_path / "evil.gm.tar.zst", craft.tar_stream(body, files)
    )

    with pytest.raises(UnsafeMemberError) as raised:
        restore(bundle, tmp_path / "dest")

    assert "duplicate member 'weights/a.bin'" in raised.value.message
    assert not (tmp_path / "dest").exists()
