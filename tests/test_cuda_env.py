"""Tests of the CUDA stack probe: a real venv with NVIDIA wheels, and the real toolkit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from goldmaster import _cuda_probe, gpu
from goldmaster.parts import Part

TOOLKIT = Path("/usr/local/cuda")
TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")

TENSORFLOW_BUILD_INFO = '''\
"""Auto-generated module providing information about the build."""
import collections

build_info = collections.OrderedDict([('cpu_compiler', '/usr/lib/llvm-17/bin/clang'), \
('cuda_compute_capabilities', ['sm_60', 'sm_70', 'sm_80', 'sm_89', 'compute_90']), \
('cuda_version', '12.3'), ('cudnn_version', '8'), ('is_cuda_build', True), \
('is_rocm_build', False), ('is_tensorrt_build', True)])
'''
TORCH_VERSION_PY = """\
from typing import Optional

__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip']
__version__ = '2.3.1+cu121'
debug = False
cuda: Optional[str] = '12.1'
git_version = '63d5e9221bedd1546b7d364b5ce4171547db12a9'
hip: Optional[str] = None
"""
CUDNN_VERSION_H = """\
#ifndef CUDNN_VERSION_H_
#define CUDNN_VERSION_H_

#define CUDNN_MAJOR 9
#define CUDNN_MINOR 1
#define CUDNN_PATCHLEVEL 0

#define CUDNN_VERSION (CUDNN_MAJOR * 10000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL)
#endif
"""


def wheel(name: str, version: str) -> SimpleNamespace:
    return SimpleNamespace(version=version, metadata={"Name": name})


def test_environment_probe_reads_nvidia_wheels(cuda_venv: Path) -> None:
    interpreter, report = gpu.run_environment_probe(cuda_venv, dict(os.environ))

    assert interpreter["status"] == "ok"
    assert report is not None
    assert report["python"]["executable"] == str(cuda_venv)
    wheels = {w["name"]: w for w in report["nvidia_wheels"]}
    assert wheels["nvidia-cuda-runtime-cu12"] == {
        "name": "nvidia-cuda-runtime-cu12",
        "version": "12.9.79",
        "cuda_major": 12,
    }
    assert wheels["nvidia-cuda-runtime"]["cuda_major"] == 13
    assert wheels["nvidia-nvtx-cu12"]["version"] == "12.9.79"


def test_environment_probe_loads_each_libcudart(cuda_venv: Path) -> None:
    _, report = gpu.run_environment_probe(cuda_venv, dict(os.environ))

    assert report is not None
    libraries = {
        Path(entry["path"]).name: entry for entry in report["cuda_runtime_libraries"]
    }
    assert set(libraries) == {"libcudart.so.12", "libcudart.so.13"}
    assert libraries["libcudart.so.12"]["version"] == "12.9"
    assert libraries["libcudart.so.12"]["version_code"] == 12090
    assert libraries["libcudart.so.12"]["provided_by"] == "nvidia-cuda-runtime-cu12"
    assert libraries["libcudart.so.13"]["version"] == "13.0"


def test_probe_cuda_takes_newest_runtime(cuda_venv: Path) -> None:
    record, parts = gpu.probe_cuda(cuda_venv, dict(os.environ))

    runtime = record["runtime_version"]
    assert runtime["value"] == "13.0"
    assert "cudaRuntimeGetVersion()" in runtime["source"]
    assert sorted(c["value"] for c in runtime["candidates"]) == ["12.9", "13.0"]
    assert record["arch_list"] is None
    assert record["interpreter"]["chosen_by"] == "--python"
    probe_part = next(p for p in parts if p.arcname == "system/python-cuda-probe.json")
    assert probe_part.data is not None
    assert json.loads(probe_part.data)["nvidia_wheels"]


def test_environment_probe_of_missing_interpreter(tmp_path: Path) -> None:
    interpreter, report = gpu.run_environment_probe(
        tmp_path / "python", dict(os.environ)
    )

    assert report is None
    assert interpreter["status"] == "failed"
    assert "does not exist" in interpreter["reason"]


def test_environment_probe_of_failing_interpreter() -> None:
    interpreter, report = gpu.run_environment_probe(
        Path("/bin/false"), dict(os.environ)
    )

    assert report is None
    assert interpreter["status"] == "failed"
    assert "exited with status 1" in interpreter["reason"]


def test_environment_probe_defaults_to_own_interpreter() -> None:
    interpreter, report = gpu.run_environment_probe(None, dict(os.environ))

    assert report is not None
    assert interpreter["chosen_by"] == "goldmaster's own interpreter"
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))


@pytest.mark.skipif(
    not TOOLKIT.is_dir(), reason="needs the CUDA toolkit in /usr/local/cuda"
)
def test_toolkit_versions_agree() -> None:
    parts: list[Part] = []
    environ = {"PATH": os.environ["PATH"]}

    record = gpu.probe_toolkit(environ, parts)

    nvcc = subprocess.run(
        [str(TOOLKIT / "bin/nvcc"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    release = re.search(r"release (\d+\.\d+)", nvcc)
    assert release is not None
    assert record["status"] == "found"
    assert record["nvcc"]["release"] == release.group(1)
    assert record["headers"]["cuda_h"]["version"] == release.group(1)
    assert record["headers"]["cuda_runtime_api_h"]["version"] == release.group(1)
    assert record["home_resolved"] == str(TOOLKIT.resolve())
    assert "system/nvcc-version.txt" in [part.arcname for part in parts]


@pytest.mark.skipif(
    not TOOLKIT.is_dir(), reason="needs the CUDA toolkit in /usr/local/cuda"
)
def test_toolkit_home_missing_is_a_status(tmp_path: Path) -> None:
    environ = {"PATH": os.environ["PATH"], "CUDA_HOME": str(tmp_path / "cuda")}

    record = gpu.probe_toolkit(environ, [])

    assert record["home_chosen_by"] == "CUDA_HOME"
    assert record["status"] == "not-found"
    assert record["nvcc"]["status"] in ("ok", "not-found")


def test_cudnn_header_version(tmp_path: Path) -> None:
    header = tmp_path / "cudnn_version.h"
    header.write_text(CUDNN_VERSION_H)

    assert gpu.cudnn_header_version(header) == "9.1.0"
    assert gpu.cudnn_header_version(tmp_path / "missing.h") is None


def test_read_tensorflow_build_info_without_import(tmp_path: Path) -> None:
    path = tmp_path / "build_info.py"
    path.write_text(TENSORFLOW_BUILD_INFO)

    info = _cuda_probe.read_assignments(path, ("build_info",))["build_info"]

    assert info["cuda_version"] == "12.3"
    assert info["is_cuda_build"] is True
    assert info["cuda_compute_capabilities"][-1] == "compute_90"


def test_read_torch_version_py_without_import(tmp_path: Path) -> None:
    path = tmp_path / "version.py"
    path.write_text(TORCH_VERSION_PY)

    values = _cuda_probe.read_assignments(path, ("cuda", "hip", "git_version"))

    assert values == {
        "cuda": "12.1",
        "hip": None,
        "git_version": "63d5e9221bedd1546b7d364b5ce4171547db12a9",
    }


@pytest.mark.parametrize(
    ("tag", "cuda"),
    [("cu121", "12.1"), ("cu118", "11.8"), ("cu92", "9.2"), ("cpu", None)],
)
def test_cuda_from_wheel_tag(tag: str, cuda: str | None) -> None:
    assert _cuda_probe.cuda_from_tag(tag) == cuda


@pytest.mark.parametrize(
    ("code", "text"), [(90100, "9.1.0"), (8902, "8.9.2"), (21805, "2.18.5")]
)
def test_version_code_text(code: int, text: str) -> None:
    assert _cuda_probe.version_code_text(code) == text


@pytest.mark.parametrize(
    ("name", "cuda"),
    [("cupy-cuda12x", "12.x"), ("cupy-cuda118", "11.8"), ("cupy-cuda102", "10.2")],
)
def test_cupy_cuda_from_distribution_name(name: str, cuda: str) -> None:
    facts = _cuda_probe.cupy_facts({name: wheel(name, "13.3.0")})

    assert facts is not None
    assert facts["cuda_build_version"]["value"] == cuda


def test_jax_plugins_give_cuda_major() -> None:
    dists = {
        "jax": wheel("jax", "0.4.30"),
        "jaxlib": wheel("jaxlib", "0.4.30"),
        "jax-cuda12-plugin": wheel("jax-cuda12-plugin", "0.4.30"),
        "jax-cuda12-pjrt": wheel("jax-cuda12-pjrt", "0.4.30"),
    }

    facts = _cuda_probe.jax_facts(dists)

    assert facts["jaxlib"] == "0.4.30"
    assert [p["cuda_major"] for p in facts["cuda_plugins"]] == [12, 12]


def test_runtime_candidates_include_tensorflow_and_torch() -> None:
    cuda = {
        "frameworks": {
            "torch": {
                "cuda_build_version": {"value": "12.1", "source": "torch.version.cuda"}
            },
            "tensorflow": {
                "build_info": {
                    "is_cuda_build": True,
                    "cuda_version": "12.3",
                    "source": "bi",
                }
            },
        }
    }

    assert gpu.runtime_version(cuda) == {
        "value": "12.3",
        "source": "bi",
        "candidates": [
            {"value": "12.1", "source": "torch.version.cuda"},
            {"value": "12.3", "source": "bi"},
        ],
    }


@pytest.mark.slow
@pytest.mark.skipif(
    not TORCH_WHEEL.exists(), reason="needs the local PyTorch CPU wheel"
)
def test_environment_probe_imports_real_torch(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(TORCH_WHEEL)],
        check=True,
    )
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "typing-extensions",
            "sympy",
            "networkx",
            "jinja2",
            "fsspec",
            "filelock",
        ],
        check=True,
    )

    interpreter, report = gpu.run_environment_probe(python, dict(os.environ))

    assert interpreter["status"] == "ok"
    assert report is not None
    torch = report["frameworks"]["torch"]
    assert torch["version"] == "2.13.0+cpu"
    assert torch["import"] == {"status": "ok"}
    assert torch["cuda_build_version"] == {
        "value": None,
        "source": "torch.version.cuda",
    }
    assert torch["arch_list"]["value"] == []
