"""Model scanning: files, links, formats and safetensors headers."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from goldmaster.errors import InputError
from goldmaster.model import read_safetensors_header, scan_model
from helpers import hf_cache, small_model, write_safetensors


def test_header_facts_match_built_file(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    facts = write_safetensors(
        path,
        {
            "a": ("F32", (3, 5)),
            "b": ("F16", (7,)),
            "c": ("BF16", (2, 2, 2)),
            "d": ("I64", (4,)),
            "e": ("F32", (1,)),
            "f": ("I8", (0,)),
        },
        metadata={"format": "pt"},
    )

    header = read_safetensors_header(path)

    assert header["tensors"] == 6
    assert header["parameters"] == 15 + 7 + 8 + 4 + 1
    assert header["dtypes"] == {"BF16": 1, "F16": 1, "F32": 2, "I64": 1, "I8": 1}
    assert header == facts


def test_scan_records_safetensors_facts(tmp_path: Path) -> None:
    model = tmp_path / "model"
    facts = small_model(model)

    scan = scan_model(model, [])

    assert scan.notices == []
    assert scan.info["format"] == "safetensors"
    assert scan.info["parameters"] == facts["parameters"]
    assert scan.info["dtypes"] == facts["dtypes"]
    [entry] = scan.info["safetensors"]
    assert entry["path"] == "weights/model.safetensors"
    assert entry["tensors"] == facts["tensors"]
    assert scan.info["huggingface"] == {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "torch_dtype": "float32",
    }
    assert scan.info["files"] == 3
    assert scan.info["bytes"] == sum(p.stat().st_size for p in model.iterdir())


def test_scan_sums_sharded_safetensors(tmp_path: Path) -> None:
    model = tmp_path / "sharded"
    model.mkdir()
    first = write_safetensors(
        model / "model-00001-of-00002.safetensors", {"a": ("F32", (10, 10))}
    )
    second = write_safetensors(
        model / "model-00002-of-00002.safetensors",
        {"b": ("F16", (5,)), "c": ("F32", (2,))},
    )

    info = scan_model(model, []).info

    assert info["parameters"] == first["parameters"] + second["parameters"]
    assert info["dtypes"] == {"F16": 1, "F32": 2}
    assert [e["tensors"] for e in info["safetensors"]] == [1, 2]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"\x01\x02", "shorter than the 8-byte header length"),
        (struct.pack("<Q", 1 << 40) + b"{}", "does not fit the file"),
        (struct.pack("<Q", 5) + b"{nope", "header is not JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (
            struct.pack("<Q", 64)
            + json.dumps({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}})
            .encode()
            .ljust(64)
            + bytes(8),
            "size does not match its shape and dtype",
        ),
        (
            struct.pack("<Q", 64)
            + json.dumps({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
            .encode()
            .ljust(64)
            + bytes(8),
            "points past the end of the file",
        ),
        (
            struct.pack("<Q", 24)
            + json.dumps({"t": {"dtype": "F32"}}).encode().ljust(24),
            "has an invalid entry",
        ),
    ],
)
def test_invalid_header_becomes_notice(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "broken.safetensors").write_bytes(content)

    scan = scan_model(model, [])

    assert len(scan.notices) == 1
    assert "weights/broken.safetensors" in scan.notices[0]
    assert reason in scan.notices[0]
    [entry] = scan.info["safetensors"]
    assert reason in entry["error"]
    assert scan.info["parameters"] == 0


def test_formats_counted_by_suffix(tmp_path: Path) -> None:
    model = tmp_path / "mixed"
    model.mkdir()
    (model / "pytorch_model.bin").write_bytes(bytes(3000))
    (model / "model.onnx").write_bytes(bytes(1000))
    (model / "model.gguf").write_bytes(bytes(10))
    (model / "vocab.txt").write_text("a\nb\n")

    info = scan_model(model, []).info

    assert info["formats"] == {"gguf": 1, "onnx": 1, "pytorch": 1}
    assert info["format"] == "pytorch"
    assert info["files"] == 4
    assert "safetensors" not in info


def test_single_file_model(tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    path.write_bytes(b"torch")

    scan = scan_model(path, [])

    assert [f.arcname for f in scan.files] == ["weights/net.pt"]
    assert scan.info["kind"] == "file"
    assert scan.info["format"] == "pytorch"


def test_exclude_skips_files_and_folders(tmp_path: Path) -> None:
    model = tmp_path / "model"
    small_model(model)
    (model / "runs").mkdir()
    (model / "runs" / "events.out").write_bytes(b"x")
    (model / "optimizer.pt").write_bytes(b"x")

    scan = scan_model(model, ["runs", "optimizer.*"])

    names = [f.arcname for f in scan.files]
    assert names == [
        "weights/config.json",
        "weights/model.safetensors",
        "weights/tokenizer.json",
    ]


def test_hf_snapshot_links_stored_once(tmp_path: Path) -> None:
    cache = hf_cache(tmp_path / "models--org--tiny")

    scan = scan_model(cache["snapshot"], [])

    assert [f.arcname for f in scan.files] == [
        "weights/config.json",
        "weights/model.safetensors",
        "weights/tokenizer_config.json",
    ]
    assert scan.links == {"weights/onnx/config.json": "weights/config.json"}
    for item in scan.files:
        assert not item.path.is_symlink() or item.path.resolve().parent.name == "blobs"
    assert scan.info["files"] == 4
    assert scan.info["parameters"] == cache["facts"]["parameters"]


def test_hard_links_in_model_become_links(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "a.bin").write_bytes(b"weights")
    os.link(model / "a.bin", model / "b.bin")

    scan = scan_model(model, [])

    assert [f.arcname for f in scan.files] == ["weights/a.bin"]
    assert scan.links == {"weights/b.bin": "weights/a.bin"}


def test_dangling_link_named_in_error(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "ok.bin").write_bytes(b"x")
    (model / "gone.safetensors").symlink_to("../blobs/0badc0de")

    with pytest.raises(InputError) as info:
        scan_model(model, [])

    assert "gone.safetensors" in info.value.message
    assert "../blobs/0badc0de" in info.value.message


def test_link_loop_named_in_error(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "ok.bin").write_bytes(b"x")
    (model / "loop.bin").symlink_to("loop.bin")

    with pytest.raises(InputError) as info:
        scan_model(model, [])

    assert "loop.bin" in info.value.message


def test_missing_model_path(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        scan_model(tmp_path / "nothing", [])

    assert str(tmp_path / "nothing") in info.value.message


def test_empty_model_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(InputError) as info:
        scan_model(tmp_path / "empty", [])

    assert "no files" in info.value.message


def test_single_file_through_link(tmp_path: Path) -> None:
    cache = hf_cache(tmp_path / "models--org--tiny")
    link = cache["snapshot"] / "model.safetensors"

    scan = scan_model(link, [])

    [item] = scan.files
    assert item.arcname == "weights/model.safetensors"
    assert item.size == len(cache["contents"]["model.safetensors"])
    assert scan.info["parameters"] == cache["facts"]["parameters"]
