"""Rebuild a wheel from a distribution's installed files.

pip lists every file it installed in the distribution's RECORD. The source
of an install can disappear: a folder deleted after ``pip install .``, or an
index that no longer serves the file. Then the installed files are the only
copy left, and packing them back into a wheel carries exactly what ran.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import time
import zipfile
from configparser import RawConfigParser
from pathlib import Path
from typing import Any

from goldmaster.errors import EnvironmentCaptureError

# Written by the installer, not part of the wheel.
_INSTALLER_FILES = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}
_CHUNK = 1 << 20


def wheel_name_part(text: str) -> str:
    """Escape a project name or version for a wheel file name."""
    return re.sub(r"[^\w\d.+]+", "_", text)


def _zip_timestamp() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        stamp = time.gmtime(max(int(epoch), 315532800))
        return stamp[:6]
    return (1980, 1, 1, 0, 0, 0)


def _record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _compressed_tag(wheel_file: Path) -> str:
    tags = []
    for line in wheel_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("Tag:"):
            tags.append(line.split(":", 1)[1].strip().split("-"))
    if not tags:
        raise EnvironmentCaptureError(f"{wheel_file} names no wheel tag")
    columns = []
    for index in range(3):
        values: list[str] = []
        for tag in tags:
            if tag[index] not in values:
                values.append(tag[index])
        columns.append(".".join(values))
    return "-".join(columns)


def _entry_point_scripts(meta_dir: Path) -> set[str]:
    path = meta_dir / "entry_points.txt"
    if not path.is_file():
        return set()
    parser = RawConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for section in ("console_scripts", "gui_scripts"):
        if parser.has_section(section):
            names.update(parser.options(section))
    return names


def _member_name(
    location: Path, prefix: Path, relative: str, data_dir: str, scripts: set[str]
) -> str | None:
    """Map one RECORD path to its place in the wheel, or None to leave it out."""
    if "__pycache__" in relative.split("/") or relative.endswith(".pyc"):
        return None
    if not relative.startswith(".."):
        return relative
    absolute = Path(os.path.normpath(location / relative))
    try:
        inside = absolute.relative_to(prefix)
    except ValueError:
        return None
    if inside.parts[:1] in (("bin",), ("Scripts",)):
        stem = absolute.name.removesuffix(".exe")
        if stem in scripts or stem.removesuffix("-script.py") in scripts:
            return None
        return f"{data_dir}/scripts/{absolute.name}"
    return f"{data_dir}/data/{inside.as_posix()}"


def _plan_members(dist: dict[str, Any], prefix: Path) -> tuple[list, str]:
    meta_dir = Path(dist["metadata_dir"])
    location = Path(dist["location"])
    name = wheel_name_part(dist["name"])
    version = wheel_name_part(dist["version"])
    data_dir = f"{name}-{version}.data"
    scripts = _entry_point_scripts(meta_dir)
    with open(meta_dir / "RECORD", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    members = []
    for row in rows:
        if not row or not row[0]:
            continue
        relative = row[0].replace("\\", "/")
        if Path(relative).parent.name == meta_dir.name and Path(relative).name in (
            _INSTALLER_FILES
        ):
            continue
        member = _member_name(location, prefix, relative, data_dir, scripts)
        if member is not None:
            members.append(
                (member, location / relative, row[1] if len(row) > 1 else "")
            )
    members.sort(key=lambda item: (item[0].startswith(meta_dir.name + "/"), item[0]))
    return members, meta_dir.name


def _write_member(archive: zipfile.ZipFile, member: str, source: Path, stamp) -> tuple:
    info = zipfile.ZipInfo(member, date_time=stamp)
    executable = os.access(source, os.X_OK)
    info.external_attr = (0o755 if executable else 0o644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    digest = hashlib.sha256()
    size = 0
    rewrite_shebang = "/scripts/" in member
    with (
        open(source, "rb") as reader,
        archive.open(info, "w", force_zip64=True) as writer,
    ):
        if rewrite_shebang:
            first = reader.readline()
            if first.startswith(b"#!") and b"python" in first:
                first = b"#!python\n"
            writer.write(first)
            digest.update(first)
            size += len(first)
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return digest.digest(), size


def repack_wheel(
    dist: dict[str, Any], prefix: Path, output_dir: Path
) -> dict[str, Any]:
    """Pack an installed distribution's files into a wheel in ``output_dir``.

    Returns the wheel path and the number of files that changed after
    installation (their hash differs from RECORD). Console scripts that pip
    generates from entry points and bytecode caches are left out.
    """
    meta_dir = Path(dist["metadata_dir"])
    if not (meta_dir / "RECORD").is_file() or not (meta_dir / "WHEEL").is_file():
        raise EnvironmentCaptureError(
            f"{dist['name']} {dist['version']} has no RECORD or WHEEL file, so its "
            "installed files cannot be packed into a wheel"
        )
    tag = _compressed_tag(meta_dir / "WHEEL")
    members, meta_name = _plan_members(dist, prefix)
    wheel = (
        output_dir
        / f"{wheel_name_part(dist['name'])}-{wheel_name_part(dist['version'])}-{tag}.whl"
    )
    stamp = _zip_timestamp()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    changed = 0
    try:
        with zipfile.ZipFile(wheel, "w") as archive:
            for member, source, recorded in members:
                digest, size = _write_member(archive, member, source, stamp)
                if (
                    recorded
                    and recorded != _record_hash(digest)
                    and "/scripts/" not in member
                ):
                    changed += 1
                writer.writerow([member, _record_hash(digest), size])
            writer.writerow([f"{meta_name}/RECORD", "", ""])
            info = zipfile.ZipInfo(f"{meta_name}/RECORD", date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, record.getvalue())
    except OSError as exc:
        wheel.unlink(missing_ok=True)
        raise EnvironmentCaptureError(
            f"could not pack the installed files of {dist['name']} into a wheel: {exc}"
        ) from exc
    return {"path": wheel, "changed_files": changed}
