"""Capture the Python environment that trained a model, and rebuild it.

The target interpreter is probed from the inside: goldmaster runs a
stdlib-only script under it and records the interpreter, every installed
distribution with its origin, the index configuration (credentials
replaced), conda records and lockfiles. With ``wheels=True`` the exact
distribution files go into the bundle so that a restore needs no network.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goldmaster import __version__
from goldmaster.env_conda import (
    ENVIRONMENT_ARCNAME,
    EXPLICIT_ARCNAME,
    conda_platform,
    environment_yml,
    explicit_spec,
    read_conda_records,
)
from goldmaster.env_indexes import effective_indexes, pip_sources
from goldmaster.env_lockfiles import copy_lockfiles
from goldmaster.env_probe import find_target_python, run_probe
from goldmaster.env_records import (
    LOCK_ARCNAME,
    WHEELS_ARCDIR,
    classify_origin,
    freeze_line,
    lock_text,
    needs_carried_source,
)
from goldmaster.env_restore import restore_environment
from goldmaster.env_wheels import Vendored, Vendorer, make_runner
from goldmaster.errors import EnvironmentCaptureError
from goldmaster.parts import Part, Section
from goldmaster.redact import redact_text

__all__ = [
    "capture_environment",
    "find_target_python",
    "restore_environment",
    "run_probe",
]

FREEZE_TIMEOUT_S = 300
FREEZE_ARCNAME = "env/pip-freeze.txt"
PROBE_ARCNAME = "env/probe.json"

_INTERPRETER_FIELDS = (
    "version",
    "major_minor",
    "implementation",
    "executable",
    "base_executable",
    "prefix",
    "base_prefix",
    "is_venv",
    "platform",
    "system",
    "machine",
    "glibc",
    "soabi",
    "tags",
)


def _pip_freeze(python: Path, has_pip: bool, entries: list[dict]) -> tuple[str, str]:
    """Return ``pip freeze --all`` of the target and which tool wrote it."""
    if has_pip:
        try:
            result = subprocess.run(
                [str(python), "-m", "pip", "freeze", "--all"],
                capture_output=True,
                text=True,
                timeout=FREEZE_TIMEOUT_S,
                env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            result = None
        if result is not None and result.returncode == 0:
            return redact_text(result.stdout), "pip"
    lines = [freeze_line(entry["dist"], entry["origin"]) for entry in entries]
    return "\n".join(lines) + "\n", "goldmaster"


def _external_code(probe: dict[str, Any], environ: Mapping[str, str]) -> list[dict]:
    """List paths outside the environment that .pth files or PYTHONPATH add."""
    external = []
    for pth in probe["pth_files"]:
        for item in pth["paths"]:
            if item["external"]:
                external.append(
                    {
                        "source": pth["file"],
                        "path": item["path"],
                        "exists": item["exists"],
                    }
                )
    for entry in (environ.get("PYTHONPATH") or "").split(os.pathsep):
        if entry:
            external.append(
                {"source": "PYTHONPATH", "path": entry, "exists": Path(entry).exists()}
            )
    return external


def _vendor(
    probe: dict, entries: list[dict], python: Path, wheels: bool, workdir: Path
) -> Vendored:
    """Vendor every pip distribution, or only local ones the bundle must carry."""
    selected = [
        (entry["dist"], entry["origin"])
        for entry in entries
        if entry["origin"]["kind"] != "conda"
        and (wheels or needs_carried_source(entry["origin"]))
    ]
    if not selected:
        return Vendored()
    runner = make_runner(probe, python)
    prefix = Path(probe["interpreter"]["prefix"])
    return Vendorer(runner, prefix, workdir / "vendor").vendor(selected)


def _distribution_record(entry: dict[str, Any]) -> dict[str, Any]:
    dist, wheel = entry["dist"], entry["wheel"]
    record = {
        "name": dist["name"],
        "version": dist["version"],
        "installer": dist["installer"],
        "requested": dist["requested"],
        "origin": entry["origin"],
        "vendored": None,
    }
    if wheel is not None:
        record["vendored"] = {
            "file": f"{WHEELS_ARCDIR}/{wheel['file']}",
            "sha256": wheel["sha256"],
            "size": wheel["size"],
            "method": wheel["method"],
        }
        for key in ("changed_files", "earlier_failures"):
            if key in wheel:
                record["vendored"][key] = wheel[key]
    return record


def _lock_header(indexes: dict[str, Any], vendored: bool) -> list[str]:
    if vendored:
        command = (
            "pip install --no-index --find-links env/wheels --require-hashes "
            "--no-deps -r env/requirements.lock"
        )
    else:
        command = (
            "pip install --find-links env/wheels --no-deps -r env/requirements.lock"
        )
    header = [
        f"Written by goldmaster {__version__}. Install from the bundle's root folder:",
        f"  {command}",
        "Indexes in effect at capture; credentials, replaced here, are read from",
        "GOLDMASTER_INDEX_AUTH_<HOST> variables by goldmaster restore:",
        f"  index-url {indexes['index_url']}",
    ]
    header += [f"  extra-index-url {url}" for url in indexes["extra_index_urls"]]
    return header


def _conda_block(
    prefix: Path, entries: list[dict], interpreter: dict
) -> tuple[dict | None, list[Part]]:
    if not (prefix / "conda-meta").is_dir():
        return None, []
    records = read_conda_records(prefix)
    conda_names = {record["name"] for record in records}
    on_top = [
        entry
        for entry in entries
        if entry["origin"]["kind"] != "conda"
        and entry["dist"]["key"] not in conda_names
    ]
    pip_lines = [f"{e['dist']['name']}=={e['dist']['version']}" for e in on_top]
    platform = conda_platform(records)
    parts = [
        Part(EXPLICIT_ARCNAME, data=explicit_spec(records, platform).encode()),
        Part(
            ENVIRONMENT_ARCNAME,
            data=environment_yml(prefix.name, records, pip_lines).encode(),
        ),
    ]
    block = {
        "packages": records,
        "platform": platform,
        "pip_on_top": sorted(entry["dist"]["name"] for entry in on_top),
        "explicit_spec": EXPLICIT_ARCNAME,
        "environment_yml": ENVIRONMENT_ARCNAME,
    }
    return block, parts


def _wheel_parts(vendored: Vendored) -> list[Part]:
    return [
        Part(f"{WHEELS_ARCDIR}/{info['file']}", source=info["path"])
        for info in sorted(vendored.files.values(), key=lambda info: info["file"])
    ]


def _missing_notice(missing: list[dict[str, str]]) -> str:
    names = ", ".join(f"{item['name']}=={item['version']}" for item in missing)
    return f"{len(missing)} distributions could not be vendored: {names}"


def capture_environment(
    python: Path | None,
    code_dir: Path | None,
    *,
    wheels: bool,
    strict: bool,
    workdir: Path,
) -> Section:
    """Capture the target interpreter's environment as the ``environment`` section.

    ``code_dir`` is the folder whose files the bundle carries under code/;
    local installs inside it are referenced there instead of being vendored.
    ``workdir`` keeps vendored files until the bundle is written. Raises
    EnvironmentCaptureError when the interpreter cannot be probed, or when
    ``strict`` is set and a distribution could not be vendored.
    """
    environ = os.environ
    workdir = workdir.resolve()
    target = find_target_python(python, environ)
    probe = run_probe(target)
    interpreter = probe["interpreter"]
    prefix = Path(interpreter["prefix"])

    entries = [
        {"dist": dist, "origin": classify_origin(dist, code_dir), "wheel": None}
        for dist in probe["distributions"]
    ]
    vendored = _vendor(probe, entries, target, wheels, workdir)
    for entry in entries:
        entry["wheel"] = vendored.files.get(entry["dist"]["key"])
    if strict and vendored.missing:
        details = "; ".join(
            f"{item['name']}: {item['reason']}" for item in vendored.missing
        )
        raise EnvironmentCaptureError(
            f"{len(vendored.missing)} distributions could not be vendored ({details})",
            "fix their sources or capture without --strict",
        )

    sources, effective = pip_sources(interpreter["prefix"], environ)
    lockfiles, lock_parts, lock_sources, notices = (
        copy_lockfiles(code_dir) if code_dir is not None else ([], [], [], [])
    )
    indexes = effective_indexes(effective)
    conda, conda_parts = _conda_block(prefix, entries, interpreter)
    freeze, freeze_tool = _pip_freeze(
        target, "pip" in {e["dist"]["key"] for e in entries}, entries
    )
    lock = lock_text(entries, wheels, _lock_header(indexes, wheels))
    probe_text = redact_text(json.dumps(probe, indent=2, sort_keys=True)) + "\n"

    kind = "venv" if interpreter["is_venv"] else "system"
    if conda:
        kind = "conda"
    data = {
        "interpreter": {field: interpreter.get(field) for field in _INTERPRETER_FIELDS},
        "kind": kind,
        "sys_path": [redact_text(entry) for entry in probe["sys_path"]],
        "distributions": [_distribution_record(entry) for entry in entries],
        "shadowed": probe["shadowed"],
        "external_code": _external_code(probe, environ),
        "index": {"effective": indexes, "sources": sources + lock_sources},
        "lockfiles": lockfiles,
        "conda": conda,
        "wheels": {
            "vendored": wheels,
            "count": len(vendored.files),
            "complete": wheels and not vendored.missing,
            "missing": sorted(vendored.missing, key=lambda item: item["name"].lower()),
        },
        "files": {
            "requirements_lock": LOCK_ARCNAME,
            "pip_freeze": FREEZE_ARCNAME,
            "pip_freeze_tool": freeze_tool,
            "probe": PROBE_ARCNAME,
        },
    }
    parts = [
        Part(LOCK_ARCNAME, data=lock.encode()),
        Part(FREEZE_ARCNAME, data=freeze.encode()),
        Part(PROBE_ARCNAME, data=probe_text.encode()),
        *conda_parts,
        *lock_parts,
        *_wheel_parts(vendored),
    ]
    if vendored.missing:
        notices.append(_missing_notice(vendored.missing))
    return Section("environment", data, parts, notices)
