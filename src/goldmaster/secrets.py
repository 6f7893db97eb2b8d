"""Find credentials that would be published in a bundle, before it is written.

Capture removes credentials from the URLs it records and leaves credential
files out of the code, but values also reach a bundle through hyperparameters,
lockfiles, probe outputs, build logs and diffs. This module scans those for
token formats that are specific enough to rarely match anything else, and
capture fails when one remains. The image stage scans the container image's
history and config the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .env_lockfiles import is_lockfile_name
from .errors import SecretFoundError
from .model import matches

# Files are read in chunks of this size. A match may span two chunks, so each
# chunk is scanned together with the last OVERLAP bytes of the one before.
CHUNK = 1 << 20
OVERLAP = 4096
# Larger source-backed members are not scanned (lockfiles and logs are small).
MAX_SCANNED_FILE = 256 << 20

# Token formats, most from the providers' documentation of their prefixes.
RULES: list[tuple[str, re.Pattern[bytes]]] = [
    (
        "AWS access key id",
        re.compile(rb"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}\b"),
    ),
    (
        "AWS secret access key",
        re.compile(
            rb"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
    ),
    ("GitHub token", re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,255}\b")),
    ("GitHub token", re.compile(rb"\bgithub_pat_[A-Za-z0-9_]{22,255}\b")),
    ("GitLab token", re.compile(rb"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("Hugging Face token", re.compile(rb"\b(?:hf_|api_org_)[A-Za-z0-9]{34,}\b")),
    (
        "OpenAI API key",
        re.compile(
            rb"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}"
            rb"|\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}"
            rb"|\bsk-[A-Za-z0-9]{48}\b"
        ),
    ),
    ("Anthropic API key", re.compile(rb"\bsk-ant-[a-z]{3,5}\d\d-[A-Za-z0-9_-]{80,}")),
    (
        "Slack token",
        re.compile(rb"\bxox[abposre]-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,}"),
    ),
    (
        "Slack webhook URL",
        re.compile(
            rb"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/_-]{20,}"
        ),
    ),
    ("PyPI token", re.compile(rb"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}")),
    ("Google API key", re.compile(rb"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    ("Stripe key", re.compile(rb"\b[sr]k_live_[0-9A-Za-z]{24,}\b")),
    ("npm token", re.compile(rb"\bnpm_[A-Za-z0-9]{36}\b")),
    (
        "private key",
        re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ),
    (
        "password in a URL",
        re.compile(
            rb"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@'\"<>]+:(?!REDACTED@)[^\s/@'\"<>]+@"
        ),
    ),
]

# Source-backed members worth scanning: lockfiles and logs anywhere, and every
# text that a probe or the image build wrote. Lockfiles are the names below
# and every dependency file that the environment capture copies, such as
# pyproject.toml, whose index URLs may carry a password. Other code, weights,
# wheels and saved images are not scanned: code is archived as the user wrote
# it, and the others are binary.
SCANNED_FOLDERS = ("env/", "system/", "image/", "checks/", "git/")
LOCKFILES = [
    "requirements*.txt",
    "constraints*.txt",
    "*.lock",
    "pylock*.toml",
    "conda-lock.yml",
    "conda-lock.yaml",
    "environment.yml",
    "environment.yaml",
    "pip.conf",
    "*.log",
]
BINARY_SUFFIXES = (
    ".whl", ".tar", ".tgz", ".gz", ".zst", ".zip", ".xz", ".bz2", ".conda",
    ".so", ".bin", ".safetensors", ".pt", ".onnx", ".gguf",
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """A token-like value found in what a bundle would hold."""

    where: str  # "manifest.yaml: params.token" or "env/requirements.lock line 3"
    rule: str
    preview: str  # the first characters only, never the whole value

    def describe(self) -> str:
        return f"{self.rule} ({self.preview}) in {self.where}"


class ScannedMember(Protocol):
    """A bundle member as the scan reads it: its name and its bytes, from
    memory (``data``) or from a file (``source``)."""

    arcname: str
    data: bytes | None
    source: Path | None


def _preview(rule: str, value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    if rule == "password in a URL":
        return text.split("://", 1)[0] + "://…:…@"
    return text[: min(4, len(text) // 3)] + "…"


def _matches(data: bytes) -> Iterator[tuple[int, str, bytes]]:
    for rule, pattern in RULES:
        for match in pattern.finditer(data):
            yield match.start(), rule, match.group(0)


def scan_bytes(data: bytes, where: str) -> list[Finding]:
    """Return the token-like values in ``data``, located by line number."""
    found = []
    for start, rule, value in sorted(_matches(data)):
        line = data.count(b"\n", 0, start) + 1
        found.append(Finding(f"{where} line {line}", rule, _preview(rule, value)))
    return found


def scan_file(path: Path, where: str) -> list[Finding]:
    """Scan a file in chunks, so memory stays bounded whatever its size."""
    found: list[Finding] = []
    seen: set[int] = set()
    offset = 0  # file offset of ``window[0]``
    line = 1  # line number at ``window[0]``
    window = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            window += chunk
            for start, rule, value in sorted(_matches(window)):
                if offset + start in seen:
                    continue
                seen.add(offset + start)
                at = line + window.count(b"\n", 0, start)
                found.append(Finding(f"{where} line {at}", rule, _preview(rule, value)))
            keep = max(0, len(window) - OVERLAP)
            line += window.count(b"\n", 0, keep)
            offset += keep
            window = window[keep:]
    return found


def scan_value(value: Any, where: str, key_path: str = "") -> list[Finding]:
    """Scan every key and string in nested manifest data, located by key path
    such as ``params.token`` or ``datasets[0]``."""
    # A match inside one string is also a match in the strings joined by
    # newlines: a newline is a word boundary, as the end of a string is, and
    # passes the rules' lookaheads. So one pass over the joined text decides,
    # and a match there, even one spanning two strings, only triggers the
    # slower walk that locates each finding in its own string.
    strings: list[str] = []
    _collect_strings(value, strings)
    joined = "\n".join(strings).encode("utf-8", "surrogateescape")
    if not any(True for _ in _matches(joined)):
        return []
    return _scan_value(value, where, key_path)


def _collect_strings(value: Any, into: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            into.append(str(key))
            _collect_strings(item, into)
    elif isinstance(value, list):
        for item in value:
            _collect_strings(item, into)
    elif isinstance(value, str):
        into.append(value)


def _scan_value(value: Any, where: str, key_path: str) -> list[Finding]:
    found: list[Finding] = []
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{key_path}.{key}" if key_path else str(key)
            found += _scan_string(str(key), where, child)
            found += _scan_value(item, where, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _scan_value(item, where, f"{key_path}[{index}]")
    elif isinstance(value, str):
        found += _scan_string(value, where, key_path)
    return found


def _scan_string(text: str, where: str, key_path: str) -> list[Finding]:
    return scan_text(text, f"{where}: {key_path}")


def scan_text(text: str, where: str) -> list[Finding]:
    """Return the token-like values in one string, each located at ``where``."""
    data = text.encode("utf-8", "surrogateescape")
    return [
        Finding(where, rule, _preview(rule, value))
        for _, rule, value in sorted(_matches(data))
    ]


def should_scan(arcname: str) -> bool:
    """Tell whether a source-backed member is text that the scan covers."""
    if arcname.startswith(("weights/", "env/wheels/")) or arcname.endswith(
        BINARY_SUFFIXES
    ):
        return False
    if arcname.startswith(SCANNED_FOLDERS) or matches(arcname, LOCKFILES):
        return True
    parts = arcname.rsplit("/", 2)
    return is_lockfile_name(parts[-1], parts[-2] if len(parts) > 1 else "")


def scan_members(members: Iterable[ScannedMember]) -> list[Finding]:
    """Scan generated members (held in memory) and the lockfiles, logs and
    probe outputs among the members read from files."""
    found: list[Finding] = []
    for member in members:
        if member.arcname.startswith("weights/"):
            continue
        if member.data is not None:
            found += scan_bytes(member.data, member.arcname)
        elif member.source is not None and should_scan(member.arcname):
            found += _scan_source(member.source, member.arcname)
    return found


def _scan_source(source: Path, arcname: str) -> list[Finding]:
    try:
        if source.stat().st_size > MAX_SCANNED_FILE:
            return []
        return scan_file(source, arcname)
    except OSError:
        # Capture reports an unreadable file when it streams it into the bundle.
        return []


def check_capture(manifest: dict[str, Any], members: Iterable[ScannedMember]) -> None:
    """Raise SecretFoundError when the manifest or the members contain a token."""
    # NOTE: there is no option to accept a finding. A false positive can only
    # be cleared by changing or excluding its source.
    found = scan_value(_user_strings(manifest), "manifest.yaml") + scan_members(members)
    raise_for_findings(
        found,
        "remove it from the option, file or environment it came from, or leave the "
        "file out with --exclude, then capture again",
    )


def raise_for_findings(found: Sequence[Finding], hint: str) -> None:
    """Raise SecretFoundError naming the first findings, when there are any."""
    if not found:
        return
    places = "; ".join(f.describe() for f in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    raise SecretFoundError(
        f"credential found, so no bundle was written: {places}{more}", hint
    )


def _user_strings(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the manifest with each entry of its files list cut down to the
    names in it: the sizes, digests and codec settings are goldmaster's own,
    and a large tree has tens of thousands of them."""
    files = manifest.get("files")
    if not isinstance(files, list):
        return manifest
    names = [
        {k: v for k, v in entry.items() if k in ("path", "same_as")}
        if isinstance(entry, dict)
        else entry
        for entry in files
    ]
    return dict(manifest, files=names)
