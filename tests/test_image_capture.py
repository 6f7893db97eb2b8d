"""Capture and restore of the container image through the CLI, on the real engine."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from goldmaster import container
from goldmaster.cli import cli
from goldmaster.dockerfile import MANIFEST_DIGEST_LABEL, manifest_digest
from goldmaster.image import DOCKERFILE_ARCNAME
from goldmaster.verify import read_manifest
from image_helpers import TINY_MODEL_SOURCE

INFERENCE_SCRIPT = (
    "import os, tinymodel\n"
    "weights = os.path.join(os.environ['GOLDMASTER_WEIGHTS'], 'scale.txt')\n"
    "print(open(weights).read().strip(), tinymodel.predict([1, 2, 3]))\n"
)


@pytest.fixture
def model_and_code(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "scale.txt").write_text("scale=0.5\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "infer.py").write_text(INFERENCE_SCRIPT + f"# {uuid.uuid4().hex}\n")
    return model, code


@pytest.fixture
def tag(engine):
    reference = f"localhost/gm-test-capture-{uuid.uuid4().hex[:12]}:1.0"
    yield reference
    container.remove_image(reference, client=engine)


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def host_inference(model: Path, code: Path, tmp_path: Path) -> str:
    package = tmp_path / "host-packages" / "tinymodel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(TINY_MODEL_SOURCE)
    env = dict(
        os.environ, PYTHONPATH=str(package.parent), GOLDMASTER_WEIGHTS=str(model)
    )
    result = subprocess.run(
        [sys.executable, "infer.py"],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.mark.engine
@pytest.mark.slow
def test_capture_image_restores_after_removal(
    engine, base_image, isolated_pip, tiny_venv, model_and_code, tag, tmp_path
):
    model, code = model_and_code
    out = tmp_path / "out"

    captured = run_cli(
        "capture", str(model), "--name", "tiny", "--version", "1.0",
        "--code", str(code), "-o", str(out),
        "--python", str(tiny_venv), "--wheels", "--strict",
        "--base-image", base_image.python, "--tag", tag,
    )  # fmt: skip

    assert captured.exit_code == 0, captured.output
    bundle = out / "tiny-1.0.gm.tar.zst"
    manifest = read_manifest(bundle)
    image = manifest["image"]
    assert image["built"] is True
    assert image["saved"] is True
    assert image["tags"] == [tag]
    assert image["base_image"]["ref"] == base_image.python
    # The label's digest is recomputable from the final manifest.
    assert image["labels"][MANIFEST_DIGEST_LABEL] == manifest_digest(manifest)
    listed = {entry["path"] for entry in manifest["files"]}
    assert {"image/Dockerfile", "image/image.tar"} <= listed
    assert not list(out.glob(".goldmaster-image-*"))

    inspected = run_cli("inspect", str(bundle))
    assert inspected.exit_code == 0, inspected.output
    assert "Image" in inspected.output
    assert f"id           {image['id'][:19]}" in inspected.output

    container.remove_image(tag)
    assert not container.image_exists(image["id"])
    dest = tmp_path / "restored"
    restored = run_cli("restore", str(bundle), str(dest), "--image")

    assert restored.exit_code == 0, restored.output
    assert f"image {tag} loaded" in restored.output
    assert container.image_info(tag).id == image["id"]
    status, output = container.run_container(tag, ["python", "infer.py"])
    assert status == 0, output
    assert output == host_inference(model, code, tmp_path)


@pytest.mark.engine
@pytest.mark.slow
def test_capture_without_weights_prints_mount(
    engine, base_image, isolated_pip, tiny_venv, model_and_code, tag, tmp_path
):
    model, code = model_and_code
    out = tmp_path / "out"
    captured = run_cli(
        "capture", str(model), "--name", "tiny", "--version", "1.0",
        "--code", str(code), "-o", str(out),
        "--python", str(tiny_venv), "--wheels", "--strict", "--no-image-weights",
        "--base-image", base_image.python, "--tag", tag,
    )  # fmt: skip
    assert captured.exit_code == 0, captured.output
    container.remove_image(tag)
    dest = tmp_path / "restored"

    restored = run_cli(
        "restore", str(out / "tiny-1.0.gm.tar.zst"), str(dest), "--no-env", "--image"
    )

    assert restored.exit_code == 0, restored.output
    mount = f"{(dest / 'weights').resolve()}:/opt/goldmaster/weights:ro"
    assert f"run it with: docker run --rm -v {mount} {tag}" in restored.output
    status, output = container.run_container(
        tag,
        ["python", "infer.py"],
        volumes={str(dest / "weights"): "/opt/goldmaster/weights"},
    )
    assert status == 0, output
    assert output == host_inference(model, code, tmp_path)


def test_capture_without_engine_keeps_dockerfile(
    monkeypatch, isolated_pip, tiny_venv, model_and_code, tmp_path
):
    model, code = model_and_code
    missing = tmp_path / "absent.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{missing}")
    out = tmp_path / "out"

    captured = run_cli(
        "capture", str(model), "--name", "tiny", "--version", "1.0",
        "--code", str(code), "-o", str(out),
        "--python", str(tiny_venv), "--wheels", "--strict",
    )  # fmt: skip

    assert captured.exit_code == 0, captured.output
    manifest = read_manifest(out / "tiny-1.0.gm.tar.zst")
    assert manifest["image"]["built"] is False
    assert str(missing) in manifest["image"]["reason"]
    listed = {entry["path"] for entry in manifest["files"]}
    assert DOCKERFILE_ARCNAME in listed
    assert "image/image.tar" not in listed
    assert captured.output.count("no container image built") == 1


def test_capture_explicit_image_without_engine_fails(
    monkeypatch, isolated_pip, tiny_venv, model_and_code, tmp_path
):
    model, code = model_and_code
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    out = tmp_path / "out"

    captured = run_cli(
        "capture", str(model), "--name", "tiny", "--version", "1.0",
        "--code", str(code), "-o", str(out),
        "--python", str(tiny_venv), "--wheels", "--strict", "--image",
    )  # fmt: skip

    assert captured.exit_code == 2
    assert "Error: container engine not reachable" in captured.output
    assert not (out / "tiny-1.0.gm.tar.zst").exists()
    # The failed capture removes the output folder it created.
    assert not out.exists()


def test_capture_no_image_records_dockerfile_only(
    monkeypatch, isolated_pip, tiny_venv, model_and_code, tmp_path
):
    model, code = model_and_code
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    out = tmp_path / "out"

    captured = run_cli(
        "capture", str(model), "--name", "tiny", "--version", "1.0",
        "--code", str(code), "-o", str(out),
        "--python", str(tiny_venv), "--wheels", "--strict", "--no-image",
    )  # fmt: skip

    assert captured.exit_code == 0, captured.output
    image = read_manifest(out / "tiny-1.0.gm.tar.zst")["image"]
    assert image["built"] is False
    assert image["reason"] == "the image build was turned off"
    assert "no container image built" not in captured.output
