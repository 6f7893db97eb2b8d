"""Read a conda environment's package records straight from conda-meta/.

No conda binary is needed: each installed package has one JSON record in
``PREFIX/conda-meta/``. From them goldmaster writes an ``@EXPLICIT`` spec,
which ``conda create --file`` installs exactly, and an environment.yml
without host-specific fields such as ``prefix:``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from goldmaster.redact import redact_url

EXPLICIT_ARCNAME = "env/conda-explicit.txt"
ENVIRONMENT_ARCNAME = "env/environment.yml"

_RECORD_FIELDS = ("name", "version", "build", "build_number", "channel", "subdir")


def read_conda_records(prefix: Path) -> list[dict[str, Any]]:
    """Return one record per package in ``prefix/conda-meta``, sorted by name."""
    records = []
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(raw, dict) and raw.get("name") and raw.get("version"):
            records.append(_record(raw))
    return sorted(records, key=lambda record: record["name"])


def _record(raw: dict[str, Any]) -> dict[str, Any]:
    record = {field: raw.get(field) for field in _RECORD_FIELDS}
    record["channel"] = _channel_name(raw)
    record["url"] = redact_url(raw["url"]) if raw.get("url") else None
    record["md5"] = raw.get("md5")
    record["sha256"] = raw.get("sha256")
    record["requested"] = bool(raw.get("requested_spec"))
    return record


def _channel_name(raw: dict[str, Any]) -> str | None:
    """Return the channel as conda prints it, for example ``conda-forge``."""
    channel = raw.get("channel") or raw.get("schannel")
    if not channel:
        return None
    channel = redact_url(str(channel))
    subdir = raw.get("subdir")
    if subdir and channel.endswith("/" + subdir):
        channel = channel[: -len(subdir) - 1]
    for known in ("https://conda.anaconda.org/", "https://repo.anaconda.com/pkgs/"):
        if channel.startswith(known):
            return channel[len(known) :]
    return channel


def explicit_spec(records: list[dict[str, Any]], platform: str | None) -> str:
    """Write the ``@EXPLICIT`` spec: one package URL per line with ``#md5``."""
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --prefix PREFIX --file conda-explicit.txt",
    ]
    if platform:
        lines.append(f"# platform: {platform}")
    lines.append("@EXPLICIT")
    missing = []
    for record in records:
        if not record["url"]:
            missing.append(record["name"])
            continue
        suffix = f"#{record['md5']}" if record["md5"] else ""
        lines.append(record["url"] + suffix)
    for name in missing:
        lines.append(f"# no download URL recorded for {name}")
    return "\n".join(lines) + "\n"


def environment_yml(
    name: str, records: list[dict[str, Any]], pip_lines: list[str]
) -> str:
    """Write an environment.yml with exact builds and the pip packages on top."""
    channels: list[str] = []
    for record in records:
        channel = record["channel"]
        if channel and channel not in channels and channel != "pypi":
            channels.append(channel)
    lines = [f"name: {name}", "channels:"]
    lines += [f"  - {channel}" for channel in channels]
    lines.append("dependencies:")
    for record in records:
        if record["channel"] == "pypi":
            continue
        lines.append(f"  - {record['name']}={record['version']}={record['build']}")
    if pip_lines:
        lines.append("  - pip:")
        lines += [f"      - {line}" for line in pip_lines]
    return "\n".join(lines) + "\n"


def conda_platform(records: list[dict[str, Any]]) -> str | None:
    """Return the conda subdir, such as ``linux-64``, that the packages were built for."""
    subdirs = sorted(
        {r["subdir"] for r in records if r["subdir"] not in (None, "noarch")}
    )
    return subdirs[0] if subdirs else None
