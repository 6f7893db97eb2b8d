"""Push and pull of container images through the engine, against real registries.

The engine is Podman serving the Docker Engine API, and the registries are
CNCF Distribution on loopback: the shared one on 127.0.0.1:5000 from
scripts/services.sh, and the tests' own registry that requires credentials.
"""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from bundle_factory import make_bundle, run_cli, run_json
from goldmaster import container
from goldmaster.errors import EngineError
from goldmaster.ociref import parse_reference
from goldmaster.registry import ANNOTATION_IMAGE
from goldmaster.registry_client import RegistryClient
from goldmaster.verify import read_manifest
from registry_fixtures import PASSWORD, USERNAME, RegistryServer

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("registry_env")]

OCI_AND_DOCKER_MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)


def registry_address(registry_url: str) -> str:
    return registry_url.removeprefix("http://")


def unique_repository(prefix: str) -> str:
    return f"gm-test/{prefix}-{uuid.uuid4().hex[:12]}"


def registry_manifest_digest(registry_url: str, repository: str, tag: str) -> str:
    """Return the digest that the registry serves for ``repository:tag``."""
    request = urllib.request.Request(
        f"{registry_url}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": OCI_AND_DOCKER_MANIFESTS},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers["Docker-Content-Digest"])


@pytest.fixture
def saved_image(engine: Any, base_image: Any, tmp_path: Path) -> Any:
    """Build a small image with content of its own, save it, and yield its id
    and archive; every reference added to ``cleanup`` is removed afterwards."""
    tag = f"localhost/gm-test-push-{uuid.uuid4().hex[:12]}:1.0"
    dockerfile = f"FROM {base_image.busybox}\nRUN echo {uuid.uuid4().hex} > /stamp\n"
    built = container.build_image(tmp_path, dockerfile, tags=[tag], client=engine)
    archive = tmp_path / "image.tar"
    container.save_image(tag, archive, client=engine)
    container.remove_image(tag, client=engine)
    cleanup: list[str] = []
    yield built.id, archive, cleanup
    for reference in cleanup:
        container.remove_image(reference, client=engine)
    container.remove_image(built.id, client=engine)


def test_push_image_archive_loads_and_pushes(engine, registry, saved_image):
    image_id, archive, cleanup = saved_image
    repository = unique_repository("archive")
    reference = f"{registry_address(registry)}/{repository}:1.0-image"
    cleanup.append(reference)
    assert not container.image_exists(image_id, client=engine)

    digest = container.push_image_archive(archive, reference, insecure=True)

    assert digest is not None
    assert digest.startswith("sha256:")
    assert registry_manifest_digest(registry, repository, "1.0-image") == digest
    assert container.image_info(reference, client=engine).id == image_id

    container.remove_image(image_id, client=engine)
    pulled = container.pull_image(reference, insecure=True)

    assert pulled.id == image_id
    assert reference in pulled.tags


def test_push_image_archive_keeps_tls_without_insecure(engine, registry, saved_image):
    _, archive, cleanup = saved_image
    reference = f"{registry_address(registry)}/{unique_repository('tls')}:1.0"
    cleanup.append(reference)

    with pytest.raises(EngineError) as caught:
        container.push_image_archive(archive, reference, insecure=False)

    assert "HTTP response to HTTPS client" in caught.value.message
    assert "--insecure" in caught.value.hint


def test_pull_image_missing_tag_raises(engine, registry):
    reference = f"{registry_address(registry)}/{unique_repository('absent')}:1.0"

    with pytest.raises(EngineError) as caught:
        container.pull_image(reference, insecure=True)

    assert caught.value.message.startswith(f"pulling {reference} failed")


def test_push_image_archive_sends_credentials(
    engine, auth_registry: RegistryServer, saved_image
):
    image_id, archive, cleanup = saved_image
    reference = f"{auth_registry.address}/{unique_repository('auth')}:1.0"
    cleanup.append(reference)

    with pytest.raises(EngineError) as refused:
        container.push_image_archive(archive, reference, insecure=True)
    assert f"check the credentials for {auth_registry.address}" == refused.value.hint

    credentials = {"username": USERNAME, "password": PASSWORD}
    digest = container.push_image_archive(
        archive, reference, insecure=True, credentials=credentials
    )
    assert digest is not None
    container.remove_image(image_id, client=engine)

    with pytest.raises(EngineError):
        container.pull_image(reference, insecure=True)
    pulled = container.pull_image(reference, insecure=True, credentials=credentials)
    assert pulled.id == image_id


# -- the command line -----------------------------------------------------------------


@pytest.mark.slow
def test_pull_image_brings_back_pushed_image(
    engine, base_image, registry, tiny_venv, isolated_pip, tmp_path
):
    model = tmp_path / "model"
    model.mkdir()
    (model / "scale.txt").write_text(f"scale=0.5 {uuid.uuid4().hex}\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "infer.py").write_text("import tinymodel\nprint(tinymodel.predict([1]))\n")
    tag = f"localhost/gm-test-pull-{uuid.uuid4().hex[:12]}:1.0"
    captured = run_cli(
        "capture", model, "--name", "tiny", "--version", "1.0", "--code", code,
        "-o", tmp_path / "out", "--python", tiny_venv, "--wheels", "--strict",
        "--base-image", base_image.python, "--tag", tag,
    )  # fmt: skip
    assert captured.exit_code == 0, captured.output
    bundle = tmp_path / "out" / "tiny-1.0.gm.tar.zst"
    image_id = read_manifest(bundle)["image"]["id"]
    container.remove_image(image_id, client=engine)
    repository = unique_repository("tiny")
    reference = f"{registry_address(registry)}/{repository}:1.0"
    image_ref = f"{reference}-image"

    try:
        pushed = run_json("push", bundle, reference, "--insecure", "-q")
        assert pushed["image"]["reference"] == image_ref
        assert pushed["image"]["digest"] == registry_manifest_digest(
            registry, repository, "1.0-image"
        )
        container.remove_image(image_id, client=engine)
        assert not container.image_exists(image_id, client=engine)

        pulled = run_json(
            "pull", reference, "--image", "--insecure", "-o", tmp_path / "pulled"
        )

        assert pulled["image"]["id"] == image_id
        assert pulled["image"]["reference"] == image_ref
        assert pulled["image"]["digest"] == pushed["image"]["digest"]
        assert container.image_info(image_ref, client=engine).id == image_id
        assert Path(pulled["bundle"]).read_bytes() == bundle.read_bytes()
        status, output = container.run_container(image_ref, ["python", "infer.py"])
        assert status == 0, output
        assert output == "[0.5]\n"

        # A registry that names the image on another host gets no credentials.
        forged = retag_with_image_annotation(
            reference, "1.0-forged", "192.0.2.1:5000/elsewhere:1.0"
        )
        refused = run_cli(
            "pull", forged, "--image", "--insecure", "-o", tmp_path / "forged"
        )
        assert refused.exit_code == 2
        assert "names its image on another registry, 192.0.2.1:5000" in refused.stderr
        assert not (tmp_path / "forged" / bundle.name).exists()

        # Another image under the recorded reference fails the id check.
        other_ref = f"{reference}-other"
        other_archive = tmp_path / "other.tar"
        container.save_image(base_image.busybox, other_archive, client=engine)
        container.push_image_archive(other_archive, other_ref, insecure=True)
        swapped = retag_with_image_annotation(reference, "1.0-swapped", other_ref)
        mismatch = run_cli(
            "pull", swapped, "--image", "--insecure", "-o", tmp_path / "swapped"
        )
        assert mismatch.exit_code == 1
        assert f"the image {other_ref} has id " in mismatch.stderr
        assert f"but the bundle records {image_id}" in mismatch.stderr
        assert "the verified bundle is kept at" in mismatch.stderr
        assert (tmp_path / "swapped" / bundle.name).read_bytes() == bundle.read_bytes()
    finally:
        container.remove_image(f"{reference}-other", client=engine)
        container.remove_image(image_ref, client=engine)
        container.remove_image(image_id, client=engine)


def retag_with_image_annotation(reference: str, tag: str, image: str) -> str:
    """Store the artifact of ``reference`` again under ``tag`` with its image
    annotation replaced, and return the new reference."""
    parsed = parse_reference(reference)
    with RegistryClient(parsed, insecure=True) as client:
        manifest, _, _ = client.get_manifest(str(parsed.tag))
        manifest["annotations"][ANNOTATION_IMAGE] = image
        client.put_manifest(manifest, tag)
    return str(parsed.with_tag(tag))


def test_pull_image_of_bundle_without_image_fails(engine, registry, tmp_path):
    bundle = make_bundle(tmp_path, "noimage", "1.0")
    reference = f"{registry_address(registry)}/{unique_repository('noimage')}:1.0"
    run_json("push", bundle, reference, "--insecure", "-q")

    result = run_cli("pull", reference, "--image", "--insecure", "-o", tmp_path / "in")

    assert result.exit_code == 2
    assert "has no saved image, so push stored none" in result.stderr
    assert "pull without --image" in result.stderr
    assert not (tmp_path / "in" / bundle.name).exists()
