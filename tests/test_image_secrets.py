"""Credentials in a container image's history and config fail the capture, and
a clean capture keeps planted credentials out of every byte of the saved image."""

from __future__ import annotations

import gzip
import io
import random
import string
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import zstandard
from click.testing import CliRunner

from goldmaster import container
from goldmaster.cli import cli
from goldmaster.errors import SecretFoundError
from goldmaster.image import (
    ARCHIVE_ARCNAME,
    check_image_credentials,
    image_credential_findings,
    image_section,
)
from goldmaster.parts import Part
from goldmaster.verify import read_manifest
from image_helpers import TINY_MODEL_SOURCE, make_wheel, sha256_file

TOKEN_ALPHABET = string.ascii_letters + string.digits


def fake_token(prefix: str, length: int, alphabet: str = TOKEN_ALPHABET) -> str:
    """A fake credential in the provider's format, made at run time so that no
    token-like literal sits in the repository."""
    rng = random.Random(f"{prefix}{length}{uuid.uuid4()}")
    return prefix + "".join(rng.choice(alphabet) for _ in range(length))


def unique_tag(kind: str) -> str:
    return f"localhost/gm-test-{kind}-{uuid.uuid4().hex[:12]}:1"


def run_cli(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def image_tags(engine: Any):
    """Tags made by a test, removed from the engine afterwards."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        container.remove_image(tag, client=engine)


def build_from(engine: Any, base: str, lines: list[str], tags: list[str]) -> str:
    """Build ``FROM base`` plus ``lines`` under a new tag and return the tag."""
    tag = unique_tag("planted")
    tags.append(tag)
    dockerfile = "\n".join([f"FROM {base}", *lines]) + "\n"
    container.build_image([], dockerfile, tags=[tag], client=engine)
    return tag


# ---------------------------------------------------------------------------
# The scan of one image


@pytest.mark.engine
def test_image_findings_name_history_and_config(
    engine: Any, base_image: Any, image_tags: list[str]
) -> None:
    hf_token = fake_token("hf_", 34, string.ascii_letters)
    gh_token = fake_token("ghp_", 36)
    slack_token = fake_token("xoxb-", 30, string.digits + "-")
    tag = build_from(
        engine,
        base_image.busybox,
        [
            f"ENV HF_TOKEN={hf_token}",
            f"RUN echo {gh_token} > /dev/null",
            f'LABEL io.example.hook="{slack_token}"',
        ],
        image_tags,
    )

    found = image_credential_findings(tag, client=engine)

    history = f"image {tag} history"
    assert [(f.rule, f.where) for f in found] == [
        ("Hugging Face token", f"{history}, step 2 of 4 from the oldest (ENV)"),
        ("GitHub token", f"{history}, step 3 of 4 from the oldest (RUN)"),
        ("Slack token", f"{history}, step 4 of 4 from the oldest (LABEL)"),
        ("Hugging Face token", f"image {tag} config: Env[1]"),
        ("Slack token", f"image {tag} config: Labels.io.example.hook"),
    ]
    described = " ".join(f.describe() for f in found)
    for token in (hf_token, gh_token, slack_token):
        assert token not in described


@pytest.mark.engine
def test_image_findings_cover_cmd_and_entrypoint(
    engine: Any, base_image: Any, image_tags: list[str]
) -> None:
    aws_key = fake_token("AKIA", 16, string.ascii_uppercase + "234567")
    gitlab_token = fake_token("glpat-", 20)
    tag = build_from(
        engine,
        base_image.busybox,
        [
            f'ENTRYPOINT ["/bin/env", "AWS_ACCESS_KEY_ID={aws_key}"]',
            f'CMD ["/bin/echo", "{gitlab_token}"]',
        ],
        image_tags,
    )

    found = image_credential_findings(tag, client=engine)

    config = {(f.rule, f.where) for f in found if " config: " in f.where}
    assert config == {
        ("AWS access key id", f"image {tag} config: Entrypoint[1]"),
        ("GitLab token", f"image {tag} config: Cmd[1]"),
    }


@pytest.mark.engine
def test_clean_base_images_pass_scan(engine: Any, base_image: Any) -> None:
    for image in base_image:
        assert image_credential_findings(image, client=engine) == []
        check_image_credentials(image, client=engine)


# ---------------------------------------------------------------------------
# Capture with a base image that carries a credential


@pytest.fixture
def model_and_code(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "scale.txt").write_text("scale=0.5\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "infer.py").write_text(f"import tinymodel\n# {uuid.uuid4().hex}\n")
    return model, code


@pytest.mark.engine
@pytest.mark.parametrize("instruction", ["ENV", "RUN"])
def test_capture_fails_on_token_in_base_image(
    engine: Any,
    base_image: Any,
    image_tags: list[str],
    isolated_pip: None,
    tiny_venv: Path,
    model_and_code: tuple[Path, Path],
    tmp_path: Path,
    instruction: str,
) -> None:
    token = fake_token("ghp_", 36)
    line = {"ENV": f"ENV GH_TOKEN={token}", "RUN": f"RUN echo {token} > /dev/null"}
    planted = build_from(engine, base_image.python, [line[instruction]], image_tags)
    model, code = model_and_code
    out = tmp_path / "out"
    model_tag = unique_tag("model")
    image_tags.append(model_tag)

    result = run_cli(
        "capture", model, "--name", "tiny", "--version", "1.0",
        "--code", code, "-o", out,
        "--python", tiny_venv, "--wheels", "--strict",
        "--image", "--base-image", planted, "--tag", model_tag,
    )  # fmt: skip

    assert result.exit_code == 1, result.output
    assert "Error: credential found, so no bundle was written" in result.output
    where = f"image {planted} history, step 2 of 2 from the oldest ({instruction})"
    assert f"GitHub token (ghp_…) in {where}" in result.output
    assert "Tip: rebuild the base image without it" in result.output
    assert token not in result.output
    assert not out.exists()
    # The base image failed the scan before the build, so no model image exists.
    assert not container.image_exists(model_tag, client=engine)


# ---------------------------------------------------------------------------
# The built image is scanned too, and removed when it carries a credential


def vendored_parts(folder: Path) -> list[Part]:
    """The parts that capture hands to the image stage, with one vendored wheel."""
    wheel = make_wheel(folder / "wheels", "tinymodel", "1.0", TINY_MODEL_SOURCE)
    weights = folder / "scale.txt"
    weights.write_text("scale=0.5\n")
    script = folder / "infer.py"
    script.write_text(f"import tinymodel\n# {uuid.uuid4().hex}\n")
    lock = f"tinymodel==1.0 --hash=sha256:{sha256_file(wheel)}\n"
    return [
        Part("code/infer.py", source=script),
        Part("weights/scale.txt", source=weights),
        Part("env/requirements.lock", data=lock.encode()),
        Part(f"env/wheels/{wheel.name}", source=wheel),
    ]


def vendored_manifest(remote: str) -> dict[str, Any]:
    return {
        "name": "tiny",
        "version": "1.0",
        "created": "2024-05-01T12:00:00Z",
        "code": {"git": {"commit": "0123abcd", "remote": remote}},
        "environment": {
            "interpreter": {"version": "3.11.2", "major_minor": "3.11"},
            "distributions": [{"name": "tinymodel", "version": "1.0"}],
            "index": {"effective": {"index_url": None}, "sources": []},
            "wheels": {"vendored": True, "count": 1, "missing": []},
        },
    }


@pytest.mark.engine
@pytest.mark.slow
def test_built_image_with_token_is_removed(
    engine: Any, base_image: Any, image_tags: list[str], tmp_path: Path
) -> None:
    """Capture scans the manifest before the build, so only a direct call
    brings a token into a label of the built image."""
    token = fake_token("glpat-", 24)
    manifest = vendored_manifest(f"https://git.example.invalid/{token}/tiny.git")
    tag = unique_tag("built")
    image_tags.append(tag)
    workdir = tmp_path / "work"
    workdir.mkdir()

    with pytest.raises(SecretFoundError) as raised:
        image_section(
            manifest,
            vendored_parts(tmp_path),
            workdir,
            base_image=base_image.python,
            tags=[tag],
            required=True,
        )

    message = raised.value.message
    assert f"GitLab token (glpa…) in image {tag} history, step " in message
    assert "from the oldest (LABEL)" in message
    assert raised.value.exit_code == 1
    assert token not in message
    assert not container.image_exists(tag, client=engine)
    assert not (workdir / "image.tar").exists()


# ---------------------------------------------------------------------------
# End to end: plant credentials everywhere capture reads, grep the saved image


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def planted_repo(repo: Path, password: str, hf_token: str, key_body: str) -> Path:
    """A git repository whose remote URL, .env and private key carry credentials."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(
        repo,
        "remote",
        "add",
        "origin",
        f"https://alice:{password}@git.example.invalid/o/r.git",
    )
    key_header = "-----BEGIN OPENSSH " + "PRIVATE KEY-----"
    (repo / "infer.py").write_text(f"import tinymodel\n# {uuid.uuid4().hex}\n")
    (repo / ".env").write_text(f"HF_TOKEN={hf_token}\n")
    (repo / "id_rsa").write_text(f"{key_header}\n{key_body}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def decompressed(bundle: Path) -> bytes:
    with open(bundle, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
        return reader.read()


def image_archive(raw_bundle: bytes) -> bytes:
    """Return the saved image from a bundle's decompressed tar stream."""
    with tarfile.open(fileobj=io.BytesIO(raw_bundle)) as bundle:
        for member in bundle:
            if member.name.endswith("/" + ARCHIVE_ARCNAME):
                extracted = bundle.extractfile(member)
                assert extracted is not None
                return extracted.read()
    raise AssertionError(f"the bundle has no {ARCHIVE_ARCNAME}")


def archive_contents(archive: bytes) -> list[tuple[str, bytes]]:
    """List every file of the image archive, with compressed layers expanded."""
    contents = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        for member in outer:
            extracted = outer.extractfile(member) if member.isfile() else None
            if extracted is None:
                continue
            data = extracted.read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            elif data[:4] == b"\x28\xb5\x2f\xfd":
                data = zstandard.ZstdDecompressor().stream_reader(data).read()
            contents.append((member.name, data))
    return contents


@pytest.mark.engine
@pytest.mark.slow
def test_capture_image_archive_has_no_planted_values(
    engine: Any,
    base_image: Any,
    image_tags: list[str],
    isolated_pip: None,
    tiny_venv: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    remote_password = fake_token("RemotePw", 12)
    hf_token = fake_token("hf_", 34, string.ascii_letters)
    key_body = fake_token("", 64)
    env_token = fake_token("hf_", 34, string.ascii_letters)
    nvidia_key = fake_token("nvapi-", 40)
    dataset_password = fake_token("DataPw", 12)
    param_password = fake_token("ParamPw", 12)
    secrets = [
        remote_password, hf_token, key_body, env_token, nvidia_key,
        dataset_password, param_password,
    ]  # fmt: skip
    monkeypatch.setenv("HF_TOKEN", env_token)
    monkeypatch.setenv("NVIDIA_API_KEY", nvidia_key)
    repo = planted_repo(tmp_path / "repo", remote_password, hf_token, key_body)
    model = tmp_path / "model"
    model.mkdir()
    (model / "scale.txt").write_text("scale=0.5\n")
    out = tmp_path / "out"
    tag = unique_tag("clean")
    image_tags.append(tag)

    result = run_cli(
        "capture", model, "--name", "tiny", "--version", "1.0",
        "--code", repo, "-o", out,
        "--python", tiny_venv, "--wheels", "--strict",
        "--image", "--base-image", base_image.python, "--tag", tag,
        "--dataset", f"https://bob:{dataset_password}@data.example.invalid/train.parquet",
        "--param", f"mirror=https://carol:{param_password}@mirror.example.invalid/simple",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    bundle = out / "tiny-1.0.gm.tar.zst"
    assert read_manifest(bundle)["image"]["saved"] is True
    raw = decompressed(bundle)
    archive = image_archive(raw)
    contents = archive_contents(archive)
    assert any(name.endswith(".json") for name, _ in contents)
    assert len(contents) >= 3
    on_disk = bundle.read_bytes() + (out / "tiny-1.0.gm.tar.zst.sha256").read_bytes()
    for secret in secrets:
        value = secret.encode()
        assert value not in on_disk, secret
        assert value not in raw, secret
        assert value not in archive, secret
        for name, data in contents:
            assert value not in data, (secret, name)
    assert image_credential_findings(tag, client=engine) == []
