"""Golden-output checks: capture, goldmaster check and restore --check, end to end.

The checks run in real virtual environments with NumPy, on the all-MiniLM-L6-v2
example model and on small scripts written into each test's folder.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from goldmaster.check_runner import (
    COMPLETED,
    NOT_STARTED,
    TIMED_OUT,
    CheckCommand,
    RunContext,
    image_script,
    run_command,
)
from goldmaster.checks import check_specs, restored_context
from goldmaster.errors import UsageError, VerificationError
from helpers import plain_code, run_capture, small_model

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "minilm"
GOLDMASTER = Path(sys.executable).parent / "goldmaster"
NUMPY_REQUIREMENT = (EXAMPLE / "requirements.txt").read_text().strip()
EMBED_CHECK = "python embed.py --out embeddings.npy"
# A PATH without any virtual environment: its python3 has no NumPy.
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"


def _make_numpy_venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run(
        [str(folder / "bin" / "pip"), "install", "-q", NUMPY_REQUIREMENT], check=True
    )
    return folder


@pytest.fixture(scope="session")
def numpy_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the example's NumPy, built once per session."""
    return _make_numpy_venv(tmp_path_factory.mktemp("numpy-venv") / "venv")


@pytest.fixture(scope="session")
def minilm_model(numpy_venv: Path) -> Path:
    model = EXAMPLE / "model"
    if not (model / "model.safetensors").is_file():
        python = numpy_venv / "bin" / "python"
        subprocess.run(
            [str(python), str(EXAMPLE / "fetch_model.py"), str(model)], check=True
        )
    return model


def _environ(venv: Path | None, path: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
    if path is not None:
        env["PATH"] = path
    env["SOURCE_DATE_EPOCH"] = "1767225600"
    env["NO_COLOR"] = "1"
    return env


def goldmaster(
    *args: str | Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GOLDMASTER), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _git_repo_with_example(root: Path) -> Path:
    """Make a git repository whose examples/minilm folder contains embed.py."""
    code = root / "examples" / "minilm"
    code.mkdir(parents=True)
    shutil.copy(EXAMPLE / "embed.py", code / "embed.py")
    (root / "README.md").write_text("example repository\n")
    git = [
        "git",
        "-C",
        str(root),
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.com",
    ]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "example"], check=True)
    return code


@pytest.fixture(scope="session")
def minilm_bundle(
    tmp_path_factory: pytest.TempPathFactory, numpy_venv: Path, minilm_model: Path
) -> Path:
    """A bundle of the example whose check records the embeddings."""
    root = tmp_path_factory.mktemp("minilm")
    code = _git_repo_with_example(root / "repo")
    done = goldmaster(
        "capture", minilm_model, "--name", "minilm", "--version", "1", "--code", code,
        "--output", root / "out", "--check", EMBED_CHECK, "--check-output", "embeddings.npy",
        env=_environ(numpy_venv),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root / "out" / "minilm-1.gm.tar.zst"


def _manifest(bundle: Path) -> dict[str, Any]:
    done = goldmaster("inspect", "--json", bundle, env=_environ(None))
    assert done.returncode == 0, done.stderr
    manifest: dict[str, Any] = json.loads(done.stdout)["manifest"]
    return manifest


def _restore(bundle: Path, dest: Path) -> Path:
    done = goldmaster("restore", bundle, dest, env=_environ(None))
    assert done.returncode == 0, done.stderr
    return dest


def _flip_sign_of_first_weight(path: Path, tensor: str) -> None:
    raw = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert header[tensor]["dtype"] == "F32"
    start = 8 + length + header[tensor]["data_offsets"][0]
    raw[start + 3] ^= 0x80  # the sign bit of a little-endian float32
    path.write_bytes(bytes(raw))


def test_minilm_capture_records_embeddings(minilm_bundle: Path, tmp_path: Path) -> None:
    manifest = _manifest(minilm_bundle)
    (item,) = manifest["checks"]["items"]

    assert item["name"] == "check-1"
    assert item["command"] == EMBED_CHECK
    assert item["exit_status"] == 0
    assert item["deterministic"] is True
    assert item["capture_difference"] is None
    assert manifest["code"]["subdir"] == "examples/minilm"

    dest = _restore(minilm_bundle, tmp_path / "dest")
    recorded = json.loads((dest / item["stdout"]["member"]).read_text())
    assert recorded["sentences"][0].startswith("A golden master")
    assert len(recorded["embeddings"]) == 3
    assert all(len(row) == 384 for row in recorded["embeddings"])
    (output,) = item["files"]
    assert output["path"] == "embeddings.npy"
    assert (dest / output["member"]).stat().st_size == output["size"]
    listed = {entry["path"]: entry["sha256"] for entry in manifest["files"]}
    assert listed[output["member"]] == output["sha256"]


def test_check_restored_folder_uses_its_venv(
    minilm_bundle: Path, tmp_path: Path
) -> None:
    # Restore rebuilds the captured environment, with NumPy, in dest/.venv.
    dest = _restore(minilm_bundle, tmp_path / "dest")
    assert (dest / ".venv/bin/python").exists()

    done = goldmaster("check", "--json", dest, env=_environ(None, PLAIN_PATH))

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] is True
    assert report["where"]["virtual_env"] == str(dest.absolute() / ".venv")
    assert report["where"]["workdir"] == str(dest.absolute() / "code/examples/minilm")
    (check,) = report["checks"]
    assert check["status"] == "identical"
    assert [o["output"] for o in check["outputs"]] == ["stdout", "embeddings.npy"]


def test_check_bundle_restores_to_temporary_folder(
    minilm_bundle: Path, numpy_venv: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    done = goldmaster(
        "check", minilm_bundle, "--tmpdir", scratch, env=_environ(numpy_venv)
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("IDENTICAL")
    assert "OK  1 of 1 checks passed" in done.stdout
    assert list(scratch.iterdir()) == []


def test_restore_check_reports_checks(
    minilm_bundle: Path, numpy_venv: Path, tmp_path: Path
) -> None:
    done = goldmaster(
        "restore", "--check", "--json", minilm_bundle, tmp_path / "dest",
        env=_environ(numpy_venv),
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    stages = json.loads(done.stdout)["stages"]
    assert stages["checks"]["passed"] is True
    assert stages["checks"]["checks"][0]["status"] == "identical"


def test_check_fails_after_flipping_a_weight(
    minilm_bundle: Path, numpy_venv: Path, tmp_path: Path
) -> None:
    dest = _restore(minilm_bundle, tmp_path / "dest")
    recorded = json.loads((dest / "checks/check-1/stdout").read_text())
    # The restored weights are a copy of the model; the check must notice
    # one changed weight in them.
    _flip_sign_of_first_weight(
        dest / "weights/model.safetensors", "embeddings.LayerNorm.weight"
    )

    text = goldmaster("check", dest, env=_environ(numpy_venv))
    done = goldmaster("check", "--json", dest, env=_environ(numpy_venv))

    assert text.returncode == 1
    assert done.returncode == 1
    assert text.stdout.startswith("DIFFERENT")
    assert "check-1" in text.stdout
    assert "FAILED  0 of 1 checks passed" in text.stdout
    (check,) = json.loads(done.stdout)["checks"]
    # The differing output's summary is printed once, under the check.
    assert text.stdout.count(check["outputs"][0]["summary"]) == 1
    assert check["status"] == "different"
    stdout = check["outputs"][0]
    assert stdout["status"] == "different"
    location = stdout["first"]["location"]
    assert location.startswith("$.embeddings[")
    row, column = (int(i) for i in location[len("$.embeddings[") : -1].split("]["))
    assert float(stdout["first"]["expected"]) == recorded["embeddings"][row][column]
    assert stdout["first"]["actual"] != stdout["first"]["expected"]
    assert location in text.stdout
    array = check["outputs"][1]
    assert array["output"] == "embeddings.npy"
    assert array["status"] == "different"
    assert array["first"]["location"].startswith("[")


@pytest.fixture
def script_code(tmp_path: Path) -> Path:
    """A plain code folder with small check scripts and a goldmaster.yaml."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "value.txt").write_text("1.0\n")
    (code / "slow.sh").write_text("echo slow done\n")
    (code / "tool.sh").write_text("#!/bin/sh\necho tool done\n")
    (code / "tool.sh").chmod(0o755)
    config = {
        "checks": [
            {"name": "value", "command": "cat value.txt", "atol": 0.1},
            {"name": "slow", "command": "sh slow.sh", "timeout": 3},
            {"name": "tool", "command": "./tool.sh"},
        ]
    }
    (code / "goldmaster.yaml").write_text(yaml.safe_dump(config))
    return code


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    model = tmp_path / "model" / "weights.bin"
    model.parent.mkdir()
    model.write_bytes(b"\x00" * 64)
    return model


def _capture(
    model: Path, code: Path, out: Path, *extra: str, venv: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Capture without the Python environment, which these checks do not need."""
    return goldmaster(
        "capture", model, "--name", "scripts", "--version", "1", "--code", code,
        "--output", out, "--no-env", *extra, env=_environ(venv),
    )  # fmt: skip


def test_check_reports_timeout_and_missing_command(
    script_code: Path, model_file: Path, tmp_path: Path
) -> None:
    captured = _capture(model_file, script_code, tmp_path / "out")
    assert captured.returncode == 0, captured.stderr
    dest = _restore(tmp_path / "out/scripts-1.gm.tar.zst", tmp_path / "dest")
    # A background child that keeps stdout open must not delay the timeout.
    (dest / "code/slow.sh").write_text("sleep 300 &\nsleep 300\n")
    (dest / "code/tool.sh").unlink()

    started = time.monotonic()
    done = goldmaster("check", "--json", dest, env=_environ(None))
    elapsed = time.monotonic() - started

    assert done.returncode == 1, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["value"]["status"] == "identical"
    assert checks["slow"]["status"] == "timed_out"
    assert checks["slow"]["passed"] is False
    assert checks["slow"]["reason"] == "timed out after 3 s"
    assert checks["tool"]["status"] == "not_started"
    assert checks["tool"]["passed"] is False
    assert "exit status 127" in checks["tool"]["reason"]
    assert elapsed < 60


def test_check_compares_within_tolerance(
    script_code: Path, model_file: Path, tmp_path: Path
) -> None:
    captured = _capture(model_file, script_code, tmp_path / "out")
    assert captured.returncode == 0, captured.stderr
    dest = _restore(tmp_path / "out/scripts-1.gm.tar.zst", tmp_path / "dest")

    (dest / "code/value.txt").write_text("1.0625\n")
    inside = goldmaster("check", "--json", dest, env=_environ(None))
    (dest / "code/value.txt").write_text("1.25\n")
    outside = goldmaster("check", "--json", dest, env=_environ(None))

    within = json.loads(inside.stdout)["checks"][0]
    assert within["status"] == "within_tolerance"
    assert within["outputs"][0]["max_abs_diff"] == 0.0625
    assert within["reason"] == "max abs diff 0.0625, max rel diff 0.0625"
    different = json.loads(outside.stdout)["checks"][0]
    assert different["status"] == "different"
    assert different["outputs"][0]["first"] == {
        "location": "line 1, number 1",
        "expected": "1.0",
        "actual": "1.25",
    }
    assert outside.returncode == 1


def test_capture_records_random_check_as_nondeterministic(
    model_file: Path, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    command = 'python3 -c "import random; print(random.random())"'

    done = _capture(model_file, code, tmp_path / "out", "--check", command)

    assert done.returncode == 0, done.stderr
    assert "check 'check-1' is nondeterministic" in done.stderr
    (item,) = _manifest(tmp_path / "out/scripts-1.gm.tar.zst")["checks"]["items"]
    assert item["deterministic"] is False
    (difference,) = item["capture_difference"]
    assert difference["output"] == "stdout"
    assert difference["status"] == "different"
    assert difference["max_abs_diff"] > 0
    assert difference["first"]["location"] == "line 1, number 1"


def test_capture_fails_when_check_times_out(model_file: Path, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()

    done = _capture(
        model_file,
        code,
        tmp_path / "out",
        "--check",
        "sleep 30",
        "--check-timeout",
        "1",
    )

    assert done.returncode == 1
    assert (
        "check 'check-1' timed out after 1 s in its first run at capture" in done.stderr
    )
    # capture created the output folder, so the failed capture removes it.
    assert not (tmp_path / "out").exists()


def test_capture_fails_when_command_is_missing(
    model_file: Path, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()

    done = _capture(model_file, code, tmp_path / "out", "--check", "no-such-command-gm")

    assert done.returncode == 1
    assert "check 'check-1' could not start" in done.stderr
    assert "exit status 127" in done.stderr


def test_capture_fails_when_output_is_not_written(
    model_file: Path, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()

    done = _capture(
        model_file,
        code,
        tmp_path / "out",
        "--check",
        "echo hi",
        "--check-output",
        "x.json",
    )

    assert done.returncode == 1
    assert "did not write its output x.json" in done.stderr


ENVIRONMENT_CHECK = 'echo "$GOLDMASTER_MODEL_DIR|$GOLDMASTER_MODEL_PATH|$VIRTUAL_ENV|$(command -v python)"'


@pytest.mark.parametrize("how", ["VIRTUAL_ENV", "--python"])
def test_check_environment_names_model_and_python(
    model_file: Path, numpy_venv: Path, tmp_path: Path, how: str
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    extra = ["--check", ENVIRONMENT_CHECK]
    if how == "--python":
        extra += ["--python", str(numpy_venv / "bin" / "python")]

    done = _capture(
        model_file,
        code,
        tmp_path / "out",
        *extra,
        venv=numpy_venv if how == "VIRTUAL_ENV" else None,
    )

    assert done.returncode == 0, done.stderr
    dest = _restore(tmp_path / "out/scripts-1.gm.tar.zst", tmp_path / "dest")
    recorded = (dest / "checks/check-1/stdout").read_text().strip().split("|")
    assert recorded == [
        str(model_file.parent),
        str(model_file),
        str(numpy_venv),
        str(numpy_venv / "bin" / "python"),
    ]


# --- library -------------------------------------------------------------------------


def test_check_specs_merge_config_and_command_line(tmp_path: Path) -> None:
    config = {
        "checks": [
            {
                "name": "embed",
                "command": "python embed.py",
                "outputs": "e.npy",
                "rtol": "1e-5",
            },
            {"command": "python other.py", "timeout": 5},
        ]
    }
    (tmp_path / "goldmaster.yaml").write_text(yaml.safe_dump(config))

    specs = check_specs(tmp_path, ["echo hi"], ["out/a.csv"], atol=0.5, timeout=30)

    assert [s.name for s in specs] == ["embed", "check-2", "check-3"]
    assert specs[0].outputs == ["e.npy"]
    assert specs[0].rtol == 1e-5
    assert specs[0].atol == 0.5
    assert specs[0].timeout == 30
    assert specs[1].timeout == 5
    assert specs[1].tolerance is not None
    assert specs[2].outputs == ["out/a.csv"]


def test_check_specs_default_to_exact_comparison(tmp_path: Path) -> None:
    (spec,) = check_specs(tmp_path, ["echo hi"], [])

    assert spec.tolerance is None
    assert spec.timeout == 600


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"checks": [{"command": "x", "shell": "bash"}]}, "unknown key 'shell'"),
        ({"checks": [{"name": "a b", "command": "x"}]}, "invalid check name 'a b'"),
        ({"checks": [{"name": "a"}]}, "check 'a' has no command"),
        ({"checks": [{"command": "x", "outputs": ["../up.txt"]}]}, "invalid check output path"),
        ({"checks": [{"command": "x", "outputs": ["/abs.txt"]}]}, "invalid check output path"),
        ({"checks": [{"command": "x", "rtol": -1}]}, "invalid rtol -1"),
        ({"checks": [{"command": "x", "timeout": 0}]}, "invalid timeout 0"),
        ({"checks": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]}, "duplicate check name 'a'"),
        ({"checks": "echo hi"}, "must be a list of mappings"),
    ],
)  # fmt: skip
def test_check_specs_reject_invalid_config(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    (tmp_path / "goldmaster.yaml").write_text(yaml.safe_dump(config))

    with pytest.raises(UsageError) as raised:
        check_specs(tmp_path, [], [])

    assert message in raised.value.message


def test_check_specs_reject_outputs_for_two_commands(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        check_specs(tmp_path, ["a", "b"], ["out.json"])

    assert "--check-output needs exactly one --check, got 2" in raised.value.message


def _context(workdir: Path) -> RunContext:
    return RunContext(workdir, workdir, workdir, None, None)


def test_run_command_restores_old_output_when_not_written(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "out.txt").write_text("old")

    run = run_command(CheckCommand("c", "exit 3", ["out.txt"], 10), _context(workdir))

    assert run.status == COMPLETED
    assert run.exit_status == 3
    assert run.outputs == {"out.txt": None}
    assert (workdir / "out.txt").read_text() == "old"
    assert sorted(p.name for p in workdir.iterdir()) == ["out.txt"]


def test_run_command_reads_new_output(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "out.txt").write_text("old")
    command = "mkdir -p sub && echo new > out.txt && echo deep > sub/b.txt"

    run = run_command(
        CheckCommand("c", command, ["out.txt", "sub/b.txt"], 10), _context(workdir)
    )

    assert run.outputs == {"out.txt": b"new\n", "sub/b.txt": b"deep\n"}
    assert sorted(p.name for p in workdir.iterdir()) == ["out.txt", "sub"]


def test_run_command_reports_missing_workdir(tmp_path: Path) -> None:
    run = run_command(CheckCommand("c", "true", [], 10), _context(tmp_path / "gone"))

    assert run.status == NOT_STARTED
    assert "cannot start /bin/sh" in run.reason


def test_run_command_kills_on_timeout(tmp_path: Path) -> None:
    started = time.monotonic()

    run = run_command(
        CheckCommand("c", "echo begun; sleep 60", [], 0.5), _context(tmp_path)
    )

    assert run.status == TIMED_OUT
    assert run.exit_status is None
    assert run.stdout == b"begun\n"
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("status", [0, 4])
def test_image_script_copies_outputs_and_keeps_status(
    tmp_path: Path, status: int
) -> None:
    workdir = tmp_path / "code"
    (workdir / "out").mkdir(parents=True)
    (workdir / "out" / "e.txt").write_text("baked into the image")
    (workdir / "stale.txt").write_text("baked into the image")
    mount = tmp_path / "mount"
    mount.mkdir()
    command = f"echo 'a b' > out/e.txt; exit {status}"
    script = image_script(
        CheckCommand("c", command, ["out/e.txt", "stale.txt"], 10), str(mount)
    )

    done = subprocess.run(
        ["/bin/sh", "-c", script], cwd=workdir, capture_output=True, check=False
    )

    assert done.returncode == status
    assert (mount / "out" / "e.txt").read_text() == "a b\n"
    assert not (mount / "stale.txt").exists()


def test_check_image_needs_recorded_image(
    script_code: Path, model_file: Path, tmp_path: Path
) -> None:
    captured = _capture(model_file, script_code, tmp_path / "out")
    assert captured.returncode == 0, captured.stderr
    dest = _restore(tmp_path / "out/scripts-1.gm.tar.zst", tmp_path / "dest")

    done = goldmaster("check", "--image", dest, env=_environ(None))

    assert done.returncode == 2
    assert "Error: the bundle records no container image" in done.stderr


def test_check_rejects_code_subdir_outside_code(tmp_path: Path) -> None:
    manifest = {"code": {"subdir": "../outside"}, "model": {"kind": "folder"}}

    with pytest.raises(VerificationError) as raised:
        restored_context(tmp_path, manifest, {})

    assert "invalid code subdir '../outside'" in raised.value.message


def test_check_folder_without_manifest_fails(tmp_path: Path) -> None:
    done = goldmaster("check", tmp_path, env=_environ(None))

    assert done.returncode == 2
    assert "not a restored bundle" in done.stderr


def _small_bundle(root: Path) -> Path:
    small_model(root / "model")
    code = plain_code(root / "code")
    result = run_capture(root / "model", code, root / "out", name="m", version="1")
    return result.bundle


@pytest.mark.parametrize(
    ("tmpdir", "message"),
    [
        ("absent", "--tmpdir {} not found"),
        ("/proc", "cannot create a temporary folder in /proc"),
    ],
)
def test_check_tmpdir_reports_path(tmp_path: Path, tmpdir: str, message: str) -> None:
    bundle = _small_bundle(tmp_path)
    folder = tmp_path / tmpdir
    result = goldmaster("check", bundle, "--tmpdir", folder, env=dict(os.environ))
    assert result.returncode == 2
    assert message.format(folder) in result.stderr
    assert "unexpected failure" not in result.stderr
