"""Faults during capture and restore: a full disk, a read error in the middle
of a file, and SIGINT or SIGTERM at several phases. Each ends with a clear
message and exit status, no partial bundle, no temporary files, and an
earlier bundle at the same path left byte-identical.

The disk faults use real ext4 file systems on loop devices, which needs root.
Without loop devices the tests skip, unless GOLDMASTER_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bundle_craft import TOP, build, entry, file_member
from goldmaster.capture import CaptureOptions, capture
from goldmaster.errors import DestinationError, InputError, OutputError
from goldmaster.fsutil import TEMP_MARK, deferred_signals
from goldmaster.progress import Reporter
from goldmaster.restore import STAGING_PREFIX, RestoreOptions, restore

GOLDMASTER = Path(sys.executable).with_name("goldmaster")
NAME, VERSION = "faulty", "1"
BUNDLE_NAME = f"{NAME}-{VERSION}.gm.tar.zst"


def _unavailable(reason: str) -> None:
    if os.environ.get("GOLDMASTER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"loop-mounted file systems are required but unavailable: {reason}")
    pytest.skip(f"loop-mounted file systems are unavailable: {reason}")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Make and mount ext4 file systems of a given size in MiB; unmount them
    afterwards."""
    mounted: list[Path] = []

    def make(size_mib: int, name: str = "fs") -> Path:
        if os.geteuid() != 0:
            _unavailable("mounting needs root")
        if shutil.which("mkfs.ext4") is None:
            _unavailable("mkfs.ext4 is not installed")
        image = tmp_path / f"{name}.img"
        mountpoint = tmp_path / name
        mountpoint.mkdir()
        with open(image, "wb") as fh:
            fh.truncate(size_mib << 20)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096", str(image)], check=True
        )
        done = subprocess.run(
            ["mount", "-o", "loop", str(image), str(mountpoint)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            _unavailable(done.stderr.strip())
        mounted.append(mountpoint)
        return mountpoint

    yield make
    for mountpoint in mounted:
        if not os.path.ismount(mountpoint):
            continue
        unmounted = subprocess.run(
            ["umount", str(mountpoint)], capture_output=True, check=False
        )
        if unmounted.returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """Take all free space in ``folder``'s file system but ``leave`` bytes."""
    filler = folder / "filler"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, max(free - leave, 1))
    return filler


class FillOnStep(Reporter):
    """A reporter that fills the disk when a given step or byte count starts,
    after capture or restore has passed its free-space check."""

    def __init__(self, folder: Path, trigger: str, leave: int = 1 << 20) -> None:
        self.folder = folder
        self.trigger = trigger
        self.leave = leave
        self.filled = False

    def step(self, message: str) -> None:
        if self.trigger == "step" and message.startswith("writing"):
            self._fill()

    def start(self, total: int, label: str) -> None:
        if self.trigger == "start":
            self._fill()

    def _fill(self) -> None:
        fill(self.folder, self.leave)
        self.filled = True


def random_model(folder: Path, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bin").write_bytes(os.urandom(size))
    return folder


def code_folder(root: Path) -> Path:
    code = root / "code"
    code.mkdir(exist_ok=True)
    (code / "infer.py").write_text("print('infer')\n")
    return code


def leftovers(folder: Path) -> list[str]:
    # A failed capture removes an output folder that it created.
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if TEMP_MARK in p.name)


def earlier_bundle(tmp_path: Path, output: Path) -> dict[str, bytes]:
    """Capture a first bundle, copy it into ``output`` and return its files' bytes.

    It is captured elsewhere because capture requires 64 MB of free space
    more than its input, which the small file systems here do not have.
    """
    model = random_model(tmp_path / "earlier-model", 4096)
    options = CaptureOptions(
        model=model,
        output=tmp_path / "earlier-out",
        code=code_folder(tmp_path),
        name=NAME,
        version=VERSION, env=False)
    result = capture(options)
    output.mkdir(exist_ok=True)
    for path in (result.bundle, result.sidecar):
        shutil.copyfile(path, output / path.name)
    return snapshot(output)


def snapshot(output: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in output.iterdir() if p.name.startswith(NAME)}


# ---------------------------------------------------------------------------
# Full disk


def test_capture_checks_free_space_first(tmp_path: Path, small_fs: Callable) -> None:
    output = small_fs(32)
    before = earlier_bundle(tmp_path, output)
    model = random_model(tmp_path / "model", 1 << 20)

    done = subprocess.run(
        [
            str(GOLDMASTER), "capture", str(model), "--code", str(code_folder(tmp_path)),
            "--output", str(output), "--name", NAME, "--version", VERSION, "--force",
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert f"Error: not enough free space in {output}" in done.stderr
    assert "MB needed" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(output) == before
    assert leftovers(output) == []


def test_capture_full_disk_midway(tmp_path: Path, small_fs: Callable) -> None:
    output = small_fs(96)
    before = earlier_bundle(tmp_path, output)
    model = random_model(tmp_path / "model", 8 << 20)
    reporter = FillOnStep(output, "step")
    options = CaptureOptions(
        model=model,
        output=output,
        code=code_folder(tmp_path),
        name=NAME,
        version=VERSION,
        force=True, env=False)

    with pytest.raises(OutputError) as raised:
        capture(options, reporter)

    assert reporter.filled
    assert raised.value.exit_code == 2
    assert raised.value.message.startswith(
        f"no space left in {output} while writing {BUNDLE_NAME}"
    )
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.ENOSPC
    assert snapshot(output) == before
    assert leftovers(output) == []


def _restore_bundle(path: Path, size: int) -> Path:
    data = os.urandom(size)
    code = b"print(1)\n"
    body = [
        file_member(f"{TOP}/code/a.py", code),
        file_member(f"{TOP}/weights/big.bin", data),
    ]
    return build(path, body, [entry("code/a.py", code), entry("weights/big.bin", data)])


def test_restore_checks_free_space_first(tmp_path: Path, small_fs: Callable) -> None:
    mount = small_fs(16)
    bundle = _restore_bundle(tmp_path / "b.gm.tar.zst", 24 << 20)

    with pytest.raises(DestinationError) as raised:
        restore(bundle, mount / "dest")

    assert raised.value.message.startswith(f"not enough free space in {mount}")
    assert not (mount / "dest").exists()


@pytest.mark.parametrize("keep_partial", [False, True])
def test_restore_full_disk_midway(
    tmp_path: Path, small_fs: Callable, keep_partial: bool
) -> None:
    mount = small_fs(64)
    bundle = _restore_bundle(tmp_path / "b.gm.tar.zst", 16 << 20)
    dest = mount / "dest"
    reporter = FillOnStep(mount, "start", leave=4 << 20)

    with pytest.raises(DestinationError) as raised:
        restore(bundle, dest, RestoreOptions(keep_partial=keep_partial), reporter)

    assert reporter.filled
    assert (
        raised.value.message
        == "no space left on the device while writing weights/big.bin"
    )
    if keep_partial:
        assert sorted(p.name for p in dest.iterdir()) == [".goldmaster-partial"]
        assert (
            dest / ".goldmaster-partial" / "code" / "a.py"
        ).read_bytes() == b"print(1)\n"
    else:
        assert not dest.exists()
    assert not any(p.name.startswith(STAGING_PREFIX) for p in mount.rglob("*"))


# ---------------------------------------------------------------------------
# A read error in the middle of a file


def _corrupt_second_extent_leaf(image: Path, name: str) -> None:
    """Overwrite the second extent-tree leaf of ``name`` in an unmounted ext4
    image, so that reading the file fails with EIO past its first quarter."""
    listing = subprocess.run(
        ["debugfs", "-R", f"ex /{name}", str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    leaves = [
        line.split() for line in listing.splitlines() if line.split()[:1] == ["0/"]
    ]
    if len(leaves) < 2:
        pytest.fail(f"expected an extent tree with several leaves:\n{listing}")
    block = int(leaves[1][7])
    with open(image, "r+b") as fh:
        fh.seek(block * 4096)
        fh.write(os.urandom(4096))


def test_capture_read_error_midfile(tmp_path: Path, small_fs: Callable) -> None:
    if shutil.which("debugfs") is None:
        _unavailable("debugfs is not installed")
    model = small_fs(64, "model")
    # Every other 4 KiB block is a hole, so the file has 1200 extents and an
    # extent tree of four leaves on disk.
    fd = os.open(model / "model.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    for block in range(0, 2400, 2):
        os.pwrite(fd, os.urandom(4096), block * 4096)
    os.close(fd)
    subprocess.run(["umount", str(model)], check=True)
    _corrupt_second_extent_leaf(tmp_path / "model.img", "model.bin")
    subprocess.run(
        ["mount", "-o", "loop", str(tmp_path / "model.img"), str(model)], check=True
    )
    output = tmp_path / "out"
    before = earlier_bundle(tmp_path, output)

    done = subprocess.run(
        [
            str(GOLDMASTER), "capture", str(model), "--code", str(code_folder(tmp_path)),
            "--output", str(output), "--name", NAME, "--version", VERSION, "--force",
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert (
        f"Error: read error in {model / 'model.bin'}: Input/output error" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert snapshot(output) == before
    assert leftovers(output) == []


def test_capture_read_error_is_input_error(tmp_path: Path) -> None:
    """Reading a folder through os.readv fails with EISDIR: the same path as
    a failing disk, on any machine."""
    from goldmaster.archive import BundleWriter

    with open(tmp_path / "out", "wb") as fh:
        writer = BundleWriter(fh, "t-1", 0, 1, 4096)
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            with pytest.raises(InputError) as raised:
                writer._stream(fd, tmp_path, 10, 3)
        finally:
            os.close(fd)

    assert raised.value.message == f"read error in {tmp_path}: Is a directory"


# ---------------------------------------------------------------------------
# SIGINT and SIGTERM


EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
MESSAGE = {
    signal.SIGINT: "Error: interrupted; nothing was left half-written",
    signal.SIGTERM: "Error: terminated; nothing was left half-written",
}


@contextlib.contextmanager
def fifo_writer(path: Path, timeout: float = 30) -> Iterator[int]:
    """Wait until a process opens the FIFO ``path`` for reading, then hold its
    write end open without writing, so that the reader blocks in read()."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    try:
        yield fd
    finally:
        os.close(fd)


def _capture_process(
    tmp_path: Path, model: Path, output: Path, *extra: str
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(GOLDMASTER), "capture", str(model), "--code", str(code_folder(tmp_path)),
            "--output", str(output), "--name", NAME, "--version", VERSION, "--force", *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _wait_for_temp_file(output: Path, process: subprocess.Popen, min_size: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"capture ended before the signal: {process.communicate()}")
        temps = [p for p in output.iterdir() if TEMP_MARK in p.name]
        if any(p.stat().st_blocks * 512 >= min_size for p in temps):
            return
        time.sleep(0.02)
    pytest.fail("no growing temporary bundle file appeared")


def _interrupt_while_scanning(
    tmp_path: Path, output: Path, signum: int
) -> subprocess.Popen:
    """The model's safetensors file is a FIFO: capture blocks reading its header."""
    model = random_model(tmp_path / "model", 4096)
    os.mkfifo(model / "model.safetensors")
    process = _capture_process(tmp_path, model, output)
    with fifo_writer(model / "model.safetensors"):
        time.sleep(0.2)
        process.send_signal(signum)
        process.wait(timeout=30)
    return process


def _interrupt_while_reading_params(
    tmp_path: Path, output: Path, signum: int
) -> subprocess.Popen:
    """--params-file is a FIFO: capture blocks reading it after the code snapshot."""
    model = random_model(tmp_path / "model", 4096)
    params = tmp_path / "params.fifo"
    os.mkfifo(params)
    process = _capture_process(tmp_path, model, output, "--params-file", str(params))
    with fifo_writer(params):
        time.sleep(0.2)
        process.send_signal(signum)
        process.wait(timeout=30)
    return process


def _interrupt_while_compressing(
    tmp_path: Path, output: Path, signum: int
) -> subprocess.Popen:
    """A slow compression level keeps capture in the body for seconds."""
    model = random_model(tmp_path / "model", 24 << 20)
    process = _capture_process(
        tmp_path, model, output, "--level", "19", "--threads", "1"
    )
    _wait_for_temp_file(output, process, 256 << 10)
    process.send_signal(signum)
    process.wait(timeout=60)
    return process


PHASES = [
    _interrupt_while_scanning,
    _interrupt_while_reading_params,
    _interrupt_while_compressing,
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"]
)
@pytest.mark.parametrize(
    "phase", PHASES, ids=lambda p: p.__name__.removeprefix("_interrupt_")
)
def test_capture_signal_leaves_earlier_bundle(
    tmp_path: Path, phase: Callable, signum: int
) -> None:
    output = tmp_path / "out"
    before = earlier_bundle(tmp_path, output)

    process = phase(tmp_path, output, signum)

    stderr = process.stderr.read()
    assert process.returncode == EXIT[signum], stderr
    assert MESSAGE[signum] in stderr
    assert "Traceback" not in stderr
    assert snapshot(output) == before
    assert leftovers(output) == []


def test_deferred_signals_delivers_after_block() -> None:
    steps = []

    with pytest.raises(KeyboardInterrupt), deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        steps.append("renamed both")

    assert steps == ["renamed both"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
