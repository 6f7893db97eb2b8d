"""Run one golden-output check command, on this host or in a container image.

A check command runs through ``/bin/sh -c`` with the code folder as working
directory. GOLDMASTER_MODEL_DIR names the model folder (the folder that contains
the file when the model is one file) and GOLDMASTER_MODEL_PATH the model file
or folder itself. The chosen Python environment's ``bin`` folder comes first
on PATH and VIRTUAL_ENV names the environment.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .container import run_in_image
from .dockerfile import CODE_PATH, VENV_PATH, WEIGHTS_PATH
from .errors import InputError, UsageError
from .redact import redact_text

COMPLETED = "completed"
TIMED_OUT = "timed_out"
NOT_STARTED = "not_started"

# Exit statuses with which POSIX shells report a command they could not run:
# 126 found but not executable, 127 not found.
SHELL_CANNOT_EXECUTE = 126
SHELL_NOT_FOUND = 127

STDERR_TAIL_LINES = 20
STDERR_TAIL_CHARS = 4000
# Time left to a killed process group to close its pipes before they are dropped.
KILL_GRACE_SECONDS = 5.0

# Folder in the container that receives copies of the check's output files.
IMAGE_OUTPUT_MOUNT = "/goldmaster-check-output"
# Part of the hidden name that an existing output file gets while a check runs.
ASIDE_MARK = ".goldmaster-check-aside-"


@dataclass(frozen=True)
class CheckCommand:
    """A check command: the shell command, the files it writes, and its time limit."""

    name: str
    command: str
    outputs: list[str]
    timeout: float


@dataclass
class CheckRun:
    """The result of one run of a check command.

    ``outputs`` maps each output path to its content, or to None when the run
    did not write it.
    """

    status: str
    exit_status: int | None
    stdout: bytes
    stderr_tail: str
    duration: float
    outputs: dict[str, bytes | None] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class RunContext:
    """The folders and Python environment of check commands on this host."""

    workdir: Path
    model_dir: Path
    model_path: Path
    bin_dir: Path | None
    venv: Path | None

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """Return ``base`` with the model variables and the Python environment set."""
        env = dict(base)
        env["GOLDMASTER_MODEL_DIR"] = str(self.model_dir)
        env["GOLDMASTER_MODEL_PATH"] = str(self.model_path)
        if self.bin_dir is not None:
            env["PATH"] = os.pathsep.join(
                [str(self.bin_dir), env.get("PATH") or os.defpath]
            )
        if self.venv is not None:
            env["VIRTUAL_ENV"] = str(self.venv)
        env.pop("PYTHONHOME", None)
        return env

    def describe(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "model_dir": str(self.model_dir),
            "python_bin": str(self.bin_dir) if self.bin_dir else None,
            "virtual_env": str(self.venv) if self.venv else None,
        }


def model_folders(model: Path) -> tuple[Path, Path]:
    """Return GOLDMASTER_MODEL_DIR and GOLDMASTER_MODEL_PATH for a model file or folder."""
    path = model.absolute()
    return (path.parent if path.is_file() else path), path


def find_python(
    explicit: Path | None, environ: Mapping[str, str]
) -> tuple[Path | None, Path | None]:
    """Return the ``bin`` folder and virtual environment that checks run with.

    The order is the interpreter given explicitly, then VIRTUAL_ENV, then
    ``python3`` on PATH. The virtual environment is None when the interpreter
    is not in one. Raises InputError when the explicit interpreter is missing.
    """
    if explicit is not None:
        found = shutil.which(str(explicit), path=environ.get("PATH"))
        if found is None:
            raise InputError(
                f"Python interpreter not found: {explicit}",
                "pass an existing path to --python",
            )
        # No resolve(): a virtual environment's python is a link out of it.
        bin_dir = Path(found).absolute().parent
        return bin_dir, _venv_of(bin_dir)
    if environ.get("VIRTUAL_ENV"):
        venv = Path(environ["VIRTUAL_ENV"]).absolute()
        return venv / "bin", venv
    found = shutil.which("python3", path=environ.get("PATH"))
    if found is None:
        return None, None
    bin_dir = Path(found).absolute().parent
    return bin_dir, _venv_of(bin_dir)


def _venv_of(bin_dir: Path) -> Path | None:
    return bin_dir.parent if (bin_dir.parent / "pyvenv.cfg").is_file() else None


def check_output_path(path: str) -> str:
    """Return ``path`` as a clean relative POSIX path, or raise UsageError.

    Output files are named relative to the code folder, and must stay inside
    it so that they can be found again in a restored folder or a container.
    """
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or str(pure) == ".":
        raise UsageError(
            f"invalid check output path {path!r}",
            "name a file relative to the code folder, without '..'",
        )
    return pure.as_posix()


def run_command(
    check: CheckCommand, context: RunContext, environ: Mapping[str, str] | None = None
) -> CheckRun:
    """Run ``check`` on this host and collect its output.

    Existing output files are moved aside during the run, so that only files
    the command writes count, and are put back when it writes none. The
    command gets its own process group, which is killed when the time limit
    passes and after the command ends, so no child outlives the check.
    """
    env = context.environment(os.environ if environ is None else environ)
    targets = {path: context.workdir / path for path in check.outputs}
    aside: dict[str, Path | None] = {}
    try:
        for path, target in targets.items():
            aside[path] = _move_aside(target)
        start = time.monotonic()
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", check.command],
                cwd=context.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            reason = f"cannot start /bin/sh in {context.workdir}: {exc.strerror}"
            return CheckRun(NOT_STARTED, None, b"", "", 0.0, reason=reason)
        stdout, stderr, timed_out = _communicate(process, check.timeout)
        duration = time.monotonic() - start
        outputs = {path: _read_output(target) for path, target in targets.items()}
    finally:
        for path, backup in aside.items():
            _put_back(targets[path], backup)
    return _classify(
        check, process.returncode, stdout, stderr, duration, timed_out, outputs
    )


def _communicate(
    process: subprocess.Popen[bytes], timeout: float
) -> tuple[bytes, bytes, bool]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        return stdout, stderr, False
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        try:
            stdout, stderr = process.communicate(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            # A process outside the group keeps the pipes open.
            process.kill()
            stdout, stderr = b"", b""
        return stdout, stderr, True
    finally:
        _kill_group(process.pid)
        if process.poll() is None:
            process.kill()
            process.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _move_aside(target: Path) -> Path | None:
    """Rename an existing output file to a hidden name beside it and return that name."""
    if not target.is_file():
        return None
    backup = target.with_name(f".{target.name}{ASIDE_MARK}{os.getpid()}")
    try:
        os.replace(target, backup)
    except OSError as exc:
        raise InputError(
            f"cannot move the existing check output {target} aside: {exc.strerror}",
            "make the folder writable, or remove the file",
        ) from exc
    return backup


def _put_back(target: Path, backup: Path | None) -> None:
    """Drop the moved-aside file when the run wrote a new one, else restore it."""
    if backup is None:
        return
    if target.exists() or target.is_symlink():
        backup.unlink(missing_ok=True)
    else:
        os.replace(backup, target)


# NOTE: stdout and output files are held in memory, which suits small golden
# outputs such as embeddings of a few inputs, not outputs of many gigabytes.
def _read_output(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None


def _classify(
    check: CheckCommand,
    returncode: int | None,
    stdout: bytes,
    stderr: bytes,
    duration: float,
    timed_out: bool,
    outputs: dict[str, bytes | None],
) -> CheckRun:
    tail = stderr_tail(stderr)
    run = CheckRun(COMPLETED, returncode, stdout, tail, round(duration, 3), outputs)
    if timed_out:
        run.status = TIMED_OUT
        run.exit_status = None
        run.reason = f"timed out after {check.timeout:g} s"
    elif returncode in (SHELL_CANNOT_EXECUTE, SHELL_NOT_FOUND):
        run.status = NOT_STARTED
        what = (
            "command not found" if returncode == SHELL_NOT_FOUND else "not executable"
        )
        last = tail.splitlines()[-1] if tail else ""
        run.reason = f"exit status {returncode}, {what}"
        run.reason += f": {last}" if last else ""
    return run


def stderr_tail(stderr: bytes) -> str:
    """Return the last lines of ``stderr`` as text, with URL credentials removed."""
    text = stderr.decode("utf-8", "replace")
    tail = "\n".join(text.splitlines()[-STDERR_TAIL_LINES:])
    return redact_text(tail[-STDERR_TAIL_CHARS:])


def describe_exit(status: int | None) -> str:
    if status is None:
        return "no exit status"
    if status < 0:
        return f"killed by signal {-status}"
    return f"exit status {status}"


# --- container image ---------------------------------------------------------------


def run_in_image_command(
    check: CheckCommand,
    image: str,
    subdir: str,
    model_file: str | None,
    weights: Path | None,
) -> CheckRun:
    """Run ``check`` in a new container of ``image`` and collect its output.

    The image contains the code, the virtual environment and usually the
    weights; ``weights`` is mounted read-only over the image's weights folder
    when the image was built without them. The output files are copied to a
    mounted folder after the command, and removed before it, so that files
    baked into the image do not count as written.
    """
    workdir = str(PurePosixPath(CODE_PATH) / subdir)
    model_path = (
        str(PurePosixPath(WEIGHTS_PATH) / model_file) if model_file else WEIGHTS_PATH
    )
    env = {
        "GOLDMASTER_MODEL_DIR": WEIGHTS_PATH,
        "GOLDMASTER_MODEL_PATH": model_path,
        "VIRTUAL_ENV": VENV_PATH,
        "PATH": f"{VENV_PATH}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    with tempfile.TemporaryDirectory(prefix="goldmaster-check-") as folder:
        mounts = [f"{folder}:{IMAGE_OUTPUT_MOUNT}:rw"]
        if weights is not None:
            mounts.append(f"{weights.absolute()}:{WEIGHTS_PATH}:ro")
        start = time.monotonic()
        status, stdout, stderr = run_in_image(
            image,
            ["/bin/sh", "-c", image_script(check)],
            workdir=workdir,
            env=env,
            mounts=mounts,
            timeout=check.timeout,
        )
        duration = time.monotonic() - start
        outputs = {path: _read_output(Path(folder) / path) for path in check.outputs}
    return _classify(check, status, stdout, stderr, duration, status is None, outputs)


def image_script(check: CheckCommand, mount: str = IMAGE_OUTPUT_MOUNT) -> str:
    """Return the shell script that runs ``check`` in a container, copies its
    output files into ``mount`` and exits with the command's status."""
    quoted = [shlex.quote(path) for path in check.outputs]
    lines = []
    if quoted:
        lines.append(f"rm -f -- {' '.join(quoted)}")
    lines += [f"/bin/sh -c {shlex.quote(check.command)}", "status=$?"]
    for path, name in zip(check.outputs, quoted):
        parent = shlex.quote(f"{mount}/{PurePosixPath(path).parent}")
        target = shlex.quote(f"{mount}/{path}")
        lines.append(
            f"if [ -f {name} ]; then mkdir -p {parent} && cp {name} {target}; fi"
        )
    lines.append('exit "$status"')
    return "\n".join(lines)
