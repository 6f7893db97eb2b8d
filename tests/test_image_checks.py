"""Golden-output checks inside the restored container image, on the real engine.

A small two-layer network in safetensors is captured with a real virtual
environment that has NumPy, its wheels vendored, and an image built on the
local Debian base image. Its check prints and saves the network's outputs
for fixed inputs, so the outputs change with every weight.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from goldmaster import container
from goldmaster.cli import cli
from goldmaster.verify import read_manifest
from helpers import write_safetensors

pytestmark = [pytest.mark.engine, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
NUMPY_REQUIREMENT = (REPO / "examples" / "minilm" / "requirements.txt").read_text()
CHECK = "python infer.py"
CHECK_OUTPUT = "outputs.npy"
FLIPPED_TENSOR = "fc2.bias"
INFERENCE_SCRIPT = """\
import json, os, struct
import numpy as np

path = os.path.join(os.environ["GOLDMASTER_MODEL_DIR"], "model.safetensors")
raw = open(path, "rb").read()
(length,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8 : 8 + length])
data = raw[8 + length :]
weights = {}
for name, entry in header.items():
    if name != "__metadata__":
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[start:end], dtype="<f4")
        weights[name] = array.reshape(entry["shape"])
inputs = np.linspace(-1.0, 1.0, 3 * 16, dtype=np.float32).reshape(3, 16)
hidden = np.tanh(inputs @ weights["fc1.weight"] + weights["fc1.bias"])
outputs = hidden @ weights["fc2.weight"] + weights["fc2.bias"]
np.save("outputs.npy", outputs)
print(json.dumps([[round(float(v), 6) for v in row] for row in outputs]))
"""


@pytest.fixture(scope="module")
def numpy_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a real virtual environment with the example's NumPy."""
    root = tmp_path_factory.mktemp("numpy-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run(
        [str(root / "bin" / "pip"), "install", "-q", NUMPY_REQUIREMENT.strip()],
        check=True,
    )
    return root / "bin" / "python"


@pytest.fixture
def model_and_code(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model"
    model.mkdir()
    write_safetensors(
        model / "model.safetensors",
        {
            "fc1.weight": ("F32", (16, 8)),
            "fc1.bias": ("F32", (8,)),
            "fc2.weight": ("F32", (8, 4)),
            FLIPPED_TENSOR: ("F32", (4,)),
        },
        seed=7,
    )
    code = tmp_path / "code"
    code.mkdir()
    (code / "infer.py").write_text(INFERENCE_SCRIPT)
    return model, code


@pytest.fixture
def tag(engine: Any) -> Any:
    reference = f"localhost/gm-test-checks-{uuid.uuid4().hex[:12]}:1.0"
    yield reference
    container.remove_image(reference, client=engine)


def run_cli(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def capture(
    model: Path, code: Path, out: Path, python: Path, tag: str, base: str, *extra: str
) -> Path:
    captured = run_cli(
        "capture", model, "--name", "mlp", "--version", "1.0", "--code", code,
        "-o", out, "--python", python, "--wheels", "--strict",
        "--base-image", base, "--tag", tag,
        "--check", CHECK, "--check-output", CHECK_OUTPUT, *extra,
    )  # fmt: skip
    assert captured.exit_code == 0, captured.output
    return out / "mlp-1.0.gm.tar.zst"


def flip_sign_bit(path: Path, tensor: str) -> None:
    """Flip the sign bit of the first float32 value of ``tensor`` in place."""
    raw = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    start = json.loads(raw[8 : 8 + length])[tensor]["data_offsets"][0]
    # Little-endian float32: the sign bit is the top bit of the fourth byte.
    raw[8 + length + start + 3] ^= 0x80
    path.write_bytes(bytes(raw))


def host_outputs(python: Path, code: Path, model: Path, scratch: Path) -> np.ndarray:
    """Run the check's script on this host and return the outputs it saves."""
    scratch.mkdir()
    shutil.copy(code / "infer.py", scratch / "infer.py")
    env = dict(os.environ, GOLDMASTER_MODEL_DIR=str(model))
    subprocess.run(
        [str(python), "infer.py"], cwd=scratch, env=env, capture_output=True, check=True
    )
    return np.load(scratch / CHECK_OUTPUT)


def check_outputs(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the compared outputs of the report's only check, by output name."""
    (check,) = report["checks"]
    return {output["output"]: output for output in check["outputs"]}


def test_restore_image_check_reports_identical(
    engine, base_image, numpy_python, model_and_code, tag, tmp_path
):
    model, code = model_and_code
    bundle = capture(
        model, code, tmp_path / "out", numpy_python, tag, base_image.python
    )
    manifest = read_manifest(bundle)
    assert manifest["image"]["weights"] == "included"
    container.remove_image(tag, client=engine)
    assert not container.image_exists(manifest["image"]["id"], client=engine)
    dest = tmp_path / "restored"

    restored = run_cli("restore", bundle, dest, "--no-env", "--image", "--check")

    assert restored.exit_code == 0, restored.output
    lines = restored.stdout.splitlines()
    assert any(line.startswith("IDENTICAL ") and "check-1" in line for line in lines)
    assert "OK  1 of 1 checks passed" in lines
    assert container.image_info(tag, client=engine).id == manifest["image"]["id"]

    # The same bundle again, through goldmaster check, with the image gone.
    container.remove_image(tag, client=engine)
    checked = run_cli("check", "--json", bundle, "--image")

    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["passed"] is True
    assert report["where"] == {"image": manifest["image"]["id"], "weights_mount": None}
    outputs = check_outputs(report)
    assert outputs["stdout"]["status"] == "identical"
    assert outputs[CHECK_OUTPUT]["status"] == "identical"


def test_image_check_with_flipped_weight_fails(
    engine, base_image, numpy_python, model_and_code, tag, tmp_path
):
    model, code = model_and_code
    bundle = capture(
        model, code, tmp_path / "out", numpy_python, tag, base_image.python,
        "--no-image-weights",
    )  # fmt: skip
    assert read_manifest(bundle)["image"]["weights"] == "mounted"
    dest = tmp_path / "restored"
    restored = run_cli(
        "restore", "--json", bundle, dest, "--no-env", "--image", "--check"
    )
    assert restored.exit_code == 0, restored.output
    checks = json.loads(restored.stdout)["stages"]["checks"]
    assert checks["where"]["weights_mount"] == str((dest / "weights").absolute())
    assert checks["passed"] is True

    weights = dest / "weights" / "model.safetensors"
    expected = host_outputs(numpy_python, code, dest / "weights", tmp_path / "before")
    flip_sign_bit(weights, FLIPPED_TENSOR)
    actual = host_outputs(numpy_python, code, dest / "weights", tmp_path / "after")
    checked = run_cli("check", dest, "--image")
    checked_json = run_cli("check", "--json", dest, "--image")

    assert checked.exit_code == 1, checked.output
    assert "DIFFERENT" in checked.stdout
    assert f"{CHECK_OUTPUT}: 3 of 12 values differ" in checked.stdout
    assert "first at [0, 0]: expected" in checked.stdout
    assert "FAILED  0 of 1 checks passed" in checked.stdout
    assert checked_json.exit_code == 1
    first = check_outputs(json.loads(checked_json.stdout))[CHECK_OUTPUT]["first"]
    # Flipping the first bias of the last layer changes column 0 of every row.
    assert first["location"] == "[0, 0]"
    assert float(first["expected"]) == pytest.approx(float(expected[0, 0]))
    assert float(first["actual"]) == pytest.approx(float(actual[0, 0]))
    assert float(first["expected"]) != pytest.approx(float(first["actual"]))
