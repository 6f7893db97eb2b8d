"""Capture: bundle layout, manifest facts, reproducibility and failure cleanup."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import EPOCH, Inputs
from goldmaster.capture import CaptureOptions, capture
from goldmaster.errors import InputError, OutputError, SourceChangedError, UsageError
from goldmaster.restore import restore
from goldmaster.verify import read_manifest, verify
from helpers import (
    decompress,
    hf_cache,
    leftovers,
    member_bytes,
    members,
    paths_under,
    run_capture,
    tree,
    write_safetensors,
)

GIB = 1 << 30


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_bundle_layout(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(
        inputs.model, inputs.code, tmp_path / "out", name="bert", version="2"
    )

    assert result.bundle == tmp_path / "out" / "bert-2.gm.tar.zst"
    names = [m.name for m in members(result.bundle)]
    assert names[0] == "bert-2/manifest.yaml"
    assert names[-2:] == ["bert-2/README.txt", "bert-2/SHA256SUMS"]
    assert all(name.startswith("bert-2/") for name in names)
    # system/ contains the probe outputs that this host produces, so its
    # members are compared with the manifest's list, the rest with a fixed list.
    system = {name for name in names if name.startswith("bert-2/system/")}
    assert "bert-2/system/os-release" in system
    assert system == {
        f"bert-2/{path}" for path in paths_under(result.manifest, "system")
    }
    assert set(names) - system == {
        "bert-2/manifest.yaml",
        "bert-2/code/infer.py",
        "bert-2/code/pkg/__init__.py",
        "bert-2/weights/config.json",
        "bert-2/weights/model.safetensors",
        "bert-2/weights/tokenizer.json",
        "bert-2/README.txt",
        "bert-2/SHA256SUMS",
    }


def test_members_normalised(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    os.chmod(inputs.code / "infer.py", 0o700)

    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1")

    for info in members(result.bundle):
        assert info.isfile(), info.name
        assert info.uid == 0, info.name
        assert info.gid == 0, info.name
        assert info.uname == "root", info.name
        assert info.gname == "root", info.name
        assert info.mode == 0o644, info.name
        assert info.mtime == int(EPOCH), info.name
    assert result.manifest["created"] == "2023-11-14T22:13:20Z"


def test_manifest_records_files_and_facts(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1")

    manifest = read_manifest(result.bundle)
    assert manifest == result.manifest
    assert manifest["schema"] == "goldmaster/v1"
    assert manifest["name"] == "tiny-bert"
    model = manifest["model"]
    assert model["format"] == "safetensors"
    assert model["parameters"] == inputs.facts["parameters"]
    assert model["dtypes"] == inputs.facts["dtypes"]
    assert model["safetensors"][0]["tensors"] == inputs.facts["tensors"]

    listed = {f["path"]: f for f in manifest["files"]}
    for source in inputs.model.iterdir():
        entry = listed[f"weights/{source.name}"]
        assert entry["size"] == source.stat().st_size
        assert entry["sha256"] == _sha256(source.read_bytes())
    assert "manifest.yaml" not in listed
    assert "SHA256SUMS" not in listed
    assert listed["README.txt"]["sha256"] == _sha256(
        member_bytes(result.bundle, "README.txt")
    )


def test_sha256sums_covers_every_other_member(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1")

    sums = member_bytes(result.bundle, "SHA256SUMS").decode().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums}
    others = [m.name.split("/", 1)[1] for m in members(result.bundle)]
    others.remove("SHA256SUMS")
    assert sorted(listed) == sorted(others)
    for name in others:
        assert listed[name] == _sha256(member_bytes(result.bundle, name)), name


def test_tar_and_sha256sum_read_bundle(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1")
    unpack = tmp_path / "unpack"
    unpack.mkdir()

    listing = subprocess.run(
        f"tar --zstd -tf {result.bundle} | head -1",
        shell=True, capture_output=True, text=True, check=True,
    )  # fmt: skip
    extract = subprocess.run(
        ["tar", "--zstd", "-xf", str(result.bundle)],
        cwd=unpack,
        capture_output=True,
        text=True,
        check=False,
    )
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", "SHA256SUMS"],
        cwd=unpack / "tiny-bert-1",
        capture_output=True,
        text=True,
        check=False,
    )
    sidecar = subprocess.run(
        ["sha256sum", "-c", result.sidecar.name],
        cwd=result.bundle.parent,
        capture_output=True,
        check=False,
    )

    assert listing.stdout == "tiny-bert-1/manifest.yaml\n"
    assert extract.returncode == 0, extract.stderr
    assert extract.stderr == ""
    assert check.returncode == 0, check.stdout + check.stderr
    # Every file but SHA256SUMS itself: the manifest's files and the manifest.
    assert check.stdout.count(": OK") == len(result.manifest["files"]) + 1
    assert paths_under(result.manifest, "weights", "code") == [
        "code/infer.py",
        "code/pkg/__init__.py",
        "weights/config.json",
        "weights/model.safetensors",
        "weights/tokenizer.json",
    ]
    assert sidecar.returncode == 0
    assert tree(unpack / "tiny-bert-1" / "weights") == tree(inputs.model)
    manifest = yaml.safe_load((unpack / "tiny-bert-1" / "manifest.yaml").read_text())
    assert manifest == result.manifest


def test_sidecar_format(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1")

    digest = _sha256(result.bundle.read_bytes())
    assert result.sidecar.read_text() == f"{digest}  tiny-bert-1.gm.tar.zst\n"
    assert result.sha256 == digest
    assert result.size == result.bundle.stat().st_size


def test_git_state_in_bundle(git_inputs: Inputs, tmp_path: Path) -> None:
    assert git_inputs.git is not None
    result = run_capture(git_inputs.model, git_inputs.code, tmp_path / "out")

    state = result.manifest["code"]["git"]
    commit = git_inputs.git["commit"]
    assert result.manifest["version"] == f"g{commit[:12]}-dirty"
    assert state["commit"] == commit
    assert state["dirty"] is True
    assert state["branch"] == "train"
    assert state["untracked"] == git_inputs.git["untracked"]
    assert b"+EPOCHS = 5" in member_bytes(result.bundle, "git/uncommitted.diff")
    assert (
        member_bytes(result.bundle, "git/untracked.txt")
        == b"notes.txt\nscratch/plot.py\n"
    )
    names = [m.name.split("/", 1)[1] for m in members(result.bundle)]
    assert "code/.env" not in names
    assert "code/notes.txt" not in names
    assert result.manifest["code"]["left_out_secrets"] == [".env"]
    stream = decompress(result.bundle)
    assert git_inputs.git["secret"].encode() not in stream
    assert b"hunter2" not in stream


def test_params_metrics_and_datasets(inputs: Inputs, tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text("lr: 0.001\nepochs: 3\nschedule: cosine\n")
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text('{"accuracy": 0.91, "loss": 0.2}')

    result = run_capture(
        inputs.model,
        inputs.code,
        tmp_path / "out",
        version="1",
        params={"epochs": 5, "seed": 7},
        params_file=params_file,
        metrics_file=metrics_file,
        datasets=["s3://data/train", "https://bob:pw@data.example.test/set.tar"],
    )

    manifest = result.manifest
    assert manifest["params"] == {
        "epochs": 5,
        "lr": 0.001,
        "schedule": "cosine",
        "seed": 7,
    }
    assert manifest["metrics"] == {"accuracy": 0.91, "loss": 0.2}
    assert manifest["datasets"] == [
        "s3://data/train",
        "https://REDACTED@data.example.test/set.tar",
    ]


@pytest.mark.parametrize("content", ["- a\n- b\n", "", "{unclosed: [\n"])
def test_invalid_params_file(inputs: Inputs, tmp_path: Path, content: str) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(content)

    with pytest.raises(InputError) as info:
        run_capture(
            inputs.model, inputs.code, tmp_path / "out", params_file=params_file
        )

    assert str(params_file) in info.value.message
    # The output folder did not exist, so the failed capture removes it.
    assert not (tmp_path / "out").exists()


def test_exclude_applies_to_model_and_code(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(
        inputs.model,
        inputs.code,
        tmp_path / "out",
        version="1",
        excludes=["tokenizer.json", "pkg"],
    )

    paths = [f["path"] for f in result.manifest["files"]]
    assert "weights/tokenizer.json" not in paths
    assert "code/pkg/__init__.py" not in paths
    assert "weights/model.safetensors" in paths


def test_hf_snapshot_stored_once(tmp_path: Path) -> None:
    cache = hf_cache(tmp_path / "models--org--tiny")
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.py").write_text("")

    result = run_capture(
        cache["snapshot"], code, tmp_path / "out", name="tiny", version="1"
    )

    infos = {m.name.split("/", 1)[1]: m for m in members(result.bundle)}
    link = infos["weights/onnx/config.json"]
    assert link.islnk()
    assert link.linkname == "tiny-1/weights/config.json"
    for rel in ["config.json", "model.safetensors", "tokenizer_config.json"]:
        assert infos[f"weights/{rel}"].isfile()
        assert member_bytes(result.bundle, f"weights/{rel}") == cache["contents"][rel]
    assert not any(m.issym() for m in infos.values())
    unpack = tmp_path / "unpack"
    unpack.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(result.bundle)], cwd=unpack, check=True)
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", "SHA256SUMS"],
        cwd=unpack / "tiny-1",
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout
    assert (unpack / "tiny-1" / "weights" / "onnx" / "config.json").read_bytes() == (
        cache["contents"]["config.json"]
    )
    listed = {f["path"]: f for f in result.manifest["files"]}
    assert listed["weights/onnx/config.json"]["same_as"] == "weights/config.json"
    assert listed["weights/onnx/config.json"]["sha256"] == _sha256(
        cache["contents"]["config.json"]
    )
    stored = sum(m.size for m in infos.values() if m.name.split("/")[1] == "weights")
    assert stored == sum(
        len(data)
        for rel, data in cache["contents"].items()
        if rel != "onnx/config.json"
    )
    # Each blob counts once and the code file is empty. The link member adds
    # nothing. The probe outputs under system/ are archived content too.
    blobs = tmp_path / "models--org--tiny" / "blobs"
    probes = sum(
        entry["size"]
        for entry in result.manifest["files"]
        if entry["path"].startswith("system/")
    )
    assert result.input_bytes == probes + sum(
        f.stat().st_size for f in blobs.iterdir()
    )


def test_dangling_link_fails_capture(tmp_path: Path) -> None:
    cache = hf_cache(tmp_path / "models--org--tiny")
    blob = (cache["snapshot"] / "tokenizer_config.json").resolve()
    blob.unlink()
    out = tmp_path / "out"

    with pytest.raises(InputError) as info:
        run_capture(cache["snapshot"], tmp_path, out, name="tiny", version="1")

    assert "tokenizer_config.json" in info.value.message
    assert not out.exists() or leftovers(out) == []


def test_existing_bundle_needs_force(bundle: Path, inputs: Inputs) -> None:
    before = bundle.read_bytes()

    with pytest.raises(InputError) as info:
        run_capture(inputs.model, inputs.code, bundle.parent, version="1.0")
    assert str(bundle) in info.value.message
    assert bundle.read_bytes() == before

    (inputs.model / "config.json").write_text('{"model_type": "gpt2"}')
    result = run_capture(
        inputs.model, inputs.code, bundle.parent, version="1.0", force=True
    )
    assert result.bundle == bundle
    assert bundle.read_bytes() != before
    assert verify(bundle).ok
    assert leftovers(bundle.parent) == [bundle.name, bundle.name + ".sha256"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("level", 0),
        ("level", 23),
        ("text_level", 0),
        ("threads", -1),
        ("name", "../x"),
        ("version", "-bad"),
        ("version", "a/b"),
    ],
)
def test_invalid_options_rejected(
    inputs: Inputs, tmp_path: Path, field: str, value: object
) -> None:
    options = CaptureOptions(
        model=inputs.model, output=tmp_path / "out", code=inputs.code, env=False)
    setattr(options, field, value)

    with pytest.raises(UsageError) as info:
        capture(options)

    assert str(value) in info.value.message


def test_invalid_source_date_epoch(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")

    with pytest.raises(UsageError) as info:
        run_capture(inputs.model, inputs.code, tmp_path / "out")

    assert "yesterday" in info.value.message


def test_output_path_is_a_file(inputs: Inputs, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("")

    with pytest.raises(InputError) as info:
        run_capture(inputs.model, inputs.code, target)

    assert str(target) in info.value.message


# ---------------------------------------------------------------------------
# Reproducibility


def test_captures_identical_byte_for_byte(
    git_inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    big = git_inputs.model / "extra.safetensors"
    # 12 MiB, so that zstd splits the work into several jobs.
    write_safetensors(big, {"w": ("F32", (3 << 20,))}, seed=5)

    first = run_capture(git_inputs.model, git_inputs.code, tmp_path / "a", threads=1)
    second = run_capture(
        git_inputs.model, git_inputs.code, tmp_path / "b" / "nested", threads=2
    )
    third = run_capture(git_inputs.model, git_inputs.code, tmp_path / "c")

    assert first.bundle.name == second.bundle.name == third.bundle.name
    data = first.bundle.read_bytes()
    assert data == second.bundle.read_bytes()
    assert data == third.bundle.read_bytes()
    assert first.sidecar.read_bytes() == second.sidecar.read_bytes()
    assert first.sha256 == second.sha256 == third.sha256


def test_different_epoch_changes_bundle(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    first = run_capture(inputs.model, inputs.code, tmp_path / "a", version="1")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(EPOCH) + 1))
    second = run_capture(inputs.model, inputs.code, tmp_path / "b", version="1")

    assert first.sha256 != second.sha256
    assert second.manifest["created"] == "2023-11-14T22:13:21Z"


# ---------------------------------------------------------------------------
# Large inputs


@pytest.mark.slow
def test_large_safetensors_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    model = tmp_path / "large"
    model.mkdir()
    # Eight 32 MiB layers and a 32 MiB embedding: about 290 MiB in all.
    layers = {f"layers.{i}.weight": ("F32", (4096, 2048)) for i in range(8)}
    layers["layers.norm.weight"] = ("F16", (4096,))
    layers["embed.weight"] = ("BF16", (32000, 512))
    facts = write_safetensors(
        model / "model.safetensors", layers, metadata={"format": "pt"}
    )
    size = (model / "model.safetensors").stat().st_size
    assert size > 280 << 20
    code = tmp_path / "code"
    code.mkdir()
    (code / "infer.py").write_text("")

    result = run_capture(
        model, code, tmp_path / "out", name="large", version="1", threads=2
    )

    assert result.manifest["model"]["parameters"] == facts["parameters"]
    assert result.manifest["model"]["dtypes"] == {"BF16": 1, "F16": 1, "F32": 8}
    assert result.manifest["model"]["safetensors"][0]["tensors"] == 10
    report = verify(result.bundle)
    assert report.ok
    assert report.bytes >= size
    restored = tmp_path / "restored"
    restore(result.bundle, restored)
    with (
        open(restored / "weights" / "model.safetensors", "rb") as a,
        open(model / "model.safetensors", "rb") as b,
    ):
        while chunk := a.read(16 << 20):
            assert chunk == b.read(16 << 20)
        assert b.read(1) == b""


@pytest.mark.slow
def test_sparse_file_over_8_gib(
    tmp_path: Path, sparse_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 8 * GIB + 4097
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    model = sparse_folder / "model"
    model.mkdir()
    path = model / "huge.bin"
    with open(path, "wb") as fh:
        fh.truncate(size)
        fh.seek(size - 5)
        fh.write(b"tail!")
    code = tmp_path / "code"
    code.mkdir()
    (code / "x.py").write_text("")
    # Capture requires the input size free before it writes, although the
    # bundle and the restored file, which keeps its holes, use little of it.
    free = shutil.disk_usage(tmp_path).free
    if free < size + (256 << 20):
        pytest.skip(
            f"capture needs {size + (256 << 20)} bytes free in {tmp_path}, {free} free"
        )

    result = run_capture(
        model, code, tmp_path / "out", name="huge", version="1", level=1
    )

    [entry] = [f for f in result.manifest["files"] if f["path"] == "weights/huge.bin"]
    assert entry["size"] == size
    assert result.size < 64 << 20

    started = time.monotonic()
    manifest = read_manifest(result.bundle)
    assert time.monotonic() - started < 1.0
    assert manifest == result.manifest

    report = verify(result.bundle)
    assert report.ok, report.to_json()
    assert report.bytes >= size

    restored = tmp_path / "restored"
    restore(result.bundle, restored)
    copy = restored / "weights" / "huge.bin"
    assert copy.stat().st_size == size
    with open(copy, "rb") as fh:
        fh.seek(size - 5)
        assert fh.read() == b"tail!"
        fh.seek(size // 2)
        assert fh.read(4096) == bytes(4096)
    # The restored file keeps its holes, so restoring it costs little disk.
    assert copy.stat().st_blocks * 512 < 64 << 20


# ---------------------------------------------------------------------------
# Failure and interruption


def test_growing_file_fails_capture(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    growing = model / "growing.bin"
    write_safetensors(growing, {"w": ("F32", (8 << 20,))})  # 32 MiB
    code = tmp_path / "code"
    code.mkdir()
    (code / "x.py").write_text("")
    out = tmp_path / "out"
    stop = threading.Event()

    def append() -> None:
        with open(growing, "ab") as fh:
            while not stop.is_set():
                fh.write(b"\0" * 16)
                fh.flush()
                time.sleep(0.0005)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        with pytest.raises(SourceChangedError) as info:
            run_capture(model, code, out, name="m", version="1", threads=1)
    finally:
        stop.set()
        writer.join()

    assert str(growing) in info.value.message
    assert not out.exists()


def _capture_command(model: Path, code: Path, out: Path, *extra: str) -> list[str]:
    """Return the installed console script's command line for a capture."""
    script = Path(sys.executable).with_name("goldmaster")
    return [
        str(script), "capture", str(model),
        "--code", str(code), "-o", str(out), "--name", "big", "--version", "1", *extra,
    ]  # fmt: skip


def test_interrupt_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    code = tmp_path / "code"
    code.mkdir()
    (code / "x.py").write_text("")
    out = tmp_path / "out"
    small = tmp_path / "small"
    small.mkdir()
    (small / "w.bin").write_bytes(b"weights")
    earlier = run_capture(small, code, out, name="big", version="1")
    before = (earlier.bundle.read_bytes(), earlier.sidecar.read_bytes())

    model = tmp_path / "model"
    model.mkdir()
    with open(model / "huge.bin", "wb") as fh:
        fh.truncate(16 * GIB)
    process = subprocess.Popen(
        _capture_command(model, code, out, "--force"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not any("goldmaster-tmp" in name for name in os.listdir(out)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "capture never started writing"
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("Error:")] == [
        "Error: interrupted; nothing was left half-written"
    ]
    assert sorted(os.listdir(out)) == [earlier.bundle.name, earlier.sidecar.name]
    assert (earlier.bundle.read_bytes(), earlier.sidecar.read_bytes()) == before


def test_terminate_leaves_nothing_behind(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "x.py").write_text("")
    out = tmp_path / "out"
    out.mkdir()
    model = tmp_path / "model"
    model.mkdir()
    with open(model / "huge.bin", "wb") as fh:
        fh.truncate(16 * GIB)
    process = subprocess.Popen(
        _capture_command(model, code, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not os.listdir(out):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "capture never started writing"
        time.sleep(0.05)
    process.terminate()
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 143, stderr
    assert "Error: terminated" in stderr
    assert os.listdir(out) == []


def test_output_folder_cannot_be_created(inputs: Inputs, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("")

    with pytest.raises(InputError) as info:
        run_capture(inputs.model, inputs.code, blocker / "out")

    assert str(blocker / "out") in info.value.message


@pytest.mark.parametrize(
    "name",
    [b"bad\xff.bin", b"back\\slash.bin", b"new\nline.bin", b"tab\tname.bin"],
    ids=["not utf-8", "backslash", "newline", "tab"],
)
def test_unstorable_file_name_rejected(
    inputs: Inputs, tmp_path: Path, name: bytes
) -> None:
    with open(os.fsencode(inputs.model) + b"/" + name, "wb") as fh:
        fh.write(b"x")
    out = tmp_path / "out"

    with pytest.raises(InputError) as info:
        run_capture(inputs.model, inputs.code, out)

    assert repr(os.fsdecode(name))[1:-1] in info.value.message
    assert "--exclude" in (info.value.hint or "")
    assert not out.exists()


def test_unusual_but_valid_names_round_trip(inputs: Inputs, tmp_path: Path) -> None:
    names = ["späces and ü.bin", "x" * 120 + ".bin", "日本語/重み.bin", "-dash.bin"]
    for name in names:
        path = inputs.model / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(name.encode())
    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1")
    unpack = tmp_path / "unpack"
    unpack.mkdir()

    subprocess.run(["tar", "--zstd", "-xf", str(result.bundle)], cwd=unpack, check=True)
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", "SHA256SUMS"],
        cwd=unpack / "tiny-bert-1",
        capture_output=True,
        check=False,
    )

    assert check.returncode == 0, check.stdout
    assert verify(result.bundle).ok
    restore(result.bundle, tmp_path / "dest")
    for name in names:
        assert (tmp_path / "dest" / "weights" / name).read_bytes() == name.encode()


def test_json_metrics_keep_exponent_numbers(inputs: Inputs, tmp_path: Path) -> None:
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(
        '{"loss": 1e-4, "steps": 1.5e3, "name": "run-1", "ok": true}'
    )

    result = run_capture(
        inputs.model, inputs.code, tmp_path / "out", metrics_file=metrics_file
    )

    assert result.manifest["metrics"] == {
        "loss": 1e-4,
        "name": "run-1",
        "ok": True,
        "steps": 1500.0,
    }


def test_capture_unwritable_output_names_folder(inputs: Inputs) -> None:
    with pytest.raises(OutputError) as caught:
        run_capture(inputs.model, inputs.code, Path("/proc"), name="m", version="1")
    assert "cannot write to output folder /proc" in caught.value.message


@pytest.mark.parametrize(
    ("option", "value"),
    [("tags", ["BAD TAG"]), ("base_image", "not a ref!!")],
)
def test_capture_rejects_bad_image_reference(
    inputs: Inputs, tmp_path: Path, option: str, value: object
) -> None:
    output = tmp_path / "new" / "out"
    with pytest.raises(UsageError) as caught:
        run_capture(
            inputs.model, inputs.code, output, name="m", version="1", **{option: value}
        )
    assert "invalid image reference" in caught.value.message
    assert not (tmp_path / "new").exists()


def test_capture_accepts_engine_references(inputs: Inputs, tmp_path: Path) -> None:
    result = run_capture(
        inputs.model,
        inputs.code,
        tmp_path / "out",
        name="m",
        version="1",
        image=False,
        tags=["team/model:1", "127.0.0.1:5000/team/model:1"],
        base_image="python:3.11-slim",
    )
    assert result.bundle.is_file()


def test_capture_default_name_is_ascii(inputs: Inputs, tmp_path: Path) -> None:
    model = tmp_path / "my modèl"
    shutil.copytree(inputs.model, model)
    result = run_capture(model, inputs.code, tmp_path / "out", version="1")
    assert result.manifest["name"] == "my-model"


def test_capture_long_folder_name_hints_name(inputs: Inputs, tmp_path: Path) -> None:
    model = tmp_path / ("x" * 140)
    shutil.copytree(inputs.model, model)
    with pytest.raises(UsageError) as caught:
        run_capture(model, inputs.code, tmp_path / "out", version="1")
    assert "made from the model path" in caught.value.message
    assert caught.value.hint is not None
    assert "--name" in caught.value.hint


def test_failed_capture_removes_new_output(inputs: Inputs, tmp_path: Path) -> None:
    empty_model = tmp_path / "empty"
    empty_model.mkdir()
    output = tmp_path / "a" / "b"
    with pytest.raises(InputError):
        run_capture(empty_model, inputs.code, output, name="m", version="1")
    assert not (tmp_path / "a").exists()


def test_failed_capture_keeps_existing_output(inputs: Inputs, tmp_path: Path) -> None:
    empty_model = tmp_path / "empty"
    empty_model.mkdir()
    output = tmp_path / "out"
    output.mkdir()
    with pytest.raises(InputError):
        run_capture(empty_model, inputs.code, output, name="m", version="1")
    assert output.is_dir()
