"""Vendor distribution files into a bundle's env/wheels/ folder.

Index installs are downloaded by exact version from the indexes that were
in effect, local, editable and VCS installs are built with ``pip wheel``,
and a distribution whose source is gone is packed from its installed files.
Each distribution tries its methods in order and the first file wins.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from goldmaster.env_repack import repack_wheel
from goldmaster.errors import EnvironmentCaptureError
from goldmaster.redact import redact_text

PIP_TIMEOUT_S = 1800
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")


@dataclass
class Vendored:
    """Outcome of vendoring: files by distribution key, and what failed and why."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[dict[str, str]] = field(default_factory=list)


@dataclass
class PipRunner:
    """The pip that downloads and builds, with the options that aim it at the target."""

    command: list[str]
    download_options: list[str]
    target_pip: bool

    def run(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        try:
            return subprocess.run(
                [*self.command, *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(
                args, 1, "", f"pip did not finish: {exc}"
            )


def make_runner(probe: dict[str, Any], target_python: Path) -> PipRunner:
    """Use the target's own pip when it has one, else goldmaster's with its tags."""
    keys = {dist["key"] for dist in probe["distributions"]}
    if "pip" in keys:
        return PipRunner([str(target_python), "-m", "pip"], [], True)
    tags = probe["interpreter"]["tags"]
    options = [
        "--only-binary=:all:",
        "--python-version",
        tags["python_version"],
        "--implementation",
        tags["implementation"],
        "--abi",
        tags["abi"],
    ]
    for platform in tags["platforms"]:
        options += ["--platform", platform]
    return PipRunner([sys.executable, "-m", "pip"], options, False)


def failure_reason(result: subprocess.CompletedProcess[str], action: str) -> str:
    """Summarise a failed pip run in one line, with credentials removed."""
    lines = [
        line.strip() for line in (result.stderr or "").splitlines() if line.strip()
    ]
    errors = [line for line in lines if line.startswith("ERROR")]
    detail = (errors or lines or [f"exit status {result.returncode}"])[-1]
    return redact_text(f"{action} failed: {detail}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _single_file(folder: Path) -> Path | None:
    files = [path for path in folder.iterdir() if path.name.endswith(_ARCHIVE_SUFFIXES)]
    return files[0] if len(files) == 1 else None


def file_url_path(url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(unquote(parts.path))


class Vendorer:
    """Fetch or build one file per distribution into ``output_dir``."""

    def __init__(self, runner: PipRunner, prefix: Path, workdir: Path) -> None:
        self.changed_files: dict[str, int] = {}
        self.runner = runner
        self.prefix = prefix
        self.workdir = workdir
        self.output_dir = workdir / "wheels"
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def vendor(self, items: list[tuple[dict, dict]]) -> Vendored:
        """Vendor each (distribution, origin) pair, trying its methods in order."""
        result = Vendored()
        prefetched = self._download_batch(
            [dist for dist, origin in items if origin["kind"] == "index"]
        )
        for dist, origin in items:
            self._vendor_one(dist, origin, prefetched, result)
        return result

    def _vendor_one(self, dist, origin, prefetched, result: Vendored) -> None:
        reasons: list[str] = []
        for method in self._methods(origin):
            reason: str | None
            if method == "download" and dist["key"] in prefetched:
                path, reason = prefetched[dist["key"]], None
            else:
                path, reason = self._attempt(method, dist, origin)
            if path is not None:
                stored = self._keep(path, method)
                if dist["key"] in self.changed_files:
                    stored["changed_files"] = self.changed_files[dist["key"]]
                if reasons:
                    stored["earlier_failures"] = reasons
                result.files[dist["key"]] = stored
                return
            reasons.append(reason or f"{method} failed")
        result.missing.append(
            {
                "name": dist["name"],
                "version": dist["version"],
                "reason": "; ".join(reasons),
            }
        )

    def _methods(self, origin: dict[str, Any]) -> list[str]:
        kind = origin["kind"]
        methods = {
            "index": ["download", "repack"],
            "unknown": ["download", "repack"],
            "url": ["download-url", "repack"],
            "file": ["copy", "repack"],
            "vcs": ["build", "repack"],
            "dir": ["repack", "build"],
            "editable": ["build"],
            "egg-link": ["build"],
        }
        return methods.get(kind, [])

    def _attempt(self, method: str, dist, origin) -> tuple[Path | None, str | None]:
        folder = self.workdir / "work" / f"{dist['key']}-{method}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            return getattr(self, "_" + method.replace("-", "_"))(dist, origin, folder)
        except EnvironmentCaptureError as exc:
            return None, redact_text(exc.message)

    def _keep(self, path: Path, method: str) -> dict[str, Any]:
        final = self.output_dir / path.name
        if final.exists():
            raise EnvironmentCaptureError(
                f"two distributions produced the same file name {path.name}; remove one "
                "of them from the environment or capture without --wheels"
            )
        shutil.move(str(path), final)
        return {
            "file": final.name,
            "path": final,
            "sha256": sha256_file(final),
            "size": final.stat().st_size,
            "method": method,
        }

    def _download_batch(self, dists: list[dict[str, Any]]) -> dict[str, Path]:
        """Download every index pin in one pip run; on failure, each is retried alone."""
        if not dists:
            return {}
        folder = self.workdir / "work" / "batch"
        folder.mkdir(parents=True, exist_ok=True)
        requirements = folder / "requirements.txt"
        requirements.write_text(
            "".join(f"{dist['name']}=={dist['version']}\n" for dist in dists),
            encoding="utf-8",
        )
        args = ["download", "--no-deps", *self._download_options(), "-d", str(folder)]
        result = self.runner.run([*args, "-r", str(requirements)], folder)
        if result.returncode != 0:
            return {}
        found: dict[str, Path] = {}
        by_key = {dist["key"]: dist for dist in dists}
        for path in folder.iterdir():
            key = _archive_key(path.name)
            if key in by_key and path.name.endswith(".whl"):
                found[key] = path
        return found

    def _download_options(self) -> list[str]:
        if self.runner.target_pip:
            return ["--only-binary=:all:"]
        return self.runner.download_options

    def _download(self, dist, origin, folder: Path) -> tuple[Path | None, str | None]:
        pin = f"{dist['name']}=={dist['version']}"
        args = [
            "download",
            "--no-deps",
            *self._download_options(),
            "-d",
            str(folder),
            pin,
        ]
        result = self.runner.run(args, folder)
        if result.returncode == 0 and (path := _single_file(folder)):
            return path, None
        reason = failure_reason(result, f"pip download {pin}")
        if not self.runner.target_pip:
            return None, reason
        return self._wheel_from(pin, folder, reason)

    def _wheel_from(self, target: str, folder: Path, earlier: str | None = None):
        """Build a wheel with ``pip wheel`` (a source distribution or a project)."""
        built = folder / "built"
        built.mkdir(exist_ok=True)
        args = ["wheel", "--no-deps", "-w", str(built), target]
        result = self.runner.run(args, folder)
        if result.returncode == 0 and (path := _single_file(built)):
            return path, None
        reason = failure_reason(result, "pip wheel")
        return None, f"{earlier}; {reason}" if earlier else reason

    def _download_url(self, dist, origin, folder: Path):
        target = f"{dist['name']} @ {origin['url']}"
        args = ["download", "--no-deps", "-d", str(folder), target]
        result = self.runner.run(args, folder)
        if result.returncode == 0 and (path := _single_file(folder)):
            return path, None
        return None, failure_reason(result, "pip download of the recorded URL")

    def _copy(self, dist, origin, folder: Path):
        path = Path(origin["path"])
        if not path.is_file():
            return None, f"the installed file {path} no longer exists"
        expected = origin.get("sha256")
        if expected and sha256_file(path) != expected:
            return None, f"{path} changed after it was installed (sha256 differs)"
        if path.name.endswith(".whl"):
            shutil.copy2(path, folder / path.name)
            return folder / path.name, None
        return self._wheel_from(str(path), folder)

    def _build(self, dist, origin, folder: Path):
        if origin["kind"] == "vcs":
            target = f"{dist['name']} @ {origin['requirement_url']}"
        else:
            path = Path(origin["path"])
            if not path.is_dir():
                return None, f"the source folder {path} no longer exists"
            target = str(path)
        return self._wheel_from(target, folder)

    def _repack(self, dist, origin, folder: Path):
        result = repack_wheel(dist, self.prefix, folder)
        self.changed_files[dist["key"]] = result["changed_files"]
        return result["path"], None


def _archive_key(filename: str) -> str:
    stem = filename.split("-", 1)[0]
    return re.sub(r"[-_.]+", "-", stem).lower()
