"""Fixtures shared by the test files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["registry_fixtures"]

FAKES = Path(__file__).parent / "fakes"
SCENARIOS = FAKES / "scenarios"

# Small NVIDIA wheels (together under 6 MB) whose libraries and metadata the
# CUDA probe reads: two CUDA runtimes of different majors and one header-only
# package.
CUDA_WHEELS = (
    "nvidia-cuda-runtime-cu12==12.9.79",
    "nvidia-nvtx-cu12==12.9.79",
    "nvidia-cuda-runtime==13.0.96",
)


@pytest.fixture
def smi_environ(tmp_path: Path) -> Callable[[str | None], dict[str, str]]:
    """Return a factory of process environments with a fake nvidia-smi on PATH.

    The fake prints the stored output of the named scenario folder; None gives
    a PATH with no nvidia-smi at all.
    """

    def make(scenario: str | None) -> dict[str, str]:
        environ = dict(os.environ)
        environ.pop("LD_LIBRARY_PATH", None)
        if scenario is None:
            empty = tmp_path / "no-nvidia-smi"
            empty.mkdir(exist_ok=True)
            environ["PATH"] = f"{empty}{os.pathsep}/usr/bin{os.pathsep}/bin"
            return environ
        environ["PATH"] = f"{FAKES}{os.pathsep}{environ.get('PATH', os.defpath)}"
        environ["FAKE_NVIDIA_SMI_SCENARIO"] = str(SCENARIOS / scenario)
        return environ

    return make


@pytest.fixture(scope="session")
def cuda_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the interpreter of a real virtual environment with NVIDIA wheels."""
    root = tmp_path_factory.mktemp("cuda-venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", *CUDA_WHEELS],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        pytest.fail(
            f"pip could not install {', '.join(CUDA_WHEELS)}:\n{install.stderr}"
        )
    return python
