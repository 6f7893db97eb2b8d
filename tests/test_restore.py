"""Restore: identical files back, DEST protected, nothing half-restored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Inputs, Invoke
from goldmaster.errors import (
    DestinationError,
    EnvironmentCaptureError,
    VerificationError,
)
from goldmaster.restore import PARTIAL_MARKER, PARTIAL_NAME, RestoreOptions, restore
from goldmaster.verify import read_manifest
from helpers import (
    compress,
    data_offset,
    decompress,
    hf_cache,
    member_bytes,
    paths_under,
    run_capture,
    tree,
)


def _corrupt(
    bundle: Path, out: Path, relpath: str = "weights/model.safetensors"
) -> Path:
    stream = bytearray(decompress(bundle))
    stream[data_offset(bytes(stream), relpath) + 5] ^= 0x01
    compress(bytes(stream), out)
    return out


def _snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    """Map every path under ``folder`` to its content (None for folders) and mtime."""
    found: dict[str, tuple[bytes | None, int]] = {}
    for path in sorted(folder.rglob("*")):
        data = path.read_bytes() if path.is_file() else None
        found[path.relative_to(folder).as_posix()] = (data, path.stat().st_mtime_ns)
    return found


def test_round_trip_identical(git_inputs: Inputs, tmp_path: Path) -> None:
    assert git_inputs.git is not None
    result = run_capture(git_inputs.model, git_inputs.code, tmp_path / "out")
    dest = tmp_path / "dest"

    restored = restore(result.bundle, dest)

    assert restored.dest == dest
    assert tree(dest / "weights") == tree(git_inputs.model)
    code = tree(dest / "code")
    assert sorted(code) == git_inputs.git["tracked"]
    for rel, data in code.items():
        assert data == (git_inputs.code / rel).read_bytes(), rel
    assert (dest / "manifest.yaml").read_bytes() == member_bytes(
        result.bundle, "manifest.yaml"
    )
    assert (dest / "SHA256SUMS").read_bytes() == member_bytes(
        result.bundle, "SHA256SUMS"
    )
    assert (dest / "git" / "uncommitted.diff").read_bytes() == member_bytes(
        result.bundle, "git/uncommitted.diff"
    )
    assert restored.files == len(result.manifest["files"])
    assert restored.bytes == sum(f["size"] for f in result.manifest["files"])
    assert [p.name for p in dest.iterdir() if p.name.startswith(".goldmaster")] == []


def test_hf_snapshot_restored_as_regular_files(tmp_path: Path) -> None:
    cache = hf_cache(tmp_path / "models--org--tiny")
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.py").write_text("")
    bundle = run_capture(
        cache["snapshot"], code, tmp_path / "out", name="t", version="1"
    ).bundle
    dest = tmp_path / "dest"

    restore(bundle, dest)

    for rel, data in cache["contents"].items():
        path = dest / "weights" / rel
        assert not path.is_symlink(), rel
        assert path.is_file(), rel
        assert path.read_bytes() == data, rel


def test_sparse_region_restored(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    content = b"head" + bytes(3 << 20) + b"middle" + bytes(1 << 20)
    (model / "w.bin").write_bytes(content)
    code = tmp_path / "code"
    code.mkdir()
    bundle = run_capture(model, code, tmp_path / "out", name="s", version="1").bundle

    restore(bundle, tmp_path / "dest")

    assert (tmp_path / "dest" / "weights" / "w.bin").read_bytes() == content


def test_non_empty_destination_rejected(
    bundle: Path, tmp_path: Path, invoke: Invoke
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    before = _snapshot(dest)

    with pytest.raises(DestinationError) as info:
        restore(bundle, dest)
    result = invoke("restore", bundle, dest)

    assert str(dest) in info.value.message
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"Error: destination is not empty: {dest}"
    assert "--force" in result.stderr
    assert _snapshot(dest) == before


def test_force_replaces_bundle_files(
    bundle: Path, inputs: Inputs, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    (dest / "weights").mkdir(parents=True)
    (dest / "weights" / "stale.bin").write_bytes(b"old")
    (dest / "manifest.yaml").write_text("old")
    (dest / "keep.txt").write_text("mine")

    restore(bundle, dest, RestoreOptions(force=True))

    assert tree(dest / "weights") == tree(inputs.model)
    assert (dest / "manifest.yaml").read_bytes() == member_bytes(
        bundle, "manifest.yaml"
    )
    assert (dest / "keep.txt").read_text() == "mine"


def test_failed_restore_leaves_destination(
    bundle: Path, tmp_path: Path, invoke: Invoke
) -> None:
    bad = _corrupt(bundle, tmp_path / bundle.name)
    dest = tmp_path / "dest"
    (dest / "weights").mkdir(parents=True)
    (dest / "weights" / "model.safetensors").write_bytes(b"previous restore")
    (dest / "keep.txt").write_text("mine")
    before = _snapshot(dest)

    result = invoke("restore", "--force", bad, dest)
    verified = invoke("verify", bad)

    assert result.exit_code == 1
    assert verified.exit_code == 1
    assert "weights/model.safetensors" in result.stderr
    assert "does not match its sha256" in result.stderr
    assert _snapshot(dest) == before


def test_failed_restore_removes_created_destination(
    bundle: Path, tmp_path: Path
) -> None:
    bad = _corrupt(bundle, tmp_path / bundle.name)
    dest = tmp_path / "new"

    with pytest.raises(VerificationError) as info:
        restore(bad, dest)

    assert "weights/model.safetensors" in info.value.message
    assert not dest.exists()


def test_failed_restore_closes_files(bundle: Path, tmp_path: Path) -> None:
    bad = _corrupt(bundle, tmp_path / bundle.name, "code/infer.py")
    open_before = len(os.listdir("/proc/self/fd"))

    with pytest.raises(VerificationError):
        restore(bad, tmp_path / "dest")

    assert len(os.listdir("/proc/self/fd")) == open_before


def test_keep_partial_marks_folder(bundle: Path, tmp_path: Path) -> None:
    bad = _corrupt(bundle, tmp_path / bundle.name)
    dest = tmp_path / "dest"

    with pytest.raises(VerificationError):
        restore(bad, dest, RestoreOptions(keep_partial=True))

    partial = dest / PARTIAL_NAME
    assert (partial / PARTIAL_MARKER).is_file()
    assert (partial / "code" / "infer.py").is_file()
    assert sorted(p.name for p in dest.iterdir()) == [PARTIAL_NAME]


def test_destination_is_a_file(bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")

    with pytest.raises(DestinationError) as info:
        restore(bundle, target)

    assert "not a folder" in info.value.message


def test_json_keys(bundle: Path, tmp_path: Path, invoke: Invoke) -> None:
    dest = tmp_path / "dest"

    result = invoke("restore", "--json", bundle, dest)

    data = json.loads(result.stdout)
    assert result.exit_code == 0
    assert list(data) == [
        "schema",
        "bundle",
        "dest",
        "name",
        "version",
        "files",
        "bytes",
        "stages",
        "notices",
    ]
    assert data["schema"] == "goldmaster.restore/v1"
    assert data["dest"] == str(dest)
    manifest = read_manifest(bundle)
    assert data["files"] == len(manifest["files"])
    assert len(paths_under(manifest, "weights", "code")) == 5
    assert data["name"] == "tiny-bert"


def test_plain_output_on_stdout(bundle: Path, tmp_path: Path, invoke: Invoke) -> None:
    dest = tmp_path / "dest"

    result = invoke("restore", bundle, dest)

    assert result.exit_code == 0
    files = len(read_manifest(bundle)["files"])
    assert result.stdout.startswith(f"restored {files} files")
    assert str(dest) in result.stdout
    assert "goldmaster: verifying and extracting" in result.stderr


def test_interrupt_leaves_destination(tmp_path: Path, sparse_folder: Path) -> None:
    model = sparse_folder / "model"
    model.mkdir()
    with open(model / "zeros.bin", "wb") as fh:
        fh.truncate(1 << 30)
    code = tmp_path / "code"
    code.mkdir()
    bundle = run_capture(
        model, code, tmp_path / "out", name="z", version="1", level=1
    ).bundle
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    before = _snapshot(dest)
    script = Path(sys.executable).with_name("goldmaster")

    process = subprocess.Popen(
        [script, "restore", "--force", str(bundle), str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(".goldmaster-restore-") for p in dest.iterdir()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "restore never started extracting"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert stdout == ""
    assert "Error: interrupted" in stderr
    assert "Traceback" not in stderr
    assert _snapshot(dest) == before


def test_uncreatable_destination_named(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1")
    with pytest.raises(DestinationError) as caught:
        restore(result.bundle, Path("/proc/goldmaster-restore"))
    assert "cannot create /proc/goldmaster-restore" in caught.value.message
    assert "free space" not in caught.value.message


def test_bad_python_fails_before_extract(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(
        inputs.model, inputs.code, tmp_path / "out", version="1", env=True
    )
    dest = tmp_path / "dest"
    options = RestoreOptions(python="/nonexistent/python")
    with pytest.raises(EnvironmentCaptureError) as caught:
        restore(result.bundle, dest, options)
    assert "/nonexistent/python" in caught.value.message
    assert not dest.exists()


def test_image_without_engine_hint(
    inputs: Inputs, tmp_path: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    restored = invoke("restore", result.bundle, tmp_path / "dest", "--image")
    assert restored.exit_code == 2
    assert "container engine not reachable" in restored.stderr
    assert "--no-image" not in restored.stderr
    assert "without --image" in restored.stderr
