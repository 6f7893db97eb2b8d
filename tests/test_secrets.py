"""Credentials never reach a bundle: URLs are redacted, credential files are
left out, and the final scan fails a capture that would publish a token."""

from __future__ import annotations

import random
import string
import subprocess
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

from goldmaster.capture import CaptureOptions, capture
from goldmaster.cli import cli
from goldmaster.errors import SecretFoundError
from goldmaster.secrets import CHUNK, check_capture, scan_bytes, scan_file, should_scan
from goldmaster.verify import read_manifest


def fake(
    prefix: str, length: int, alphabet: str = string.ascii_letters + string.digits
) -> str:
    """A fake credential in the provider's format, made at run time so that no
    token-like literal sits in the repository."""
    rng = random.Random(prefix + str(length))
    return prefix + "".join(rng.choice(alphabet) for _ in range(length))


FAKES = {
    "AWS access key id": fake("AKIA", 16, string.ascii_uppercase + "234567"),
    "AWS secret access key": "aws_secret_access_key = " + fake("", 40),
    "GitHub token": fake("ghp_", 36),
    "Hugging Face token": fake("hf_", 34, string.ascii_letters),
    "OpenAI API key": fake("sk-proj-", 60, string.ascii_letters + "_-")
    + "T3Blbk"
    + "FJ"
    + fake("", 30),
    "Slack token": fake("xoxb-", 40, string.digits + "-"),
    "private key": "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n" + fake("", 64) + "\n",
    "password in a URL": "https://alice:"
    + fake("", 12)
    + "@git.example.invalid/org/repo.git",
    "GitLab token": fake("glpat-", 20),
    "Google API key": fake("AIza", 35),
}


@pytest.mark.parametrize("rule", sorted(FAKES))
def test_scan_bytes_finds_each_format(rule: str) -> None:
    text = f"first line\nvalue: {FAKES[rule]}\n".encode()

    found = scan_bytes(text, "env/pip.conf")

    assert [f.rule for f in found] == [rule]
    assert found[0].where == "env/pip.conf line 2"
    assert FAKES[rule][8:] not in found[0].describe()


def test_scan_bytes_finds_fine_grained_github_token() -> None:
    token = fake("github_pat_", 82, string.ascii_letters + string.digits + "_")

    assert [f.rule for f in scan_bytes(token.encode(), "x")] == ["GitHub token"]


@pytest.mark.parametrize(
    "text",
    [
        "sha256: " + "ab" * 32,
        "commit: 0123456789abcdef0123456789abcdef01234567",
        "url: https://REDACTED@git.example.invalid/org/repo.git",
        "index: https://pypi.org/simple",
        "remote: git@github.com:org/repo.git",
        "from huggingface_hub import hf_hub_download",
        "name: scikit-learn",
        "task-sk-runner",
        "AKIA-not-a-key",
        "-----BEGIN PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "hf_transfer==0.1.8",
    ],
)
def test_scan_bytes_ignores_ordinary_text(text: str) -> None:
    assert scan_bytes(text.encode(), "x") == []


def test_scan_file_finds_token_across_chunks(tmp_path: Path) -> None:
    token = FAKES["GitHub token"]
    path = tmp_path / "build.log"
    filler = b"x" * 99 + b"\n"
    head = filler * ((CHUNK - 10) // len(filler))
    head += b" " * (CHUNK - 10 - len(head))
    path.write_bytes(head + token.encode() + b"\n" + filler * 3)

    found = scan_file(path, "image/build.log")

    line = head.count(b"\n") + 1
    assert len(found) == 1
    assert found[0].where == f"image/build.log line {line}"


def test_scan_file_reports_each_token_once(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes((FAKES["Slack token"] + "\n").encode() * 3 + b"z" * (3 * CHUNK))

    found = scan_file(path, "a.log")

    assert [f.where for f in found] == ["a.log line 1", "a.log line 2", "a.log line 3"]


@pytest.mark.parametrize(
    ("arcname", "expected"),
    [
        ("env/requirements.lock", True),
        ("env/pip-freeze.txt", True),
        ("system/nvidia-smi.xml", True),
        ("image/Dockerfile", True),
        ("image/build.log", True),
        ("git/uncommitted.diff", True),
        ("code/requirements.txt", True),
        ("code/poetry.lock", True),
        ("code/pyproject.toml", True),
        ("code/sub/uv.toml", True),
        ("code/dev-requirements.txt", True),
        ("code/requirements/base.in", True),
        ("code/train.log", True),
        ("code/train.py", False),
        ("code/config.toml", False),
        ("weights/model.safetensors", False),
        ("weights/requirements.txt", False),
        ("env/wheels/torch-2.3.0-cp311-linux_x86_64.whl", False),
        ("image/image.tar", False),
    ],
)
def test_should_scan_selects_lockfiles_logs_and_probe_output(
    arcname: str, expected: bool
) -> None:
    assert should_scan(arcname) is expected


class _Member:
    def __init__(
        self, arcname: str, data: bytes | None = None, source: Path | None = None
    ):
        self.arcname = arcname
        self.data = data
        self.source = source


def test_check_capture_names_manifest_key() -> None:
    manifest = {"params": {"lr": 0.1, "hub_token": FAKES["Hugging Face token"]}}

    with pytest.raises(SecretFoundError) as raised:
        check_capture(manifest, [])

    assert "Hugging Face token" in raised.value.message
    assert "manifest.yaml: params.hub_token" in raised.value.message
    assert FAKES["Hugging Face token"] not in raised.value.message
    assert raised.value.exit_code == 1


def test_check_capture_names_lockfile_line(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"torch==2.3.0\n--extra-index-url {FAKES['password in a URL']}\n")

    with pytest.raises(SecretFoundError) as raised:
        check_capture({}, [_Member("env/requirements.lock", source=lock)])

    assert "password in a URL" in raised.value.message
    assert "env/requirements.lock line 2" in raised.value.message


def test_check_capture_scans_generated_members() -> None:
    log = f"Step 3/9 : ENV OPENAI_API_KEY={FAKES['OpenAI API key']}\n".encode()

    with pytest.raises(SecretFoundError) as raised:
        check_capture({}, [_Member("image/build.log", data=log)])

    assert "OpenAI API key" in raised.value.message
    assert "image/build.log line 1" in raised.value.message


def test_check_capture_skips_weights_and_code() -> None:
    token = FAKES["GitHub token"].encode()

    check_capture({}, [_Member("weights/vocab.txt", data=token)])
    check_capture({}, [_Member("code/tests/fixtures.py", source=Path("/nonexistent"))])


# ---------------------------------------------------------------------------
# End to end: plant credentials everywhere capture looks, grep the bundle


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, object]:
    """A git repository and model with fake credentials in every place that
    capture reads: the remote URL, tracked .env and id_rsa files."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    remote_password = fake("RemotePw", 10)
    remote = f"https://alice:{remote_password}@git.example.invalid/o/r.git"
    git(repo, "remote", "add", "origin", remote)

    hf_token = FAKES["Hugging Face token"]
    key_body = fake("", 64)
    key_header = "-----BEGIN OPENSSH " + "PRIVATE KEY-----"
    (repo / "train.py").write_text("print('train')\n")
    (repo / ".env").write_text(f"HF_TOKEN={hf_token}\n")
    (repo / "id_rsa").write_text(f"{key_header}\n{key_body}\n")
    (repo / "deploy.pem").write_text(f"{key_header}\n{key_body}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.bin").write_bytes(b"\0" * 4096)
    return {
        "repo": repo,
        "model": model,
        "out": tmp_path / "out",
        "secrets": [remote_password, hf_token, key_body],
    }


def decompressed(bundle: Path) -> bytes:
    with open(bundle, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
        return reader.read()


def test_capture_keeps_planted_credentials_out(planted: dict) -> None:
    dataset_password = fake("DataPw", 10)
    param_password = fake("ParamPw", 10)
    query_token = fake("QueryTok", 12)
    options = CaptureOptions(
        model=planted["model"],
        output=planted["out"],
        code=planted["repo"],
        datasets=[
            f"https://bob:{dataset_password}@data.example.invalid/train.parquet?token={query_token}"
        ],
        params={
            "mirror": f"https://carol:{param_password}@mirror.example.invalid/simple",
            "lr": 0.1,
        }, env=False)

    result = capture(options)

    raw = decompressed(result.bundle)
    on_disk = result.bundle.read_bytes() + result.sidecar.read_bytes()
    for secret in planted["secrets"] + [dataset_password, param_password, query_token]:
        assert secret.encode() not in raw, secret
        assert secret.encode() not in on_disk, secret
    manifest = read_manifest(result.bundle)
    assert manifest["code"]["left_out_secrets"] == [".env", "deploy.pem", "id_rsa"]
    assert (
        manifest["code"]["git"]["remote"]["url"]
        == "https://REDACTED@git.example.invalid/o/r.git"
    )
    assert manifest["datasets"] == [
        "https://REDACTED@data.example.invalid/train.parquet?token=REDACTED"
    ]
    assert (
        manifest["params"]["mirror"] == "https://REDACTED@mirror.example.invalid/simple"
    )
    assert b"train.py" in raw


def test_capture_fails_on_token_in_param(planted: dict) -> None:
    token = FAKES["GitHub token"]

    result = CliRunner().invoke(
        cli,
        [
            "capture", str(planted["model"]),
            "--code", str(planted["repo"]),
            "--output", str(planted["out"]),
            "--param", f"gh_token={token}",
        ],
    )  # fmt: skip

    assert result.exit_code == 1, result.output
    assert "Error: credential found, so no bundle was written" in result.output
    assert "GitHub token (ghp_…) in manifest.yaml: params.gh_token" in result.output
    assert token not in result.output
    assert not planted["out"].exists()


def test_capture_fails_on_token_in_uncommitted_diff(planted: dict) -> None:
    """A tracked .env stays out of code/, but its uncommitted change would
    reach the bundle through git/uncommitted.diff."""
    token = FAKES["AWS access key id"]
    (planted["repo"] / ".env").write_text(f"AWS_ACCESS_KEY_ID={token}\n")
    options = CaptureOptions(
        model=planted["model"], output=planted["out"], code=planted["repo"], env=False)

    with pytest.raises(SecretFoundError) as raised:
        capture(options)

    assert (
        "AWS access key id (AKIA…) in git/uncommitted.diff line" in raised.value.message
    )
    assert not planted["out"].exists()


def test_capture_fails_on_password_in_lockfile(planted: dict) -> None:
    repo = planted["repo"]
    (repo / "requirements.txt").write_text(
        f"--index-url {FAKES['password in a URL']}\nnumpy==2.0.0\n"
    )
    git(repo, "add", "requirements.txt")
    git(repo, "commit", "-q", "-m", "pin")
    options = CaptureOptions(model=planted["model"], output=planted["out"], code=repo, env=False)

    with pytest.raises(SecretFoundError) as raised:
        capture(options)

    assert (
        "password in a URL (https://…:…@) in code/requirements.txt line 1"
        in raised.value.message
    )
    assert not planted["out"].exists()


def test_capture_fails_on_password_in_pyproject(planted: dict) -> None:
    """An index URL in pyproject.toml is scanned like one in a requirements file."""
    repo = planted["repo"]
    url = FAKES["password in a URL"]
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "m"\nversion = "0"\n\n'
        f'[[tool.uv.index]]\nname = "private"\nurl = "{url}"\n'
    )
    git(repo, "add", "pyproject.toml")
    git(repo, "commit", "-q", "-m", "index")
    options = CaptureOptions(model=planted["model"], output=planted["out"], code=repo, env=False)

    with pytest.raises(SecretFoundError) as raised:
        capture(options)

    assert (
        "password in a URL (https://…:…@) in code/pyproject.toml line 7"
        in raised.value.message
    )
    assert not planted["out"].exists()
