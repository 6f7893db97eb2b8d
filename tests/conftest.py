"""Fixtures shared by the core tests: an isolated git setup, a small model with
its code, a bundle captured from them, and a command-line runner."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from goldmaster.cli import cli
from helpers import git_repo, plain_code, run_capture, small_model

EPOCH = "1700000000"


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's git configuration, colour settings and any enclosing
    repository out of the tests."""
    gitconfig = tmp_path / "gitconfig"
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
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run
