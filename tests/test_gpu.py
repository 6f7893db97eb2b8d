"""Tests of the NVIDIA driver and GPU probe, with a fake nvidia-smi on PATH."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from goldmaster import gpu
from goldmaster.external import run_command
from goldmaster.parts import Part

Environ = Callable[[str | None], dict[str, str]]

PROPRIETARY_MODULE = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    "GCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04) \n"
)
OPEN_MODULE = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build  "
    "(dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:25:25 UTC 2024\n"
    "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"
)


def probe(environ: dict[str, str], root: Path = Path("/")) -> tuple[dict, list[Part]]:
    return gpu.probe_nvidia(environ, root)


def arcnames(parts: list[Part]) -> list[str]:
    return sorted(part.arcname for part in parts)


def test_probe_one_gpu(smi_environ: Environ) -> None:
    record, parts = probe(smi_environ("one-gpu"))

    assert record["status"] == "ok"
    assert record["gpu_count"] == 1
    assert record["gpus_source"] == "nvidia-smi"
    card = record["gpus"][0]
    assert card["name"] == "NVIDIA L4"
    assert card["compute_capability"] == "8.9"
    assert card["memory_total_mib"] == 23034
    assert card["pci_bus_id"] == "00000000:01:00.0"
    assert card["architecture"] == "Ada Lovelace"
    assert card["uuid"].startswith("GPU-")
    assert record["driver_version"] == {
        "value": "550.54.15",
        "source": "nvidia-smi --query-gpu",
    }
    assert record["cuda_driver_version"] == {
        "value": "12.4",
        "source": "nvidia-smi -q -x",
    }
    assert arcnames(parts) == [
        "system/nvidia-smi-L.txt",
        "system/nvidia-smi-q.xml",
        "system/nvidia-smi-query-gpu.csv",
    ]


def test_probe_records_every_reading_with_its_source(smi_environ: Environ) -> None:
    record, _ = probe(smi_environ("one-gpu"))

    readings = {(r["fact"], r["source"]): r["value"] for r in record["readings"]}

    assert readings[("driver_version", "nvidia-smi --query-gpu")] == "550.54.15"
    assert readings[("driver_version", "nvidia-smi -q -x")] == "550.54.15"
    assert readings[("cuda_driver_version", "nvidia-smi -q -x")] == "12.4"


def test_probe_eight_gpus(smi_environ: Environ) -> None:
    record, _ = probe(smi_environ("eight-gpus"))

    assert record["status"] == "ok"
    assert record["gpu_count"] == 8
    assert [card["index"] for card in record["gpus"]] == list(range(8))
    assert {card["name"] for card in record["gpus"]} == {"NVIDIA H100 80GB HBM3"}
    assert {card["compute_capability"] for card in record["gpus"]} == {"9.0"}
    assert len({card["uuid"] for card in record["gpus"]}) == 8
    assert {card["mig_mode"]["current"] for card in record["gpus"]} == {"Disabled"}
    assert record["driver_version"]["value"] == "535.183.01"


def test_probe_mig_devices(smi_environ: Environ) -> None:
    record, _ = probe(smi_environ("mig"))

    card = record["gpus"][0]
    assert card["mig_mode"] == {"current": "Enabled", "pending": "Enabled"}
    devices = card["mig_devices"]
    assert [d["profile"] for d in devices] == ["3g.20gb", "2g.10gb", "1g.5gb"]
    assert [d["gpu_instance_id"] for d in devices] == [1, 5, 13]
    assert [d["memory_total_mib"] for d in devices] == [20096, 9856, 4864]
    assert all(d["uuid"].startswith("MIG-") for d in devices)


def test_probe_old_driver_without_compute_cap_field(smi_environ: Environ) -> None:
    record, _ = probe(smi_environ("old-driver"))

    assert record["status"] == "ok"
    assert record["sources"]["nvidia-smi"]["rejected_fields"] == ["compute_cap"]
    card = record["gpus"][0]
    assert card["name"] == "Tesla V100-SXM2-16GB"
    assert card["compute_capability"] is None
    assert record["driver_version"]["value"] == "470.82.01"
    assert record["cuda_driver_version"]["value"] == "11.4"


def test_probe_driver_failure_is_a_status(smi_environ: Environ) -> None:
    record, parts = probe(smi_environ("driver-failure"))

    assert record["status"] == "driver-not-loaded"
    assert "couldn't communicate with the NVIDIA driver" in record["reason"]
    assert record["gpus"] == []
    assert record["sources"]["nvidia-smi"]["exit_status"] == 9
    assert arcnames(parts) == ["system/nvidia-smi-query-gpu.csv"]
    assert b"NVIDIA-SMI has failed" in parts[0].data


def test_probe_hung_driver_times_out(
    smi_environ: Environ, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu, "SMI_TIMEOUT_S", 0.5)

    record, parts = probe(smi_environ("hung"))

    smi = record["sources"]["nvidia-smi"]
    assert smi["status"] == "timeout"
    assert "did not finish within 0.5 seconds" in smi["reason"]
    assert "xml_status" not in smi
    assert record["gpus"] == []
    assert arcnames(parts) == ["system/nvidia-smi-query-gpu.csv"]


def test_probe_no_devices_is_no_gpu(smi_environ: Environ) -> None:
    record, _ = probe(smi_environ("no-devices"))

    assert record["status"] == "no-gpu"
    assert record["gpu_count"] == 0


def test_probe_without_nvidia_smi(smi_environ: Environ, tmp_path: Path) -> None:
    record, parts = probe(smi_environ(None), tmp_path)

    assert record["status"] == "not-found"
    assert "nvidia-smi is not on PATH" in record["reason"]
    assert record["sources"]["nvidia-smi"]["status"] == "not-found"
    assert record["sources"]["proc"]["status"] == "not-found"
    assert parts == []


def test_probe_reports_nvml_without_library(smi_environ: Environ) -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py is an optional dependency")

    record, _ = probe(smi_environ("one-gpu"))

    nvml = record["sources"]["nvml"]
    assert nvml["status"] == "failed"
    assert "NVML Shared Library Not Found" in nvml["reason"]
    assert record["sources"]["libcuda"]["status"] == "failed"
    assert "libcuda.so.1" in record["sources"]["libcuda"]["reason"]


def test_probe_names_dangling_nvml_link(smi_environ: Environ, tmp_path: Path) -> None:
    libraries = tmp_path / "lib"
    libraries.mkdir()
    target = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.104.05"
    (libraries / "libnvidia-ml.so.1").symlink_to(target)
    environ = smi_environ(None)
    environ["LD_LIBRARY_PATH"] = str(libraries)

    record, _ = probe(environ, tmp_path)

    found = record["libraries"]["libnvidia-ml.so.1"]
    assert found["status"] == "dangling"
    assert found["target"] == target
    assert found["source"] == "LD_LIBRARY_PATH"
    assert f"libnvidia-ml.so.1 is a dangling link to {target}" in record["reason"]


def test_probe_is_deterministic(smi_environ: Environ) -> None:
    first, first_parts = probe(smi_environ("mig"))
    second, second_parts = probe(smi_environ("mig"))

    assert first == second
    assert [(p.arcname, p.data) for p in first_parts] == [
        (p.arcname, p.data) for p in second_parts
    ]


@pytest.mark.parametrize(
    ("text", "version", "open_module"),
    [(PROPRIETARY_MODULE, "535.104.05", False), (OPEN_MODULE, "550.54.14", True)],
)
def test_read_proc_version(
    tmp_path: Path, text: str, version: str, open_module: bool
) -> None:
    path = tmp_path / "version"
    path.write_text(text)
    parts: list[Part] = []

    record = gpu.read_proc_version(path, parts)

    assert record["status"] == "ok"
    assert record["open_kernel_module"] is open_module
    assert record["readings"] == [
        {
            "fact": "driver_version",
            "value": version,
            "source": "/proc/driver/nvidia/version",
        }
    ]
    assert parts[0].data == text.encode()


def test_locate_library_finds_real_library_in_ldconfig_cache() -> None:
    found = gpu.locate_library("libc.so.6", {"PATH": os.environ["PATH"]})

    assert found["status"] == "found"
    assert found["source"] == "ldconfig -p"
    assert Path(found["resolved"]).exists()


def test_run_command_reports_timeout() -> None:
    result = run_command(["sleep", "5"], timeout=0.2)

    assert result.status == "timeout"
    assert "did not finish within 0.2 seconds" in (result.reason or "")


def test_run_command_reports_exit_status_and_first_line() -> None:
    result = run_command(
        [sys.executable, "-c", "import sys; print('broken'); sys.exit(3)"]
    )

    assert result.status == "failed"
    assert result.returncode == 3
    assert result.reason is not None
    assert result.reason.endswith("exited with status 3: broken")


def test_run_command_reports_missing_executable() -> None:
    result = run_command(["no-such-tool-goldmaster"], environ={"PATH": "/nonexistent"})

    assert result.status == "not-found"
    assert result.describe() == {
        "command": "no-such-tool-goldmaster",
        "status": "not-found",
        "reason": "no-such-tool-goldmaster is not on PATH",
    }


def test_probe_system_is_deterministic(smi_environ: Environ) -> None:
    environ = smi_environ("mig")

    first = gpu.probe_system(None, environ=environ)
    second = gpu.probe_system(None, environ=environ)

    assert first.name == "system"
    assert first.data == second.data
    assert [(p.arcname, p.data) for p in first.parts] == [
        (p.arcname, p.data) for p in second.parts
    ]
    assert set(first.data) == {
        "os",
        "kernel",
        "glibc",
        "cpu",
        "memory",
        "container",
        "env",
        "python",
        "nvidia",
        "cuda",
    }
