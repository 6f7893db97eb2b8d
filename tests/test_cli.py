"""The command line: help text, exit statuses, stdout for results, stderr for the rest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import Inputs, Invoke
from goldmaster import __version__
from goldmaster.cli import cli
from goldmaster.commands.common import output_options
from goldmaster.progress import Reporter
from goldmaster.verify import read_manifest
from helpers import paths_under

COMMANDS = [
    "capture",
    "check",
    "diff",
    "doctor",
    "inspect",
    "keygen",
    "list",
    "pull",
    "push",
    "restore",
    "sign",
    "verify",
]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def test_commands_registered() -> None:
    ctx = click.Context(cli)
    assert sorted(cli.list_commands(ctx)) == sorted(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name


def test_inspect_verify_skip_heavy_imports() -> None:
    # inspect and verify of a local bundle must start fast: they never need
    # the Docker SDK, the registry client or the cryptography package.
    code = (
        "import sys, click; from goldmaster.app import cli; "
        "ctx = click.Context(cli); "
        "[cli.get_command(ctx, n) for n in ('inspect', 'verify')]; "
        "heavy = [m for m in ('docker', 'oras', 'cryptography', 'requests') "
        "if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_text(name: str, invoke: Invoke) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None

    result = invoke(name, "--help")

    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: cli {name} ")
    assert command.help and command.help.split("\n")[0] in result.stdout
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help text"
    for option in ("--json", "--quiet", "--verbose"):
        assert option in result.stdout


def test_group_help_lists_commands(invoke: Invoke) -> None:
    result = invoke("--help")

    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


def test_version_option(invoke: Invoke) -> None:
    result = invoke("--version")

    assert result.exit_code == 0
    assert result.stdout == f"goldmaster, version {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "{missing}"],
        ["inspect", "{missing}"],
        ["restore", "{missing}", "{tmp}/dest"],
        ["capture", "{missing}", "-o", "{tmp}/out"],
    ],
    ids=["verify", "inspect", "restore", "capture"],
)
def test_missing_input_exits_2(args: list[str], tmp_path: Path, invoke: Invoke) -> None:
    filled = [a.format(missing=tmp_path / "missing", tmp=tmp_path) for a in args]

    result = invoke(*filled)

    assert result.exit_code == 2
    assert result.stdout == ""
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert str(tmp_path / "missing") in errors[0]
    assert "Traceback" not in result.stderr


def test_verbose_shows_traceback(tmp_path: Path, invoke: Invoke) -> None:
    result = invoke("verify", "--verbose", tmp_path / "missing")

    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "goldmaster.errors.InputError" in result.stderr
    assert len(_error_lines(result.stderr)) == 1
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: bundle not found")


@click.command()
@output_options
def _broken(as_json: bool, reporter: Reporter, **_: object) -> None:
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize("verbose", [False, True])
def test_unexpected_error_exits_2(verbose: bool) -> None:
    args = ["--verbose"] if verbose else []

    result = CliRunner().invoke(_broken, args)

    assert result.exit_code == 2
    assert _error_lines(result.stderr) == [
        "Error: unexpected failure: RuntimeError('disk on fire')"
    ]
    assert ("Traceback" in result.stderr) is verbose
    assert ("rerun with --verbose" in result.stderr) is not verbose


def test_usage_error_exits_2(invoke: Invoke, bundle: Path) -> None:
    result = invoke("verify", "--no-such-option", bundle)

    assert result.exit_code == 2
    assert len(_error_lines(result.stderr)) == 1
    assert "--no-such-option" in result.stderr


def test_bad_metrics_yaml_one_line(
    inputs: Inputs, tmp_path: Path, invoke: Invoke
) -> None:
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text("loss: 0.2\nacc: [0.9\n")

    result = invoke(
        "capture", inputs.model, "--code", inputs.code, "-o", tmp_path / "out",
        "--metrics-file", metrics,
    )

    lines = [line for line in result.stderr.splitlines() if not line.startswith("goldmaster:")]
    assert result.exit_code == 2
    assert lines[0].startswith(f"Error: --metrics-file file {metrics} is not valid")
    assert "at line 3, column 1" in lines[0]
    assert lines[1].startswith("Tip: ")
    assert len(lines) == 2, result.stderr


def test_bad_manifest_yaml_one_line(tmp_path: Path) -> None:
    from goldmaster import manifest
    from goldmaster.errors import BundleFormatError

    with pytest.raises(BundleFormatError) as info:
        manifest.load(b"schema: goldmaster/v1\nname: [x\n")

    assert "\n" not in info.value.message
    assert "line 3, column 1" in info.value.message


@pytest.mark.parametrize("value", ["novalue", "=3"])
def test_invalid_param_exits_2(
    value: str, inputs: Inputs, tmp_path: Path, invoke: Invoke
) -> None:
    result = invoke(
        "capture", inputs.model, "--code", inputs.code, "-o", tmp_path, "--param", value
    )

    assert result.exit_code == 2
    assert len(_error_lines(result.stderr)) == 1
    assert "KEY=VALUE" in result.stderr


def test_capture_result_on_stdout(
    inputs: Inputs, tmp_path: Path, invoke: Invoke
) -> None:
    out = tmp_path / "out"

    result = invoke(
        "capture", inputs.model, "--code", inputs.code, "-o", out, "--version", "1",
        "--param", "lr=0.001", "--param", "epochs=3", "--param", "tag=v1", "--dataset", "s3://d",
    )  # fmt: skip

    bundle = out / "tiny-bert-1.gm.tar.zst"
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [result.stdout.strip()]
    assert result.stdout.startswith(f"{bundle}  ")
    assert "sha256 " in result.stdout
    assert "goldmaster: scanning the model" in result.stderr
    assert f"goldmaster: writing {bundle.name}" in result.stderr
    assert str(bundle) not in result.stderr
    inspected = json.loads(invoke("inspect", "--json", bundle).stdout)["manifest"]
    assert inspected["params"] == {"epochs": 3, "lr": 0.001, "tag": "v1"}
    assert inspected["datasets"] == ["s3://d"]


@pytest.mark.parametrize(
    "raw, value",
    [
        ("1e-4", 1e-4),
        ("0.001", 0.001),
        ("3", 3),
        ("-2", -2),
        ("true", True),
        ("false", False),
        ("yes", "yes"),
        ("on", "on"),
        ("011", "011"),
        ("1:30", "1:30"),
        ("0x10", "0x10"),
        ("NaN", "NaN"),
        ("null", "null"),
        ("[1, 2]", "[1, 2]"),
        ("adamw", "adamw"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_param_values_typed_like_json(
    raw: str, value: object, inputs: Inputs, tmp_path: Path, invoke: Invoke
) -> None:
    result = invoke(
        "capture", inputs.model, "--code", inputs.code, "-o", tmp_path, "--json", "-q",
        "--param", f"p={raw}",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    bundle = json.loads(result.stdout)["bundle"]
    params = json.loads(invoke("inspect", "--json", bundle).stdout)["manifest"][
        "params"
    ]
    assert params == {"p": value}
    assert type(params["p"]) is type(value)


def test_capture_json_keys(inputs: Inputs, tmp_path: Path, invoke: Invoke) -> None:
    result = invoke(
        "capture",
        inputs.model,
        "--code",
        inputs.code,
        "-o",
        tmp_path / "out",
        "--json",
        "-q",
    )

    data = json.loads(result.stdout)
    assert result.exit_code == 0
    assert list(data) == [
        "schema",
        "bundle",
        "sidecar",
        "sha256",
        "size",
        "name",
        "version",
        "created",
        "files",
        "input_bytes",
        "notices",
    ]
    assert data["schema"] == "goldmaster.capture/v1"
    assert Path(data["bundle"]).is_file()
    manifest = read_manifest(Path(data["bundle"]))
    assert data["files"] == len(manifest["files"])
    assert len(paths_under(manifest, "weights", "code")) == 5
    # Quiet keeps only notices on stderr, such as the one for a host without
    # an NVIDIA GPU, and each of them is also in the JSON.
    assert result.stderr == "".join(f"Notice: {n}\n" for n in data["notices"])


def test_quiet_keeps_notices(tmp_path: Path, inputs: Inputs, invoke: Invoke) -> None:
    (inputs.model / "broken.safetensors").write_bytes(b"\x01")

    result = invoke(
        "capture", inputs.model, "--code", inputs.code, "-o", tmp_path / "o", "-q"
    )

    assert result.exit_code == 0
    assert "goldmaster:" not in result.stderr
    assert (
        "Notice: weights/broken.safetensors: invalid safetensors header"
        in result.stderr
    )


def test_code_defaults_to_current_folder(
    inputs: Inputs, tmp_path: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(inputs.code)

    result = invoke("capture", inputs.model, "-o", tmp_path / "out", "--json", "-q")

    manifest = json.loads(
        invoke("inspect", "--json", json.loads(result.stdout)["bundle"]).stdout
    )
    assert manifest["manifest"]["code"]["root_name"] == "code"
    assert manifest["manifest"]["code"]["files"] == 2


def test_verify_progress_on_stderr(bundle: Path, invoke: Invoke) -> None:
    result = invoke("verify", bundle)

    assert result.stderr == f"goldmaster: verifying {bundle.name}\n"
    assert result.stdout.startswith("OK")


def test_console_script_round_trip(inputs: Inputs, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("goldmaster")
    out = tmp_path / "out"

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *map(str, args)], capture_output=True, text=True, check=False
        )

    # The console script runs outside the invoke fixture, so the Python
    # environment is left out here and restore does not rebuild it.
    captured = run(
        "capture", inputs.model, "--code", inputs.code, "-o", out, "--version", "1",
        "--no-env",
    )  # fmt: skip
    bundle = out / "tiny-bert-1.gm.tar.zst"
    verified = run("verify", bundle)
    restored = run("restore", bundle, tmp_path / "dest")
    cut = tmp_path / "cut.gm.tar.zst"
    cut.write_bytes(bundle.read_bytes()[:-100])
    broken = run("verify", cut)

    assert captured.returncode == 0, captured.stderr
    assert verified.returncode == 0, verified.stderr
    assert restored.returncode == 0, restored.stderr
    assert broken.returncode == 2
    assert broken.stdout == ""
    (error,) = _error_lines(broken.stderr)
    # The message names the member being read when the data ran out, or the
    # last complete one.
    assert re.fullmatch(
        r"Error: the bundle is truncated (after|in) member 'tiny-bert-1/[^']+'", error
    )
    assert "Traceback" not in broken.stderr


def _run_on_terminal(args: list[str]) -> tuple[int, str, str]:
    """Run the console script with stderr on a pseudo-terminal. Return the
    exit status, stdout and everything written to the terminal."""
    import pty

    script = Path(sys.executable).with_name("goldmaster")
    main, child = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100")
    process = subprocess.Popen(
        [script, *args], stdout=subprocess.PIPE, stderr=child, env=env
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO once the child closes its end
            break
        if not data:
            break
        chunks.append(data)
    stdout = process.stdout.read().decode() if process.stdout else ""
    process.wait()
    os.close(main)
    return process.returncode, stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    "command, label",
    [
        ("capture", "hashing and compressing"),
        ("verify", "verifying"),
        ("restore", "extracting"),
    ],
)
def test_progress_bar_on_terminal(command: str, label: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(os.urandom(24 << 20))
    code = tmp_path / "code"
    code.mkdir()
    bundle = tmp_path / "out" / "m-1.gm.tar.zst"
    capture_args = [
        "capture",
        str(model),
        "--code",
        str(code),
        "-o",
        str(tmp_path / "out"),
    ]
    capture_args += ["--name", "m", "--version", "1", "--no-env"]
    if command != "capture":
        subprocess.run(
            [Path(sys.executable).with_name("goldmaster"), *capture_args], check=True
        )
    args = {
        "capture": capture_args,
        "verify": ["verify", str(bundle)],
        "restore": ["restore", str(bundle), str(tmp_path / "dest")],
    }[command]

    status, stdout, terminal = _run_on_terminal(args)

    assert status == 0, terminal
    bars = [
        line
        for line in terminal.split("\r")
        if line.replace("\x1b[2K", "").startswith(label)
    ]
    assert bars, terminal
    assert "/25.2 MB" in bars[-1] or "/25.3 MB" in bars[-1], bars[-1]
    assert label not in stdout


@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_sigterm_during_startup_exits_143(delay: float, tmp_path: Path) -> None:
    """SIGTERM while click, rich and the commands are still being imported ends
    like a SIGTERM inside a command. The FIFO makes verify block in open() if
    start-up finishes first, so the signal always lands in this process."""
    import signal
    import time

    fifo = tmp_path / "bundle.gm.tar.zst"
    os.mkfifo(fifo)
    script = Path(sys.executable).with_name("goldmaster")
    process = subprocess.Popen(
        [script, "verify", fifo], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 143, stderr
    assert stderr.decode().splitlines()[-1] == (
        "Error: terminated; nothing was left half-written"
    )
    assert stdout == b""


def test_capture_rejects_repeated_param(invoke: Invoke, inputs: Inputs, tmp_path: Path) -> None:
    result = invoke(
        "capture", inputs.model, "--code", inputs.code, "-o", tmp_path / "out",
        "--param", "lr=1", "--param", "lr=2",
    )  # fmt: skip

    assert result.exit_code == 2
    assert "'lr' is given twice" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_capture_rejects_empty_name(invoke: Invoke, inputs: Inputs, tmp_path: Path) -> None:
    result = invoke("capture", inputs.model, "--code", inputs.code, "-o", tmp_path, "--name", "")

    assert result.exit_code == 2
    assert "invalid name ''" in result.stderr
