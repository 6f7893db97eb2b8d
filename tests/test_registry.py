"""push, pull, remote inspect and remote verify against a real Distribution registry."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import oras.provider
import pytest

from bundle_factory import make_bundle, run_cli, run_json
from goldmaster.errors import BundleFormatError, UsageError
from goldmaster.manifest import model_digest
from goldmaster.ociref import (
    Reference,
    is_loopback,
    is_reference,
    parse_reference,
    tag_for_version,
)
from goldmaster.registry import (
    ARTIFACT_TYPE,
    BUNDLE_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    SIDECAR_MEDIA_TYPE,
    extract_member,
    image_reference,
    read_bundle_head,
)
from goldmaster.registry_client import (
    PASSWORD_VARIABLE,
    USERNAME_VARIABLE,
    ChunkedUpload,
    RegistryClient,
)
from goldmaster.verify import read_manifest
from registry_fixtures import (
    PASSWORD,
    USERNAME,
    RegistryServer,
    free_port,
    services_unavailable,
)

pytestmark = pytest.mark.usefixtures("registry_env")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pushed(
    registry: RegistryServer, bundle: Path, repository: str, tag: str = ""
) -> dict:
    ref = f"{registry.address}/{repository}" + (f":{tag}" if tag else "")
    return run_json("push", bundle, ref, "--insecure", "-q")


# -- references --------------------------------------------------------------


def test_parse_reference_splits_parts() -> None:
    reference = parse_reference("127.0.0.1:5000/team/model:1.0")
    assert reference == Reference("127.0.0.1:5000", "team/model", "1.0", None)
    assert str(reference) == "127.0.0.1:5000/team/model:1.0"
    digest = "sha256:" + "a" * 64
    by_digest = parse_reference(f"localhost/model@{digest}")
    assert by_digest.digest == digest
    assert by_digest.target == digest


@pytest.mark.parametrize(
    "text",
    [
        "team/model:1.0",
        "127.0.0.1:5000/Team/model",
        "127.0.0.1:5000/model:bad tag",
        "model",
    ],
)
def test_parse_reference_rejects_invalid(text: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(text)


def test_parse_reference_requires_target() -> None:
    with pytest.raises(UsageError, match="names no tag or digest"):
        parse_reference("127.0.0.1:5000/team/model", require_target=True)


def test_is_reference_keeps_paths_local(tmp_path: Path) -> None:
    existing = tmp_path / "registry.example.com"
    existing.mkdir()
    assert is_reference("registry.example.com/team/model:1")
    assert is_reference("localhost:5000/model")
    assert not is_reference(str(existing))
    assert not is_reference("out/demo-1.0.gm.tar.zst")
    assert not is_reference("models.v2/demo-1.0.gm.tar.zst")
    assert not is_reference("bundles/model")


def test_tag_for_version_replaces_plus() -> None:
    assert tag_for_version("1.0+cu121") == "1.0_cu121"


def test_image_reference_appends_suffix() -> None:
    reference = parse_reference("127.0.0.1:5000/team/model:1.0")
    assert (
        str(image_reference(reference, None)) == "127.0.0.1:5000/team/model:1.0-image"
    )
    assert str(image_reference(reference, "serve")) == "127.0.0.1:5000/team/model:serve"


def test_extract_member_writes_one_file(tmp_path: Path) -> None:
    weights = os.urandom(70_000)
    bundle = make_bundle(tmp_path, weights={"model.bin": weights, "other.bin": b"x"})
    target = tmp_path / "model.bin"
    extract_member(bundle, "weights/model.bin", target)
    assert target.read_bytes() == weights
    with pytest.raises(BundleFormatError, match="no member 'image/image.tar'"):
        extract_member(bundle, "image/image.tar", tmp_path / "image.tar")


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("127.0.0.1:5000", True),
        ("127.8.9.10", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("registry.example.com", False),
    ],
)
def test_is_loopback(registry: str, expected: bool) -> None:
    assert is_loopback(registry) is expected


def test_insecure_rejects_remote_host(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    result = run_cli("push", bundle, "registry.example.com/team/model:1", "--insecure")
    assert result.exit_code == 2
    assert "not a loopback address" in result.stderr
    assert "GOLDMASTER_INSECURE_REGISTRIES" in result.stderr


# -- push and pull -------------------------------------------------------------


def test_push_pull_round_trip(oci_registry: RegistryServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "roundtrip", "1.0")
    pushed_result = pushed(oci_registry, bundle, "team/roundtrip", "1.0")
    ref = f"{oci_registry.address}/team/roundtrip:1.0"
    assert pushed_result["schema"] == "goldmaster.push/v1"
    assert pushed_result["reference"] == ref
    assert pushed_result["sha256"] == sha256_file(bundle)

    out = tmp_path / "pulled"
    pulled = run_json("pull", ref, "-o", out, "--insecure", "-q")
    pulled_bundle = Path(pulled["bundle"])
    assert pulled["schema"] == "goldmaster.pull/v1"
    assert pulled["ok"] is True
    assert pulled["digest"] == pushed_result["digest"]
    assert pulled_bundle == out / bundle.name
    assert pulled_bundle.read_bytes() == bundle.read_bytes()
    assert pulled["sha256"] == sha256_file(bundle)
    sidecar = Path(pulled["sidecar"]).read_bytes()
    assert sidecar == bundle.with_name(bundle.name + ".sha256").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [
        bundle.name,
        bundle.name + ".sha256",
    ]


def test_push_writes_goldmaster_artifact(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "artifact", "2.1")
    result = pushed(oci_registry, bundle, "team/artifact")
    reference = parse_reference(f"{oci_registry.address}/team/artifact:2.1")
    with RegistryClient(reference, insecure=True) as client:
        manifest, digest, _ = client.get_manifest("2.1")
    data, raw = read_bundle_head(bundle)

    assert digest == result["digest"]
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        MANIFEST_MEDIA_TYPE,
        BUNDLE_MEDIA_TYPE,
        SIDECAR_MEDIA_TYPE,
    ]
    manifest_layer, bundle_layer, sidecar_layer = manifest["layers"]
    assert manifest_layer["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert bundle_layer["digest"] == "sha256:" + sha256_file(bundle)
    assert bundle_layer["annotations"]["org.opencontainers.image.title"] == bundle.name
    assert sidecar_layer["size"] == len(
        bundle.with_name(bundle.name + ".sha256").read_bytes()
    )
    annotations = manifest["annotations"]
    assert annotations["vnd.goldmaster.name"] == "artifact"
    assert annotations["org.opencontainers.image.version"] == "2.1"
    assert annotations["org.opencontainers.image.created"] == data["created"]
    assert annotations["vnd.goldmaster.model.digest"] == model_digest(data)


def test_push_tag_defaults_to_version(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "tagged", "1.0+cu121")
    result = pushed(oci_registry, bundle, "team/tagged")
    assert result["reference"] == f"{oci_registry.address}/team/tagged:1.0_cu121"


def test_pull_by_digest(oci_registry: RegistryServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "bydigest", "1.0")
    digest = pushed(oci_registry, bundle, "team/bydigest")["digest"]
    ref = f"{oci_registry.address}/team/bydigest@{digest}"
    pulled = run_json("pull", ref, "-o", tmp_path / "out", "--insecure")
    assert Path(pulled["bundle"]).read_bytes() == bundle.read_bytes()


def test_pull_keeps_existing_bundle(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "existing", "1.0")
    pushed(oci_registry, bundle, "team/existing")
    ref = f"{oci_registry.address}/team/existing:1.0"
    out = tmp_path / "out"
    out.mkdir()
    (out / bundle.name).write_bytes(b"older")

    rejected = run_cli("pull", ref, "-o", out, "--insecure")
    assert rejected.exit_code == 2
    assert "already exists" in rejected.stderr
    assert (out / bundle.name).read_bytes() == b"older"

    replaced = run_cli("pull", ref, "-o", out, "--insecure", "--force")
    assert replaced.exit_code == 0, replaced.output
    assert (out / bundle.name).read_bytes() == bundle.read_bytes()


def test_pull_rejects_plain_artifact(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("not a bundle\n")
    client = oras.provider.Registry(hostname=oci_registry.address, insecure=True)
    client.push(
        target=f"{oci_registry.address}/team/plain:notes",
        files=[str(note)],
        disable_path_validation=True,
        quiet=True,
    )
    result = run_cli(
        "pull", f"{oci_registry.address}/team/plain:notes", "-o", tmp_path, "--insecure"
    )
    assert result.exit_code == 2
    assert "is not a goldmaster bundle" in result.stderr


def test_push_rejects_sidecar_mismatch(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "badsidecar", "1.0")
    bundle.with_name(bundle.name + ".sha256").write_text(f"{'0' * 64}  {bundle.name}\n")
    result = run_cli(
        "push", bundle, f"{oci_registry.address}/team/badsidecar", "--insecure"
    )
    assert result.exit_code == 1
    assert "its .sha256 file records" in result.stderr
    reference = parse_reference(f"{oci_registry.address}/team/badsidecar")
    with RegistryClient(reference, insecure=True) as client:
        assert (
            client.blob_exists("sha256:" + sha256_file(bundle), bundle.stat().st_size)
            is False
        )


def test_push_fails_fast_without_registry(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    address = f"127.0.0.1:{free_port(None)}"
    started = time.monotonic()
    result = run_cli("push", bundle, f"{address}/team/model", "--insecure")
    assert result.exit_code == 2
    assert f"cannot connect to http://{address}" in result.stderr
    assert "Connection refused" in result.stderr
    assert time.monotonic() - started < 10


# -- remote inspect and verify ------------------------------------------------------


def test_remote_inspect_skips_bundle_blob(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "inspected", "1.0", params={"lr": 0.01})
    result = pushed(oci_registry, bundle, "team/inspected")
    ref = result["reference"]
    bundle_digest = "sha256:" + result["sha256"]
    manifest_digest = result["layers"][0]["digest"]
    gets_before = oci_registry.blob_gets("team/inspected", manifest_digest)

    inspected = run_json("inspect", ref, "--insecure")

    assert inspected["source"] == "registry"
    assert inspected["digest"] == result["digest"]
    assert inspected["manifest"] == read_manifest(bundle)
    assert oci_registry.blob_gets("team/inspected", manifest_digest) == gets_before + 1
    assert oci_registry.blob_gets("team/inspected", bundle_digest) == 0
    # The same log records the bundle blob once a pull downloads it.
    run_json("pull", ref, "-o", tmp_path / "out", "--insecure")
    assert oci_registry.blob_gets("team/inspected", bundle_digest) == 1


def test_remote_inspect_prints_page(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "page", "3.0", params={"epochs": 7})
    ref = pushed(oci_registry, bundle, "team/page")["reference"]
    result = run_cli("inspect", ref, "--insecure")
    assert result.exit_code == 0, result.output
    assert "page 3.0" in result.stdout
    assert "epochs" in result.stdout


def test_remote_verify_passes(oci_registry: RegistryServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "verified", "1.0")
    ref = pushed(oci_registry, bundle, "team/verified")["reference"]
    report = run_json("verify", ref, "--insecure")
    assert report["ok"] is True
    assert report["bundle"] == ref
    assert report["sidecar"] == "match"
    assert report["files"] == len(read_manifest(bundle)["files"])


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_pull_catches_tampered_blob(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "tampered", "1.0")
    result = pushed(oci_registry, bundle, "team/tampered")
    stored = oci_registry.blob_data("sha256:" + result["sha256"])
    flip_byte(stored, stored.stat().st_size // 2)
    out = tmp_path / "out"

    pulled = run_cli("pull", result["reference"], "-o", out, "--insecure")

    assert pulled.exit_code == 1
    assert "the bundle blob" in pulled.stderr
    assert "does not match its descriptor" in pulled.stderr
    # pull created the output folder, so the failed pull removes it.
    assert not out.exists()
    verified = run_cli("verify", result["reference"], "--insecure")
    assert verified.exit_code == 1


def test_inspect_catches_tampered_manifest_blob(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "tamperedhead", "1.0")
    result = pushed(oci_registry, bundle, "team/tamperedhead")
    stored = oci_registry.blob_data(result["layers"][0]["digest"])
    flip_byte(stored, 10)
    inspected = run_cli("inspect", result["reference"], "--insecure")
    assert inspected.exit_code == 1
    assert "the manifest blob" in inspected.stderr


# -- credentials ----------------------------------------------------------------------


def test_push_reports_refused_credentials(
    auth_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path, "refused", "1.0")
    monkeypatch.setenv(USERNAME_VARIABLE, USERNAME)
    monkeypatch.setenv(PASSWORD_VARIABLE, "wrong password")
    result = run_cli(
        "push", bundle, f"{auth_registry.address}/team/refused", "--insecure"
    )
    assert result.exit_code == 2
    assert "HTTP 401" in result.stderr
    assert f"rejected the credentials of '{USERNAME}'" in result.stderr

    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    reference = parse_reference(f"{auth_registry.address}/team/refused")
    with RegistryClient(reference, insecure=True) as client:
        assert (
            client.blob_exists("sha256:" + sha256_file(bundle), bundle.stat().st_size)
            is False
        )


def test_push_without_credentials_names_login(
    auth_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "anonymous", "1.0")
    result = run_cli(
        "push", bundle, f"{auth_registry.address}/team/anonymous", "--insecure"
    )
    assert result.exit_code == 2
    assert "HTTP 401" in result.stderr
    assert f"docker login {auth_registry.address}" in result.stderr


def test_push_with_environment_credentials(
    auth_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path, "envcreds", "1.0")
    monkeypatch.setenv(USERNAME_VARIABLE, USERNAME)
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    result = pushed(auth_registry, bundle, "team/envcreds")
    pulled = run_json("pull", result["reference"], "-o", tmp_path / "out", "--insecure")
    assert Path(pulled["bundle"]).read_bytes() == bundle.read_bytes()


def push_with_password(
    registry: RegistryServer,
    bundle: Path,
    repository: str,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """Push with credentials from the environment, then remove them again."""
    with monkeypatch.context() as scoped:
        scoped.setenv(USERNAME_VARIABLE, USERNAME)
        scoped.setenv(PASSWORD_VARIABLE, PASSWORD)
        return str(pushed(registry, bundle, repository)["reference"])


def test_pull_with_docker_config(
    auth_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path, "dockerconfig", "1.0")
    ref = push_with_password(auth_registry, bundle, "team/dockerconfig", monkeypatch)
    config = tmp_path / "docker-config"
    config.mkdir()
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(
        json.dumps({"auths": {auth_registry.address: {"auth": token}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config))

    pulled = run_json("pull", ref, "-o", tmp_path / "out", "--insecure")

    assert Path(pulled["bundle"]).read_bytes() == bundle.read_bytes()


@pytest.fixture
def pass_helper(registry_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty GnuPG key and password store for docker-credential-pass, the
    credential helper from Debian's golang-docker-credential-helpers."""
    for tool in ("gpg", "gpgconf", "pass", "docker-credential-pass"):
        if shutil.which(tool) is None:
            services_unavailable(
                f"{tool} is not installed (apt-get install -y pass golang-docker-credential-helpers)"
            )

    gnupg = registry_env / ".gnupg"
    gnupg.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(gnupg))
    monkeypatch.setenv("PASSWORD_STORE_DIR", str(registry_env / ".password-store"))

    key = "goldmaster-test@example.invalid"
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            key,
            "default",
            "default",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["pass", "init", key], check=True, capture_output=True)

    yield registry_env
    # gpg started an agent for this GNUPGHOME; stop that one agent.
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, capture_output=True)


def test_pull_with_credential_helper(
    auth_registry: RegistryServer,
    pass_helper: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = make_bundle(tmp_path, "helper", "1.0")
    ref = push_with_password(auth_registry, bundle, "team/helper", monkeypatch)
    stored = json.dumps(
        {"ServerURL": auth_registry.address, "Username": USERNAME, "Secret": PASSWORD}
    )
    subprocess.run(
        ["docker-credential-pass", "store"],
        input=stored.encode(),
        check=True,
        capture_output=True,
    )
    docker = pass_helper / ".docker"
    docker.mkdir()
    (docker / "config.json").write_text(
        json.dumps({"credHelpers": {auth_registry.address: "pass"}})
    )

    pulled = run_json("pull", ref, "-o", tmp_path / "out", "--insecure")

    assert Path(pulled["bundle"]).read_bytes() == bundle.read_bytes()


def test_partial_credentials_are_rejected(
    oci_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path)
    monkeypatch.setenv(USERNAME_VARIABLE, USERNAME)
    result = run_cli(
        "push", bundle, f"{oci_registry.address}/team/partial", "--insecure"
    )
    assert result.exit_code == 2
    assert PASSWORD_VARIABLE in result.stderr


# -- chunked uploads ------------------------------------------------------------------


class _RestartAfterFirstChunk:
    """A progress callback that stops the registry after the first chunk and
    starts it again a moment later, while the upload is still running."""

    def __init__(self, registry: RegistryServer) -> None:
        self.registry = registry
        self.calls = 0
        self.thread: threading.Thread | None = None

    def __call__(self, count: int) -> None:
        self.calls += 1
        if self.calls == 1:
            self.registry.stop()
            self.thread = threading.Thread(target=self._restart)
            self.thread.start()

    def _restart(self) -> None:
        time.sleep(1.5)
        self.registry.start()


def test_chunked_upload_resumes_after_restart(
    own_registry: RegistryServer, tmp_path: Path
) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    reference = parse_reference(f"{own_registry.address}/team/resumed:1")
    restart = _RestartAfterFirstChunk(own_registry)

    with RegistryClient(reference, insecure=True) as client:
        upload = ChunkedUpload(client, payload, 256 << 10, restart)
        digest = upload.run()
        if restart.thread is not None:
            restart.thread.join()
        response = client.request("GET", client.url(f"blobs/{digest}"), "reading back")

    assert upload.resumes + upload.restarts >= 1
    assert digest == "sha256:" + sha256_file(payload)
    assert response.content == payload.read_bytes()


def test_push_uploads_in_chunks(oci_registry: RegistryServer, tmp_path: Path) -> None:
    bundle = make_bundle(
        tmp_path, "chunked", "1.0", weights={"w.bin": os.urandom(3 << 20)}
    )
    ref = f"{oci_registry.address}/team/chunked"
    before = oci_registry.log_text().count('"PATCH /v2/team/chunked/blobs/uploads/')
    run_json("push", bundle, ref, "--insecure", "--chunk-size", "1")
    patches = (
        oci_registry.log_text().count('"PATCH /v2/team/chunked/blobs/uploads/') - before
    )
    size = bundle.stat().st_size
    assert patches == -(-size // (1 << 20))


def test_pull_unknown_digest_leaves_no_folder(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "nodigest", "1.0")
    pushed(oci_registry, bundle, "team/nodigest")
    ref = f"{oci_registry.address}/team/nodigest@sha256:{'0' * 64}"
    out = tmp_path / "new" / "out"
    result = run_cli("pull", ref, "-o", out, "--insecure")
    assert result.exit_code != 0
    assert not (tmp_path / "new").exists()


def test_pull_unwritable_output_before_download(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, "unwritable", "1.0")
    pushed(oci_registry, bundle, "team/unwritable")
    ref = f"{oci_registry.address}/team/unwritable:1.0"
    result = run_cli("pull", ref, "-o", "/proc", "--insecure")
    assert result.exit_code == 2
    assert "cannot write to output folder /proc" in result.stderr
    assert "downloading" not in result.stderr
