"""Inspect: the manifest as a page or JSON, read from the first member only."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Inputs, Invoke
from goldmaster.verify import read_manifest
from helpers import body_start, run_capture


def test_page_shows_manifest(
    git_inputs: Inputs, tmp_path: Path, invoke: Invoke
) -> None:
    assert git_inputs.git is not None
    bundle = run_capture(
        git_inputs.model,
        git_inputs.code,
        tmp_path / "out",
        name="bert",
        version="3",
        params={"lr": 0.001},
        datasets=["s3://data/train"],
    ).bundle

    result = invoke("inspect", bundle)

    page = result.stdout
    assert result.exit_code == 0
    assert page.startswith("bert 3\n")
    assert "goldmaster/v1" in page
    assert "safetensors" in page
    assert f"{git_inputs.facts['parameters']:,}" in page
    assert "BF16=1, F16=1, F32=1, I64=1" in page
    assert git_inputs.git["commit"] in page
    assert "https://REDACTED@git.example.test/ml/model.git" in page
    assert "s3://data/train" in page
    assert "lr" in page
    assert ".env" in page
    for folder in ("code", "git", "weights"):
        assert folder in page
    assert result.stderr == ""


def test_json_keys(bundle: Path, invoke: Invoke) -> None:
    result = invoke("inspect", "--json", bundle)

    data = json.loads(result.stdout)
    assert result.exit_code == 0
    assert list(data) == ["schema", "bundle", "source", "digest", "manifest"]
    assert data["schema"] == "goldmaster.inspect/v1"
    assert data["bundle"] == str(bundle)
    assert data["source"] == "file"
    assert data["digest"] is None
    manifest = data["manifest"]
    for key in (
        "schema",
        "goldmaster",
        "name",
        "version",
        "created",
        "model",
        "code",
        "files",
    ):
        assert key in manifest
    assert manifest == read_manifest(bundle)


def test_corrupt_body_still_inspected(
    bundle: Path, tmp_path: Path, invoke: Invoke
) -> None:
    data = bytearray(bundle.read_bytes())
    start = body_start(bundle)
    for offset in range(start + 10, len(data) - 10, 97):
        data[offset] ^= 0xFF
    bad = tmp_path / bundle.name
    bad.write_bytes(bytes(data))

    result = invoke("inspect", "--json", bad)
    verified = invoke("verify", bad)

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["manifest"] == read_manifest(bundle)
    assert verified.exit_code == 2


def test_body_cut_off_still_inspected(
    bundle: Path, tmp_path: Path, invoke: Invoke
) -> None:
    cut = tmp_path / bundle.name
    cut.write_bytes(bundle.read_bytes()[: body_start(bundle) + 100])

    result = invoke("inspect", cut)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("tiny-bert 1.0\n")


def test_not_a_bundle(tmp_path: Path, invoke: Invoke) -> None:
    path = tmp_path / "x.gm.tar.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd garbage")

    result = invoke("inspect", path)

    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert result.stdout == ""


def _reject_constant(name: str) -> None:
    raise AssertionError(f"--json printed the non-JSON constant {name}")


def test_json_non_finite_metrics_strict(
    inputs: Inputs, tmp_path: Path, invoke: Invoke
) -> None:
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text("loss: .nan\nbest: .inf\nworst: -.inf\nacc: 0.5\n")
    bundle = run_capture(
        inputs.model, inputs.code, tmp_path / "out", metrics_file=metrics
    ).bundle

    result = invoke("inspect", "--json", bundle)

    assert result.exit_code == 0
    data = json.loads(result.stdout, parse_constant=_reject_constant)
    recorded = data["manifest"]["metrics"]
    assert recorded["loss"] == "NaN"
    assert recorded["best"] == "Infinity"
    assert recorded["worst"] == "-Infinity"
    assert recorded["acc"] == 0.5
