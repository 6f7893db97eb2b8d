"""Rebuild a captured Python environment under a restore destination.

A virtual environment is created at DEST/.venv with an interpreter of the
captured major.minor version and filled from the bundle's vendored wheels
(no network) or from the recorded indexes (exact pins). Index credentials
come from environment variables and reach pip only through its own
environment, never a file, a command line or a log.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goldmaster.env_indexes import restore_url
from goldmaster.env_probe import run_probe, venv_python
from goldmaster.env_records import CONDA_INSTALLERS, LOCK_ARCNAME, classify_origin
from goldmaster.errors import EnvironmentCaptureError
from goldmaster.redact import redact_text

VENV_TIMEOUT_S = 600
INSTALL_TIMEOUT_S = 3600
CONDA_TOOLS = ("micromamba", "mamba", "conda")
CONDA_SCRIPT = "env/conda-restore.sh"
_VERSION_CHECK = (
    "import sys; print('%d.%d' % sys.version_info[:2], sys.implementation.name)"
)


def _interpreter_version(candidate: str) -> tuple[str, str] | None:
    try:
        result = subprocess.run(
            [candidate, "-c", _VERSION_CHECK],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = result.stdout.split()
    return (words[0], words[1]) if result.returncode == 0 and len(words) == 2 else None


def _candidates(needed: str, interpreter: Mapping[str, Any]) -> list[str]:
    names = [interpreter.get("base_executable"), shutil.which(f"python{needed}")]
    names.append(sys.executable)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    pattern = os.path.join(
        pyenv_root, "versions", f"{needed}.*", "bin", f"python{needed}"
    )
    names += sorted(glob.glob(pattern), reverse=True)
    names += [f"/usr/bin/python{needed}", f"/usr/local/bin/python{needed}"]
    names.append(shutil.which("python3"))
    unique: list[str] = []
    for name in names:
        if name and name not in unique:
            unique.append(name)
    return unique


def find_python(explicit: str | None, interpreter: Mapping[str, Any]) -> str:
    """Find an interpreter with the captured major.minor version and implementation."""
    needed = interpreter["major_minor"]
    implementation = interpreter.get("implementation") or "cpython"
    if explicit is not None:
        found = _interpreter_version(explicit)
        if found is None:
            raise EnvironmentCaptureError(
                f"could not run the Python interpreter {explicit}",
                f"pass a working Python {needed} with --python",
            )
        if found != (needed, implementation):
            raise EnvironmentCaptureError(
                f"{explicit} is {found[1]} {found[0]}, but the bundle needs "
                f"{implementation} {needed}",
                f"pass a Python {needed} interpreter with --python",
            )
        return explicit
    for candidate in _candidates(needed, interpreter):
        if _interpreter_version(candidate) == (needed, implementation):
            return candidate
    raise EnvironmentCaptureError(
        f"no Python {needed} interpreter found; the bundle was captured with "
        f"{implementation} {interpreter.get('version', needed)}",
        f"install Python {needed} or pass one with --python",
    )


def create_venv(python: str, venv: Path) -> Path:
    """Create a virtual environment with pip at ``venv`` and return its interpreter."""
    if venv.exists():
        raise EnvironmentCaptureError(
            f"{venv} already exists",
            "remove it or restore into a new destination",
        )
    try:
        result = subprocess.run(
            [python, "-m", "venv", str(venv)],
            capture_output=True,
            text=True,
            timeout=VENV_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentCaptureError(
            f"could not create a virtual environment at {venv}: {exc}"
        ) from exc
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentCaptureError(
            f"could not create a virtual environment at {venv} with {python}: {last}"
        )
    return venv_python(venv)


class PipInstaller:
    """Run pip in the restored environment, keeping credentials out of every output."""

    def __init__(self, python: Path, dest: Path) -> None:
        self.python = python
        self.dest = dest
        self.secrets: list[str] = []

    def offline_env(self) -> dict[str, str]:
        """Return an environment in which pip reads no configuration and no index."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PIP_")
        }
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        return env

    def online_env(self, indexes: list[str]) -> dict[str, str]:
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        if indexes:
            env["PIP_INDEX_URL"] = indexes[0]
            env["PIP_EXTRA_INDEX_URL"] = " ".join(indexes[1:])
        return env

    def install(self, args: list[str], env: dict[str, str]) -> None:
        command = [str(self.python), "-m", "pip", "install", "--no-deps", *args]
        try:
            result = subprocess.run(
                command,
                cwd=self.dest,
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnvironmentCaptureError(
                f"pip install in {self.python} did not finish: {exc}"
            ) from exc
        if result.returncode != 0:
            raise EnvironmentCaptureError(
                f"pip install in the restored environment failed: {self._scrub(result.stderr)}"
            )

    def _scrub(self, text: str) -> str:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        errors = (
            [line for line in lines if line.startswith("ERROR")]
            or lines
            or ["no output"]
        )
        message = redact_text(errors[-1])
        for secret in self.secrets:
            message = message.replace(secret, "REDACTED")
        return message


def recorded_indexes(
    env: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[list, list]:
    """Return the index URLs to install from, credentials filled in, and unset variables."""
    effective = env["index"]["effective"]
    urls = [effective["index_url"], *effective["extra_index_urls"]]
    for source in env["index"]["sources"]:
        option = source.get("option")
        from_lockfile = source.get("source") not in ("pip.conf", "environment")
        is_index = option in ("index-url", "extra-index-url")
        if is_index and from_lockfile and source["url"] not in urls:
            urls.append(source["url"])
    resolved, unset = [], []
    for url in urls:
        full, variable = restore_url(url, environ)
        resolved.append(full)
        if variable and variable not in unset:
            unset.append(variable)
    return resolved, unset


def _install_from_bundle(
    installer: PipInstaller, env: Mapping[str, Any], offline: bool | None
) -> tuple[str, list[str]]:
    """Install the lock and return the mode used and notices."""
    wheels = env["wheels"]
    lock = LOCK_ARCNAME
    notices: list[str] = []
    if wheels["vendored"]:
        args = [
            "--no-index",
            "--find-links",
            "env/wheels",
            "--require-hashes",
            "-r",
            lock,
        ]
        installer.install(args, installer.offline_env())
        missing = wheels["missing"]
        if missing and offline is not True:
            urls, unset = recorded_indexes(env, os.environ)
            installer.secrets = [url for url in urls if "@" in url]
            pins = [f"{item['name']}=={item['version']}" for item in missing]
            installer.install(pins, installer.online_env(urls))
            notices += _unset_notices(unset)
        used_index = bool(missing) and offline is not True
        return ("mixed" if used_index else "offline"), notices
    if offline:
        raise EnvironmentCaptureError(
            "the bundle has no vendored wheels, so it cannot be restored without an index",
            "restore without --no-index, or capture again with --wheels",
        )
    urls, unset = recorded_indexes(env, os.environ)
    installer.secrets = [url for url in urls if "@" in url]
    installer.install(
        ["--find-links", "env/wheels", "-r", lock], installer.online_env(urls)
    )
    return "online", _unset_notices(unset)


def _unset_notices(unset: list[str]) -> list[str]:
    return [
        f"{name} is not set, so its index was used without credentials"
        for name in unset
    ]


def compare_distributions(
    captured: list[dict[str, Any]], restored_probe: dict[str, Any], code_dir: Path
) -> list[dict[str, Any]]:
    """List every difference in presence, version and origin kind."""
    expected = {
        _key(item["name"]): item
        for item in captured
        if (item.get("installer") or "").lower() not in CONDA_INSTALLERS
    }
    found = {dist["key"]: dist for dist in restored_probe["distributions"]}
    differences = []
    for key in sorted(set(expected) | set(found)):
        differences += _differences_for(expected.get(key), found.get(key), code_dir)
    return differences


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _differences_for(captured, restored, code_dir: Path) -> list[dict[str, Any]]:
    if restored is None:
        return [_difference(captured["name"], "presence", captured["version"], None)]
    if captured is None:
        return [_difference(restored["name"], "presence", None, restored["version"])]
    result = []
    if captured["version"] != restored["version"]:
        result.append(
            _difference(
                captured["name"], "version", captured["version"], restored["version"]
            )
        )
    before = captured["origin"]["kind"]
    after = classify_origin(restored, code_dir)["kind"]
    if _origin_group(before) != _origin_group(after):
        item = _difference(captured["name"], "origin", before, after)
        if captured.get("vendored") and after == "index":
            item["note"] = "installed from the wheel vendored at capture"
        result.append(item)
    return result


def _origin_group(kind: str) -> str:
    return "index" if kind in ("index", "unknown") else kind


def _difference(name: str, field: str, captured: Any, restored: Any) -> dict[str, Any]:
    return {"name": name, "field": field, "captured": captured, "restored": restored}


def _conda_command(tool: str, prefix: Path, spec: Path) -> list[str]:
    return [tool, "create", "--yes", "--prefix", str(prefix), "--file", str(spec)]


def restore_conda(dest: Path, env: Mapping[str, Any]) -> dict[str, Any]:
    """Write the conda restore command and run it when a conda tool is on PATH."""
    prefix = dest / ".conda"
    spec = dest / env["conda"]["explicit_spec"]
    tool = next((name for name in CONDA_TOOLS if shutil.which(name)), None)
    command = _conda_command(tool or "conda", prefix, spec)
    script = dest / CONDA_SCRIPT
    script.write_text(
        "#!/bin/sh\nset -e\n" + shlex.join(command) + "\n", encoding="utf-8"
    )
    script.chmod(0o755)

    result: dict[str, Any] = {
        "command": shlex.join(command),
        "script": CONDA_SCRIPT,
        "ran": False,
    }
    if tool is None:
        result["note"] = (
            "no conda, mamba or micromamba on PATH; run the script to restore"
        )
        return result
    try:
        run = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentCaptureError(f"{tool} create did not finish: {exc}") from exc
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentCaptureError(
            f"{tool} create failed: {redact_text(last)}",
            f"fix the cause and run {script}",
        )
    result["ran"] = True
    result["prefix"] = str(prefix)
    return result


def restore_environment(
    dest: Path, manifest: dict[str, Any], *, python: str | None, offline: bool | None
) -> dict[str, Any]:
    """Rebuild the environment recorded in ``manifest`` under ``dest``.

    ``dest`` is an extracted bundle (DEST/env/, DEST/code/). ``offline``
    True installs only from vendored wheels, False allows indexes for what
    was not vendored, None uses the wheels when the bundle has them. Returns
    the interpreter, the install mode, notices and every difference between
    the restored and the captured distributions.
    """
    dest = dest.resolve()
    env = manifest.get("environment")
    if not env:
        raise EnvironmentCaptureError(
            "the bundle has no environment section because it was captured with --no-env",
            "restore with --no-env",
        )
    result: dict[str, Any] = {"notices": [], "conda": None}
    if env.get("conda"):
        result["conda"] = restore_conda(dest, env)
        if not result["conda"]["ran"]:
            result["notices"].append(result["conda"]["note"])
            return result
        target = venv_python(Path(result["conda"]["prefix"]))
    else:
        base = find_python(python, env["interpreter"])
        target = create_venv(base, dest / ".venv")
        result["base_python"] = base
    installer = PipInstaller(target, dest)
    mode, notices = _install_from_bundle(installer, env, offline)
    probe = run_probe(target)
    result.update(
        python=str(target),
        python_version=probe["interpreter"]["version"],
        mode=mode,
        differences=compare_distributions(env["distributions"], probe, dest / "code"),
    )
    result["notices"] += notices
    return result
