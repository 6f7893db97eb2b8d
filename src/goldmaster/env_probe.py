"""Find the interpreter to capture and run the stdlib-only probe inside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goldmaster.errors import EnvironmentCaptureError
from goldmaster.redact import redact_text

PROBE_TIMEOUT_S = 120
PROBE_SCRIPT = Path(__file__).with_name("_envprobe.py")


def venv_python(prefix: Path) -> Path:
    if os.name == "nt":
        return prefix / "Scripts" / "python.exe"
    return prefix / "bin" / "python"


def find_target_python(python: Path | None, environ: Mapping[str, str]) -> Path:
    """Pick the interpreter to capture.

    In order: ``python`` (an interpreter or an environment folder), the
    active virtual environment, the active conda environment, then
    ``python3`` on PATH.
    """
    if python is not None:
        candidate = venv_python(python) if python.is_dir() else python
        if not candidate.exists():
            raise EnvironmentCaptureError(
                f"Python interpreter not found: {python}",
                "pass an interpreter or an environment folder to --python",
            )
        return candidate
    for variable in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        if environ.get(variable):
            candidate = venv_python(Path(environ[variable]))
            if candidate.exists():
                return candidate
    found = shutil.which("python3", path=environ.get("PATH")) or shutil.which(
        "python", path=environ.get("PATH")
    )
    if found is None:
        raise EnvironmentCaptureError(
            "no Python interpreter found: no active environment and no python3 on PATH",
            "pass the training interpreter with --python",
        )
    return Path(found)


def run_probe(python: Path, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Run the stdlib-only probe under ``python`` and return its report."""
    try:
        result = subprocess.run(
            [str(python), "-I", str(PROBE_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentCaptureError(
            f"the environment probe timed out after {timeout:.0f} s in {python}",
            "check that the interpreter starts",
        ) from exc
    except OSError as exc:
        raise EnvironmentCaptureError(
            f"could not run the Python interpreter {python}: {exc.strerror}",
            "pass a working interpreter with --python",
        ) from exc
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentCaptureError(
            f"the environment probe failed in {python}: {redact_text(last)}",
            "check that it is Python 3.7 or later",
        )
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise EnvironmentCaptureError(
            f"the environment probe in {python} printed no valid JSON",
            "check that nothing in the interpreter's startup writes to stdout",
        ) from exc
