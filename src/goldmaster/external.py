"""Run external commands for the probes: always with a timeout, never raising."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT_S = 30.0

# Outputs longer than this are cut before they reach the manifest or the bundle,
# so a runaway tool cannot make a capture unbounded.
MAX_OUTPUT_CHARS = 4_000_000


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one external command.

    ``status`` is ``ok`` (exit status 0), ``failed`` (another exit status),
    ``not-found`` (no such executable), ``timeout`` or ``error`` (the process
    could not be started). ``reason`` explains the status in words when it
    is not ``ok``.
    """

    argv: tuple[str, ...]
    status: str
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def output(self) -> str:
        """Return stdout and stderr together, as a terminal would show them."""
        if self.stdout and self.stderr:
            return self.stdout.rstrip("\n") + "\n" + self.stderr
        return self.stdout or self.stderr

    def describe(self) -> dict[str, object]:
        """Return the status as plain data for the manifest."""
        record: dict[str, object] = {
            "command": " ".join(self.argv),
            "status": self.status,
        }
        if self.returncode is not None:
            record["exit_status"] = self.returncode
        if self.reason:
            record["reason"] = self.reason
        return record


def which(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the path of executable ``name`` on the PATH of ``environ``."""
    path = (environ if environ is not None else os.environ).get("PATH", os.defpath)
    return shutil.which(name, path=path)


def run_command(
    argv: Sequence[str | Path],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CommandResult:
    """Run ``argv`` and capture its output; report every failure as a status.

    The executable is looked up on the PATH of ``environ``, which is also the
    environment of the child process. Output is decoded as UTF-8 with
    replacement characters, because driver tools do not promise an encoding.
    """
    args = tuple(str(part) for part in argv)
    env = dict(environ) if environ is not None else None
    executable = args[0] if os.sep in args[0] else which(args[0], environ)
    if executable is None:
        return CommandResult(args, "not-found", reason=f"{args[0]} is not on PATH")

    try:
        completed = subprocess.run(
            (executable, *args[1:]),
            capture_output=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        reason = f"{args[0]} did not finish within {timeout:g} seconds"
        return CommandResult(args, "timeout", reason=reason)
    except FileNotFoundError:
        return CommandResult(args, "not-found", reason=f"{executable} does not exist")
    except OSError as exc:
        reason = f"{executable} could not be started: {exc.strerror or exc}"
        return CommandResult(args, "error", reason=reason)

    stdout = _decode(completed.stdout)
    stderr = _decode(completed.stderr)
    if completed.returncode == 0:
        return CommandResult(args, "ok", 0, stdout, stderr)

    first_line = next((ln for ln in (stdout + stderr).splitlines() if ln.strip()), "")
    reason = f"{args[0]} exited with status {completed.returncode}"
    if first_line:
        reason += f": {first_line.strip()}"
    return CommandResult(args, "failed", completed.returncode, stdout, stderr, reason)


def _decode(raw: bytes) -> str:
    return raw[:MAX_OUTPUT_CHARS].decode("utf-8", errors="replace")
