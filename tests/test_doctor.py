"""Tests of the host comparison: a table of captured and host sections with their findings."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from goldmaster import cuda_compat, doctor, gpu
from goldmaster.errors import EXIT_FAILED, HostMismatchError


def card(name: str, capability: str, memory: int = 81559) -> dict[str, Any]:
    return {"name": name, "compute_capability": capability, "memory_total_mib": memory}


H100 = card("NVIDIA H100 80GB HBM3", "9.0")
A100 = card("NVIDIA A100-SXM4-40GB", "8.0", 40960)
L4 = card("NVIDIA L4", "8.9", 23034)
V100 = card("Tesla V100-SXM2-16GB", "7.0", 16160)


def section(
    *,
    gpus: list[dict[str, Any]] | None = None,
    driver: str | None = "550.54.15",
    runtime: str | None = "12.4",
    arch_list: list[str] | None = None,
    glibc: str = "2.35",
    architecture: str = "x86_64",
    level: int | None = 3,
    python: str = "3.11.9",
) -> dict[str, Any]:
    """Build a ``system`` section with the facts the comparison reads."""
    cpu: dict[str, Any] = {"architecture": architecture}
    if level is not None:
        cpu["x86_64_level"] = level
    gpus = [H100] if gpus is None else gpus
    return {
        "glibc": {"name": "glibc", "version": glibc},
        "cpu": cpu,
        "python": {"version": python},
        "nvidia": {
            "status": "ok" if gpus else "not-found",
            "reason": None if gpus else "nvidia-smi is not on PATH",
            "driver_version": {"value": driver, "source": "nvidia-smi"}
            if driver
            else None,
            "gpus": gpus,
        },
        "cuda": {
            "runtime_version": {"value": runtime, "source": "torch.version.cuda"}
            if runtime
            else None,
            "arch_list": {"value": arch_list, "source": "torch._C._cuda_getArchFlags()"}
            if arch_list
            else None,
        },
    }


TORCH_ARCHES = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]

# (case, captured, host, expected code, expected severity)
CASES = [
    ("no gpu here", section(), section(gpus=[]), "no-gpu", "error"),
    (
        "driver below the CUDA 12 floor",
        section(runtime="12.4"),
        section(driver="470.82.01"),
        "driver-too-old",
        "error",
    ),
    (
        "driver of CUDA 12 for a CUDA 13 runtime",
        section(runtime="13.0"),
        section(driver="550.54.15"),
        "driver-too-old",
        "error",
    ),
    (
        "driver runs CUDA 12.4 through minor version compatibility",
        section(runtime="12.4"),
        section(driver="535.104.05"),
        "driver-minor-compat",
        "warning",
    ),
    (
        "runtime newer than the table",
        section(runtime="13.9"),
        section(driver="600.10"),
        "driver-unlisted-cuda",
        "info",
    ),
    (
        "gpu newer than the compiled architectures",
        section(arch_list=["sm_70", "sm_75", "sm_80"]),
        section(gpus=[H100]),
        "gpu-arch-unsupported",
        "error",
    ),
    (
        "gpu older than the compiled architectures",
        section(arch_list=["sm_80", "sm_90"]),
        section(gpus=[V100]),
        "gpu-arch-unsupported",
        "error",
    ),
    (
        "gpu runs only PTX",
        section(arch_list=["sm_80", "compute_80"]),
        section(gpus=[H100]),
        "gpu-arch-ptx-only",
        "warning",
    ),
    (
        "other gpu model",
        section(gpus=[H100] * 8),
        section(gpus=[A100]),
        "gpu-model",
        "info",
    ),
    (
        "less gpu memory",
        section(gpus=[H100]),
        section(gpus=[L4]),
        "gpu-memory",
        "warning",
    ),
    (
        "older glibc",
        section(glibc="2.35"),
        section(glibc="2.31"),
        "glibc-older",
        "error",
    ),
    (
        "other cpu architecture",
        section(architecture="aarch64", level=None),
        section(architecture="x86_64"),
        "cpu-architecture",
        "error",
    ),
    (
        "lower x86-64 level",
        section(level=4),
        section(level=2),
        "cpu-feature-level",
        "warning",
    ),
    (
        "other python minor",
        section(python="3.11.9"),
        section(python="3.10.14"),
        "python-version",
        "error",
    ),
]


@pytest.mark.parametrize(
    ("captured", "host", "code", "severity"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_compare_host_finds(
    captured: dict[str, Any], host: dict[str, Any], code: str, severity: str
) -> None:
    findings = doctor.compare_host(captured, host)

    matching = [f for f in findings if f.code == code]
    assert matching, f"no {code} finding in {[f.code for f in findings]}"
    assert matching[0].severity == severity
    assert matching[0].message
    assert matching[0].advice


# (case, captured, host) pairs that must produce no finding at all
CLEAN_CASES = [
    ("same host", section(), section()),
    ("newer driver", section(runtime="12.4"), section(driver="580.65.06")),
    ("newer glibc", section(glibc="2.31"), section(glibc="2.39")),
    (
        "same minor python, other patch",
        section(python="3.11.2"),
        section(python="3.11.9"),
    ),
    (
        "gpu binary compatible in its major",
        section(arch_list=TORCH_ARCHES),
        section(gpus=[H100]),
    ),
    ("captured without gpu", section(gpus=[], runtime=None), section(gpus=[])),
    ("captured facts missing", {}, section()),
]


@pytest.mark.parametrize(
    ("captured", "host"),
    [case[1:] for case in CLEAN_CASES],
    ids=[c[0] for c in CLEAN_CASES],
)
def test_compare_host_finds_nothing(
    captured: dict[str, Any], host: dict[str, Any]
) -> None:
    assert doctor.compare_host(captured, host) == []


def test_driver_advice_names_versions() -> None:
    findings = doctor.compare_host(section(runtime="12.4"), section(driver="470.82.01"))

    advice = next(f.advice for f in findings if f.code == "driver-too-old")
    assert "550.54.14 or newer" in advice
    assert "CUDA 11.4 or older" in advice


def test_glibc_advice_lists_new_enough_distributions() -> None:
    findings = doctor.compare_host(section(glibc="2.35"), section(glibc="2.31"))

    advice = next(f.advice for f in findings if f.code == "glibc-older")
    assert "Ubuntu 22.04" in advice
    assert "Ubuntu 20.04" not in advice


def test_findings_come_errors_first() -> None:
    captured = section(gpus=[H100] * 8, runtime="12.4", glibc="2.35")
    host = section(gpus=[A100], driver="535.104.05", glibc="2.31")

    severities = [f.severity for f in doctor.compare_host(captured, host)]

    assert severities == sorted(severities, key=doctor.SEVERITIES.index)
    assert severities[0] == "error"


def test_enforce_strict_raises_on_error() -> None:
    findings = doctor.compare_host(section(), section(gpus=[]))

    with pytest.raises(HostMismatchError, match="no-gpu") as raised:
        doctor.enforce(findings, strict=True)
    assert raised.value.exit_code == EXIT_FAILED


def test_enforce_only_warns_by_default_and_for_warnings() -> None:
    errors = doctor.compare_host(section(), section(gpus=[]))
    warnings = doctor.compare_host(section(level=4), section(level=2))

    doctor.enforce(errors, strict=False)
    doctor.enforce(warnings, strict=True)


def test_compare_probed_host_with_captured_cuda_13_runtime(
    cuda_venv: Path, smi_environ: Callable[[str | None], dict[str, str]]
) -> None:
    # The venv loads libcudart 13.0; the fake host runs driver 550.54.15.
    environ = dict(os.environ)
    captured_cuda, _ = gpu.probe_cuda(cuda_venv, environ)
    captured = copy.deepcopy(section())
    captured["cuda"] = captured_cuda
    host_nvidia, _ = gpu.probe_nvidia(smi_environ("one-gpu"))
    host = copy.deepcopy(section())
    host["nvidia"] = host_nvidia

    findings = doctor.compare_host(captured, host)

    too_old = [f for f in findings if f.code == "driver-too-old"]
    assert len(too_old) == 1
    assert "driver 550.54.15 is too old for CUDA 13.0" in too_old[0].message
    assert "cudaRuntimeGetVersion()" in too_old[0].message


@pytest.mark.parametrize(
    ("arch", "capability", "runs"),
    [
        ("sm_80", "8.6", "native"),
        ("sm_86", "8.0", None),
        ("sm_90a", "9.0", "native"),
        ("sm_90a", "10.0", None),
        ("sm_100f", "10.3", "native"),
        ("compute_80", "9.0", "jit"),
        ("compute_90", "8.9", None),
        ("sm_120", "12.0", "native"),
    ],
)
def test_arch_runs_on(arch: str, capability: str, runs: str | None) -> None:
    assert cuda_compat.arch_runs_on(arch, capability) == runs


@pytest.mark.parametrize(
    ("cuda", "toolkit", "floor"),
    [
        ("12.4", "550.54.14", "525.60.13"),
        ("12.4.127", "550.54.14", "525.60.13"),
        ("12040", "550.54.14", "525.60.13"),
        ("11.8", "520.61.05", "450.80.02"),
        ("13.0", "580.65.06", "580.65.06"),
        ("10.2", "440.33", None),
    ],
)
def test_driver_table_lookups(cuda: str, toolkit: str, floor: str | None) -> None:
    assert cuda_compat.toolkit_min_driver(cuda) == toolkit
    assert cuda_compat.minor_compat_floor(cuda) == floor


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [("535.104.05", "12.2"), ("570.26", "12.8"), ("470.82.01", "11.4")],
)
def test_newest_cuda_for_driver(driver: str, cuda: str) -> None:
    assert cuda_compat.newest_cuda_for_driver(driver) == cuda
