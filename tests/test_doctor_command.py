"""Tests of `goldmaster doctor`, and of the system section in capture, inspect and restore."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from goldmaster.capture import CaptureOptions, capture
from goldmaster.cli import cli
from goldmaster.errors import EXIT_FAILED, EXIT_USAGE

FAKES = Path(__file__).parent / "fakes"


def use_host(monkeypatch: pytest.MonkeyPatch, scenario: str) -> None:
    """Put the fake nvidia-smi on PATH, printing the outputs of ``scenario``."""
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_NVIDIA_SMI_SCENARIO", str(FAKES / "scenarios" / scenario))


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda_venv: Path) -> Path:
    """Capture a small model on a host with eight H100 GPUs and CUDA 13.0 wheels."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(bytes(range(256)) * 8)
    code = tmp_path / "code"
    code.mkdir()
    (code / "infer.py").write_text("print('hello')\n")
    use_host(monkeypatch, "eight-gpus")
    options = CaptureOptions(
        model=model,
        output=tmp_path / "out",
        name="tiny",
        version="1",
        code=code,
        python=cuda_venv, env=False)
    return capture(options).bundle


def run(*args: str) -> tuple[int, str]:
    """Run the CLI; return the exit status and stdout (stderr is left out)."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout


def run_all(*args: str) -> tuple[int, str]:
    """Run the CLI; return the exit status and stdout with stderr."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_capture_records_system_section(bundle: Path) -> None:
    code, output = run("inspect", "--json", str(bundle))

    assert code == 0
    system = json.loads(output)["manifest"]["system"]
    assert system["nvidia"]["gpu_count"] == 8
    assert system["nvidia"]["driver_version"]["value"] == "535.183.01"
    assert system["cuda"]["runtime_version"]["value"] == "13.0"
    assert system["python"]["chosen_by"] == "--python"


def test_capture_notices_runtime_the_driver_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda_venv: Path
) -> None:
    model = tmp_path / "weights.bin"
    model.write_bytes(b"0" * 64)
    use_host(monkeypatch, "eight-gpus")

    result = capture(
        CaptureOptions(
            model=model, output=tmp_path / "out", code=tmp_path, python=cuda_venv, env=False)
    )

    notice = next(n for n in result.notices if "driver-too-old" in n)
    assert "driver 535.183.01 is too old for CUDA 13.0" in notice


def test_inspect_shows_gpu_block(bundle: Path) -> None:
    code, output = run("inspect", str(bundle))

    assert code == 0
    assert "NVIDIA H100 80GB HBM3" in output
    assert "535.183.01 (nvidia-smi --query-gpu)" in output
    assert "13.0 (cudaRuntimeGetVersion()" in output
    assert "nvidia-cuda-runtime-cu12 12.9.79" in output


def test_doctor_without_bundle_shows_host(monkeypatch: pytest.MonkeyPatch) -> None:
    use_host(monkeypatch, "mig")

    code, output = run("doctor", "--json")

    assert code == 0
    report = json.loads(output)
    assert report["schema"] == "goldmaster.doctor/v1"
    assert report["bundle"] is None
    assert report["findings"] == []
    assert report["host"]["nvidia"]["gpus"][0]["mig_mode"]["current"] == "Enabled"


def test_doctor_finds_old_driver(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_host(monkeypatch, "one-gpu")

    code, output = run("doctor", "--json", str(bundle))

    assert code == 0
    report = json.loads(output)
    codes = {finding["code"]: finding["severity"] for finding in report["findings"]}
    assert codes["driver-too-old"] == "error"
    assert codes["gpu-model"] == "info"
    assert report["errors"] == 1


def test_doctor_strict_fails_on_error(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_host(monkeypatch, "driver-failure")

    code, output = run_all("doctor", "--strict", str(bundle))

    assert code == EXIT_FAILED
    assert "no-gpu" in output
    assert "couldn't communicate with the NVIDIA driver" in output
    assert "Error: this host cannot run what the bundle captured (no-gpu)" in output


def test_doctor_reads_restored_folder(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_host(monkeypatch, "eight-gpus")
    dest = tmp_path / "restored"
    assert run("restore", str(bundle), str(dest))[0] == 0

    code, output = run("doctor", "--json", str(dest))

    # The captured venv holds a CUDA 13.0 runtime that the capture host's
    # driver 535 cannot run either, so the same host gets only that finding.
    assert code == 0
    findings = json.loads(output)["findings"]
    assert [finding["code"] for finding in findings] == ["driver-too-old"]


def test_doctor_rejects_folder_without_manifest(tmp_path: Path) -> None:
    code, output = run_all("doctor", str(tmp_path))

    assert code == EXIT_USAGE
    assert f"manifest not found: {tmp_path / 'manifest.yaml'}" in output


def test_restore_warns_about_host(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_host(monkeypatch, "one-gpu")
    dest = tmp_path / "restored"

    code, output = run("restore", "--json", str(bundle), str(dest))

    assert code == 0
    result = json.loads(output)
    findings = result["stages"]["host"]["findings"]
    assert "driver-too-old" in [finding["code"] for finding in findings]
    assert (dest / "manifest.yaml").exists()


def test_restore_strict_host_fails_after_extracting(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_host(monkeypatch, "one-gpu")
    dest = tmp_path / "restored"

    code, output = run_all("restore", "--strict-host", str(bundle), str(dest))

    assert code == EXIT_FAILED
    assert "driver-too-old" in output
    assert f"the files are restored in {dest}" in output
    assert (dest / "weights" / "weights.bin").exists()


def test_capture_rejects_missing_python(tmp_path: Path) -> None:
    code, output = run_all("capture", str(tmp_path), "--python", str(tmp_path / "nope"))

    assert code == EXIT_USAGE
    assert "--python" in output


@pytest.mark.parametrize("mode", [0o644, 0o755])
def test_doctor_python_not_runnable(tmp_path: Path, mode: int) -> None:
    text = tmp_path / "text.txt"
    text.write_text("not an interpreter\n")
    text.chmod(mode)

    code, output = run_all("doctor", "--python", str(text))

    assert code == EXIT_USAGE
    assert f"cannot run --python {text}" in output
    assert "could not be started" in output


def test_doctor_python_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("not an interpreter\n")

    code, output = run_all("doctor", "--python", "text.txt")

    assert code == EXIT_USAGE
    assert "cannot run --python text.txt" in output
    assert "not on PATH" not in output
