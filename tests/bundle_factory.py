"""Build small real bundles with goldmaster's own capture, and run the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from goldmaster.capture import CaptureOptions, capture
from goldmaster.cli import cli


def make_code(
    folder: Path, files: dict[str, str] | None = None, git: bool = False
) -> Path:
    """Write a code folder; with ``git``, commit it in a new repository."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {"train.py": "print('train')\n"}).items():
        (folder / name).write_text(text)
    if git:
        if not (folder / ".git").exists():
            _git(folder, "init", "-q", "-b", "main")
        _git(folder, "add", "-A")
        _git(folder, "commit", "-q", "-m", "snapshot", "--allow-empty")
    return folder


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def make_bundle(
    folder: Path,
    name: str = "demo",
    version: str = "1.0",
    *,
    weights: dict[str, bytes] | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    code: Path | None = None,
) -> Path:
    """Capture a bundle of ``weights`` (random bytes by default, so that every
    bundle has its own blobs) and return its path."""
    model = folder / f"model-{name}-{version}"
    model.mkdir(parents=True)
    for relative, data in (weights or {"model.bin": os.urandom(200_000)}).items():
        (model / relative).parent.mkdir(parents=True, exist_ok=True)
        (model / relative).write_bytes(data)
    metrics_file = None
    if metrics is not None:
        metrics_file = folder / f"metrics-{name}-{version}.json"
        metrics_file.write_text(json.dumps(metrics))
    result = capture(
        CaptureOptions(
            model=model,
            output=folder / "bundles",
            name=name,
            version=version,
            code=code or make_code(folder / f"code-{name}-{version}"),
            params=params or {},
            metrics_file=metrics_file,
            env=False,
        )
    )
    return result.bundle


def run_cli(*args: str | Path) -> Result:
    """Run the goldmaster command line in this process."""
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def run_json(*args: str | Path) -> dict[str, Any]:
    """Run a command with --json, assert it succeeded, and return its output."""
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
