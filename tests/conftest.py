"""Fixtures shared by the test files: fake nvidia-smi scenarios, a venv with
small CUDA wheels, an isolated git setup, small models and bundles, and a
command-line runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from goldmaster.cli import cli
from helpers import git_repo, plain_code, run_capture, small_model

pytest_plugins = ["registry_fixtures", "engine_fixtures"]

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

EPOCH = "1700000000"


@pytest.fixture(autouse=True)
def isolated_environment(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keep the user's git configuration, colour settings and any enclosing
    repository out of the tests.

    The git configuration file lives outside ``tmp_path`` because several
    tests assert that ``tmp_path`` contains only the files they created.
    """
    gitconfig = tmp_path_factory.mktemp("gitconfig") / "gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test Author\n\temail = author@example.test\n"
        "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n"
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture
def sparse_folder(tmp_path: Path) -> Iterator[Path]:
    """Yield a folder for large sparse files, on tmpfs when there is one.

    Reading a hole on tmpfs returns the shared zero page. On ext4 a first
    read fills the page cache with zeroed pages, which is much slower and
    evicts other processes' cached files.
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="goldmaster-test-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@dataclass
class Inputs:
    """A small model folder, its header facts and a code folder."""

    model: Path
    facts: dict[str, Any]
    code: Path
    git: dict[str, Any] | None


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    model = tmp_path / "tiny-bert"
    facts = small_model(model)
    code = plain_code(tmp_path / "code")
    return Inputs(model, facts, code, None)


@pytest.fixture
def git_inputs(tmp_path: Path) -> Inputs:
    model = tmp_path / "tiny-bert"
    facts = small_model(model)
    code = tmp_path / "repo"
    return Inputs(model, facts, code, git_repo(code))


@pytest.fixture
def bundle(inputs: Inputs, tmp_path: Path) -> Path:
    """A bundle of the small model, written with a fixed timestamp."""
    result = run_capture(inputs.model, inputs.code, tmp_path / "out", version="1.0")
    return result.bundle


Invoke = Callable[..., Result]


@pytest.fixture
def invoke() -> Invoke:
    """Run the goldmaster command line in-process with stdout and stderr kept apart."""

    def run(*args: str | Path) -> Result:
        words = [str(a) for a in args]
        # Bundles of the core tests leave the Python environment out, so that
        # restoring them does not rebuild goldmaster's own environment.
        if words[:1] == ["capture"] and not {"--env", "--no-env", "--python"} & set(words):
            words.insert(1, "--no-env")
        return CliRunner().invoke(cli, words, catch_exceptions=False)

    return run


@pytest.fixture(scope="module")
def tiny_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment without pip that has ``tinymodel`` installed."""
    from image_helpers import tiny_model_venv

    return tiny_model_venv(tmp_path_factory.mktemp("tiny-venv"))


@pytest.fixture
def isolated_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep this machine's pip configuration out of the captured environment."""
    for key in list(os.environ):
        if key.startswith(("PIP_", "UV_")) or key in ("VIRTUAL_ENV", "PYTHONPATH"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
