"""The image stage of capture and restore against the real Podman engine."""

from __future__ import annotations

import io
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

from goldmaster import container
from goldmaster.dockerfile import MANIFEST_DIGEST_LABEL, WEIGHTS_PATH, manifest_digest
from goldmaster.errors import EngineError
from goldmaster.image import (
    ARCHIVE_ARCNAME,
    DOCKERFILE_ARCNAME,
    default_tag,
    image_section,
    main_distributions,
    pip_config_from_environment,
    restore_image,
)
from goldmaster.parts import Part
from image_helpers import basic_auth_index, make_wheel, sha256_file

WHEEL_SOURCE = "def predict(x):\n    return [round(v * 0.5, 3) for v in x]\n"
INFERENCE_SCRIPT = (
    "import os, tinymodel\n"
    "weights = os.path.join(os.environ['GOLDMASTER_WEIGHTS'], 'scale.txt')\n"
    "print(open(weights).read().strip(), tinymodel.predict([1, 2, 3]))\n"
)


def make_manifest(name: str, index_url: str = "https://pypi.org/simple") -> dict:
    environment: dict = {
        "interpreter": {"version": "3.11.2", "major_minor": "3.11"},
        "distributions": [
            {"name": "tinymodel", "version": "1.0", "requested": True},
            {"name": "pip", "version": "23.0.1", "requested": False},
        ],
        "index": {
            "effective": {"index_url": index_url, "extra_index_urls": []},
            "sources": [],
        },
        "wheels": {"vendored": True, "count": 1, "missing": []},
    }
    return {
        "name": name,
        "version": "1.0",
        "created": "2024-05-01T12:00:00Z",
        "code": {
            "git": {"commit": "0123abcd", "remote": "https://example.org/tiny.git"}
        },
        "environment": environment,
    }


def capture_parts(tmp_path: Path, *, vendored: bool) -> list[Part]:
    """Build the parts that capture would hand to the image stage."""
    wheels = tmp_path / "wheels"
    wheel = make_wheel(wheels, "tinymodel", "1.0", WHEEL_SOURCE)
    weights = tmp_path / "scale.txt"
    weights.write_text("scale=0.5\n")
    script = tmp_path / "infer.py"
    # A unique line makes the engine's layer cache miss, so every build runs pip.
    script.write_text(INFERENCE_SCRIPT + f"# capture {uuid.uuid4().hex}\n")

    lock = "tinymodel==1.0"
    if vendored:
        lock += f" --hash=sha256:{sha256_file(wheel)}"
    parts = [
        Part("code/infer.py", source=script),
        Part("weights/scale.txt", source=weights),
        Part("env/requirements.lock", data=(lock + "\n").encode()),
    ]
    if vendored:
        parts.append(Part(f"env/wheels/{wheel.name}", source=wheel))
    return parts


def extract_like_restore(parts: list[Part], dest: Path) -> None:
    """Lay the parts out as restore extracts a bundle: DEST/<arcname>."""
    for part in parts:
        target = dest / part.arcname
        target.parent.mkdir(parents=True, exist_ok=True)
        if part.source is not None:
            shutil.copyfile(part.source, target)
        else:
            target.write_bytes(part.data)


@pytest.fixture
def image_tag(engine):
    tag = f"localhost/gm-test-image-{uuid.uuid4().hex[:12]}:1.0"
    yield tag
    container.remove_image(tag, client=engine)


def host_output() -> str:
    return "scale=0.5 [0.5, 1.0, 1.5]"


@pytest.mark.engine
def test_image_section_builds_and_saves(engine, base_image, image_tag, tmp_path):
    manifest = make_manifest("tiny")
    parts = capture_parts(tmp_path, vendored=True)
    workdir = tmp_path / "work"
    workdir.mkdir()

    section = image_section(
        manifest,
        parts,
        workdir,
        base_image=base_image.python,
        tags=[image_tag],
    )

    data = section.data
    assert section.name == "image"
    assert section.notices == []
    assert data["built"] is True
    assert data["saved"] is True
    assert data["id"].startswith("sha256:")
    assert data["tags"] == [image_tag]
    assert data["size"] > 0
    assert data["base_image"]["ref"] == base_image.python
    assert data["base_image"]["id"] == container.image_info(base_image.python).id
    assert data["engine"]["name"] == "podman"
    assert data["labels"][MANIFEST_DIGEST_LABEL] == manifest_digest(manifest)
    assert data["labels"]["org.opencontainers.image.revision"] == "0123abcd"
    assert [part.arcname for part in section.parts] == [
        DOCKERFILE_ARCNAME,
        ARCHIVE_ARCNAME,
    ]
    archive = section.parts[1].source
    assert archive == workdir / "image.tar"
    assert container.archive_image_id(archive) == data["id"]
    stage_label = f"{MANIFEST_DIGEST_LABEL}={manifest_digest(manifest)}"
    stage_images = engine.api.images(filters={"label": stage_label})
    assert [image["RepoTags"] for image in stage_images] == [[image_tag]]
    assert b"--require-hashes" in section.parts[0].data


@pytest.mark.engine
def test_restore_loads_saved_image_and_runs_inference(
    engine, base_image, image_tag, tmp_path
):
    manifest = make_manifest("tiny")
    parts = capture_parts(tmp_path, vendored=True)
    workdir = tmp_path / "work"
    workdir.mkdir()
    section = image_section(
        manifest,
        parts,
        workdir,
        base_image=base_image.python,
        vendored=True,
        tags=[image_tag],
    )
    manifest["image"] = section.data
    dest = tmp_path / "restored"
    extract_like_restore(parts + section.parts, dest)
    container.remove_image(image_tag)
    assert not container.image_exists(section.data["id"])

    restored = restore_image(dest, manifest)

    assert restored.origin == "loaded"
    assert restored.id == section.data["id"]
    assert restored.tags == (image_tag,)
    assert restored.smoke_test["imported"] == ["tinymodel"]
    assert restored.smoke_test["python"].startswith("3.11")
    status, output = container.run_container(image_tag, ["python", "infer.py"])
    assert status == 0
    assert output.strip() == host_output()


@pytest.mark.engine
def test_restore_without_weights_prints_mount_line(
    engine, base_image, image_tag, tmp_path
):
    manifest = make_manifest("tiny")
    parts = capture_parts(tmp_path, vendored=True)
    section = image_section(
        manifest,
        parts,
        tmp_path,
        base_image=base_image.python,
        weights=False,
        vendored=True,
        tags=[image_tag],
    )
    manifest["image"] = section.data
    dest = tmp_path / "restored"
    extract_like_restore(parts + section.parts, dest)
    container.remove_image(image_tag)

    restored = restore_image(dest, manifest)

    assert section.data["weights"] == "mounted"
    status, _ = container.run_container(image_tag, ["ls", WEIGHTS_PATH])
    assert status != 0
    expected_mount = f"{(dest / 'weights').resolve()}:{WEIGHTS_PATH}:ro"
    assert restored.run_command == f"docker run --rm -v {expected_mount} {image_tag}"
    status, output = container.run_container(
        image_tag,
        ["python", "infer.py"],
        volumes={str(dest / "weights"): WEIGHTS_PATH},
    )
    assert status == 0
    assert output.strip() == host_output()


@pytest.mark.engine
def test_restore_builds_from_dockerfile_when_not_saved(
    engine, base_image, image_tag, tmp_path
):
    manifest = make_manifest("tiny")
    parts = capture_parts(tmp_path, vendored=True)
    section = image_section(
        manifest,
        parts,
        tmp_path,
        base_image=base_image.python,
        vendored=True,
        tags=[image_tag],
        save=False,
    )
    manifest["image"] = section.data
    dest = tmp_path / "restored"
    extract_like_restore(parts + section.parts, dest)
    container.remove_image(image_tag)

    restored = restore_image(dest, manifest)

    assert section.data["saved"] is False
    assert [part.arcname for part in section.parts] == [DOCKERFILE_ARCNAME]
    assert restored.origin == "built"
    assert restored.smoke_test["imported"] == ["tinymodel"]
    assert container.image_exists(image_tag)


@pytest.mark.engine
def test_restore_without_base_image_raises(engine, image_tag, tmp_path):
    manifest = make_manifest("tiny")
    manifest["image"] = {"tags": [image_tag], "saved": False}
    dest = tmp_path / "restored"
    (dest / "image").mkdir(parents=True)
    (dest / DOCKERFILE_ARCNAME).write_text(
        "FROM localhost/gm-test-no-such-base:1\nRUN true\n"
    )

    with pytest.raises(
        EngineError, match="gm-test-no-such-base:1 is not in the engine"
    ):
        restore_image(dest, manifest)


@pytest.mark.engine
def test_index_credentials_stay_out_of_image(
    engine, base_image, image_tag, monkeypatch, tmp_path
):
    wheels = tmp_path / "index-files"
    make_wheel(wheels, "tinymodel", "1.0", WHEEL_SOURCE)
    parts = capture_parts(tmp_path, vendored=False)
    password = "s3cret-build-token-8f41"

    with basic_auth_index(wheels, "builder", password) as (index_url, requests_seen):
        recorded = index_url.replace("http://", "http://REDACTED@")
        manifest = make_manifest("tiny", index_url=recorded)
        manifest["environment"]["wheels"] = {
            "vendored": False,
            "count": 0,
            "missing": [],
        }
        with_credentials = index_url.replace("http://", f"http://builder:{password}@")
        monkeypatch.setenv("PIP_INDEX_URL", with_credentials)
        section = image_section(
            manifest,
            parts,
            tmp_path,
            base_image=base_image.python,
            vendored=False,
            tags=[image_tag],
            network_mode="host",
        )

    assert any(path.startswith("/files/tinymodel") for path in requests_seen)
    dockerfile = section.parts[0].data
    assert b"--mount=type=secret" in dockerfile
    assert password.encode() not in dockerfile
    archive = section.parts[1].source
    assert_absent_from_archive(archive, password.encode())
    assert container.smoke_test(image_tag, ["tinymodel"])["imported"] == ["tinymodel"]


def assert_absent_from_archive(archive: Path, secret: bytes) -> None:
    """Check every file of every layer, and the configs, for ``secret``."""
    checked = 0
    with tarfile.open(archive) as outer:
        for member in outer:
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            found = secret in data
            assert not found, member.name
            if member.name.endswith(".tar") or data[:2] == b"\x1f\x8b":
                checked += assert_absent_from_layer(data, secret)
    assert checked > 0


def assert_absent_from_layer(data: bytes, secret: bytes) -> int:
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
        for member in layer:
            if member.isfile():
                found = secret in layer.extractfile(member).read()
                assert not found, member.name
                count += 1
    return count


def test_image_section_without_engine_keeps_dockerfile(monkeypatch, tmp_path):
    missing = tmp_path / "absent.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{missing}")
    manifest = make_manifest("tiny")

    section = image_section(manifest, [], tmp_path, vendored=True)

    assert [part.arcname for part in section.parts] == [DOCKERFILE_ARCNAME]
    assert section.data["built"] is False
    assert section.data["saved"] is False
    assert str(missing) in section.data["reason"]
    assert len(section.notices) == 1
    assert "not reachable" in section.notices[0]
    assert b"FROM python:3.11-slim" in section.parts[0].data


def test_image_section_without_environment_skips(tmp_path):
    manifest = make_manifest("tiny")
    del manifest["environment"]

    section = image_section(manifest, [], tmp_path)

    assert section.parts == []
    assert section.data["built"] is False
    assert "no Python environment" in section.notices[0]


def test_default_tag_is_valid_reference():
    assert default_tag({"name": "My Model_v2", "version": "1.0+cu124"}) == (
        "localhost/my-model_v2:1.0-cu124"
    )
    assert default_tag({}) == "localhost/model:latest"


def test_main_distributions_skip_installers():
    manifest = {
        "environment": {
            "distributions": [
                {"name": "numpy", "requested": True},
                {"name": "pip", "requested": True},
                {"name": "setuptools", "requested": True},
                {"name": "Wheel", "requested": True},
                {"name": "tinymodel", "requested": True},
                {"name": "six", "requested": False},
            ]
        }
    }

    assert main_distributions(manifest) == ["numpy", "tinymodel"]


def test_pip_config_prefers_environment(tmp_path):
    config_file = tmp_path / "pip.conf"
    config_file.write_text(
        "[global]\nindex-url = https://u:p@from-file.example/simple\n"
    )
    environ = {
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": str(config_file),
        "PIP_INDEX_URL": "https://u:p@from-env.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://a.example/simple https://b.example/simple",
    }

    text = pip_config_from_environment(environ).decode()

    assert "index-url = https://u:p@from-env.example/simple" in text
    assert "    https://a.example/simple\n    https://b.example/simple" in text
    assert "from-file" not in text


def test_pip_config_reads_config_file(tmp_path):
    config_file = tmp_path / "pip.conf"
    config_file.write_text(
        "[global]\nindex-url = https://u:p@from-file.example/simple\n"
    )
    environ = {"HOME": str(tmp_path), "PIP_CONFIG_FILE": str(config_file)}

    text = pip_config_from_environment(environ).decode()

    assert "index-url = https://u:p@from-file.example/simple" in text


def test_pip_config_none_without_indexes(tmp_path):
    assert pip_config_from_environment({"HOME": str(tmp_path)}) is None
