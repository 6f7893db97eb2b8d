"""A container engine that stops while capture builds the image.

The test starts its own Podman API service, with its own storage under
tmp_path, and kills it in the middle of a build. The shared service that the
other engine tests use is never touched. The base image's /bin/sh waits in
the first RUN step until the test lets it go, so the kill always lands while
the build runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine_fixtures import services_unavailable
from goldmaster import container
from goldmaster.capture import CaptureOptions, capture
from goldmaster.errors import EngineError
from image_helpers import isolated_pip_environ, tiny_model_venv

GOLDMASTER = Path(sys.executable).with_name("goldmaster")
NAME, VERSION = "stopped", "1"
BUNDLE_NAME = f"{NAME}-{VERSION}.gm.tar.zst"
STALL_IMAGE = "localhost/gm-test-stall:1"
STARTED_MARKER = "goldmaster-build-started"
RELEASE_MARKER = "goldmaster-build-release"
# The stall image's /bin/sh marks that a RUN step began and then waits for
# the release marker. It gives up after 120 s, so that nothing outlives a
# failed test by long.
STALL_SHELL = f"""#!/bin/busybox sh
/bin/busybox touch /{STARTED_MARKER}
count=0
while [ ! -e /{RELEASE_MARKER} ] && [ $count -lt 1200 ]; do
    /bin/busybox sleep 0.1
    count=$((count + 1))
done
exit 1
"""


@dataclass
class PrivateEngine:
    """A Podman API service on a socket of its own, with its own storage."""

    root: Path
    host: str
    process: subprocess.Popen[bytes]

    @property
    def layers(self) -> Path:
        """The vfs driver's folders, one per layer or build container."""
        return self.root / "storage" / "vfs" / "dir"

    def build_started(self) -> bool:
        return any(self.layers.glob(f"*/{STARTED_MARKER}"))

    def release_build(self) -> None:
        """Let a waiting RUN step of the stall image exit."""
        for folder in self.layers.glob("*"):
            (folder / RELEASE_MARKER).touch()

    def kill(self) -> None:
        """Kill the service and the build helpers in its process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def podman_command(root: Path, runroot: Path) -> list[str]:
    """Podman with storage and temporary folders under ``root``.

    The vfs driver copies layers instead of mounting them, so a killed build
    leaves no mounts behind. Podman 4.3 rejects a run folder path longer
    than 50 characters, so ``runroot`` is given apart.
    """
    return [
        "podman",
        "--root", str(root / "storage"),
        "--runroot", str(runroot),
        "--tmpdir", str(root / "tmp"),
        "--storage-driver", "vfs",
        "--events-backend", "none",
    ]  # fmt: skip


def import_stall_image(podman: list[str], folder: Path) -> None:
    rootfs = folder / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    shell = rootfs / "bin" / "sh"
    shell.write_text(STALL_SHELL)
    shell.chmod(0o755)
    layer = folder / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(layer), "."], check=True)
    done = subprocess.run(
        [*podman, "import", "--quiet", "--change", "ENV PATH=/bin", str(layer), STALL_IMAGE],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"podman import failed: {done.stderr.strip()}")


def wait_until_answering(host: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            container.connect(host, timeout=5).close()
            return
        except EngineError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.fixture
def private_engine(tmp_path: Path) -> Iterator[PrivateEngine]:
    """Start a Podman API service that only this test uses, with the stall image."""
    if shutil.which("podman") is None:
        services_unavailable("podman is not installed")
    if not os.access("/bin/busybox", os.X_OK):
        services_unavailable("/bin/busybox is not installed")
    root = tmp_path / "engine"
    root.mkdir()
    runroot = Path(tempfile.mkdtemp(prefix="gm-test-engine-"))
    podman = podman_command(root, runroot)
    try:
        import_stall_image(podman, root)
        yield from serve(podman, root)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def serve(podman: list[str], root: Path) -> Iterator[PrivateEngine]:
    """Run the API service on ``root/api.sock`` until the generator closes."""
    socket = root / "api.sock"
    with open(root / "service.log", "wb") as log:
        process = subprocess.Popen(
            [*podman, "system", "service", "--time=0", f"unix://{socket}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    engine = PrivateEngine(root, f"unix://{socket}", process)
    try:
        wait_until_answering(engine.host, process)
        yield engine
    finally:
        engine.kill()
        engine.release_build()


def earlier_bundle(output: Path, model: Path, code: Path) -> None:
    options = CaptureOptions(
        model=model,
        output=output,
        code=code,
        name=NAME,
        version=VERSION,
        env=False,
        image=False,
    )
    capture(options)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def wait_for_build(engine: PrivateEngine, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not engine.build_started():
        if process.poll() is not None:
            pytest.fail(
                f"capture ended before the build began: {process.communicate()}"
            )
        if time.monotonic() > deadline:
            pytest.fail("the image build did not reach its first RUN step within 60 s")
        time.sleep(0.05)


@pytest.mark.engine
@pytest.mark.slow
def test_capture_fails_when_engine_stops_midbuild(
    private_engine: PrivateEngine, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "scale.txt").write_text("scale=0.5\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "infer.py").write_text("import tinymodel\n")
    python = tiny_model_venv(tmp_path / "tiny-venv")
    parent = tmp_path / "parent"
    output = parent / "out"
    earlier_bundle(output, model, code)
    before = folder_bytes(output)
    assert sorted(before) == [BUNDLE_NAME, f"{BUNDLE_NAME}.sha256"]

    process = subprocess.Popen(
        [
            str(GOLDMASTER), "capture", str(model), "--code", str(code),
            "--output", str(output), "--name", NAME, "--version", VERSION, "--force",
            "--python", str(python), "--wheels", "--strict",
            "--image", "--base-image", STALL_IMAGE, "--tag", "localhost/gm-test-stopped:1",
        ],
        env=dict(isolated_pip_environ(), DOCKER_HOST=private_engine.host),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_build(private_engine, process)
        private_engine.kill()
        private_engine.release_build()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 2, stderr
    assert stdout == ""
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    # The reason in brackets depends on where the stream broke, most often
    # "the response ended early".
    expected = (
        "Error: image build failed: lost the connection to the container engine "
        f"at {private_engine.host} ("
    )
    assert errors[0].startswith(expected), stderr
    assert errors[0].endswith(")"), stderr
    assert "Tip: check that the engine is still running" in stderr
    assert "Traceback" not in stderr
    assert folder_bytes(output) == before
    assert sorted(path.name for path in parent.iterdir()) == ["out"]
