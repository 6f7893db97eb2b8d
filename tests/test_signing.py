"""keygen, sign, capture --sign and verify --key: a DSSE envelope over an
in-toto statement of every digest, checked against the bundle."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from goldmaster import __version__
from goldmaster.capture import CaptureOptions, capture
from goldmaster.cli import cli
from goldmaster.errors import UsageError
from goldmaster.signing import (
    PASSWORD_VARIABLE,
    build_statement,
    load_signer,
    sign_statement,
    signature_path,
    write_signature,
)
from goldmaster.verify import BundleWalk, read_manifest

runner = CliRunner()


def invoke(*args: str | Path) -> object:
    return runner.invoke(cli, [str(a) for a in args])


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    result = invoke("keygen", "--out", tmp_path / "release")
    assert result.exit_code == 0, result.output
    return tmp_path / "release.key", tmp_path / "release.pub"


def make_bundle(root: Path, weights: bytes = b"w" * 5000, force: bool = False) -> Path:
    model = root / "model"
    model.mkdir(exist_ok=True)
    (model / "model.bin").write_bytes(weights)
    code = root / "code"
    code.mkdir(exist_ok=True)
    (code / "infer.py").write_text("print('infer')\n")
    options = CaptureOptions(
        model=model,
        output=root / "out",
        code=code,
        name="m",
        version="1",
        force=force,
        env=False,
    )
    return capture(options).bundle


def statement_of(signature: Path) -> dict:
    envelope = json.loads(signature.read_text())["dsseEnvelope"]
    return json.loads(base64.b64decode(envelope["payload"]))


def test_keygen_writes_private_key_0600(keys: tuple[Path, Path]) -> None:
    private, public = keys

    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert isinstance(
        serialization.load_pem_public_key(public.read_bytes()), Ed25519PublicKey
    )


def test_keygen_keeps_existing_keys(keys: tuple[Path, Path]) -> None:
    private, _ = keys
    before = private.read_bytes()

    result = invoke("keygen", "--out", private.with_suffix(""))

    assert result.exit_code == 2
    assert "key file already exists" in result.output
    assert private.read_bytes() == before


def test_keygen_encrypts_with_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "correct horse")
    assert invoke("keygen", "--out", tmp_path / "k").exit_code == 0

    assert "ENCRYPTED" in (tmp_path / "k.key").read_text()
    assert load_signer(tmp_path / "k.key").hint
    monkeypatch.delenv(PASSWORD_VARIABLE)
    with pytest.raises(UsageError) as raised:
        load_signer(tmp_path / "k.key")
    assert "is encrypted" in raised.value.message


def test_sign_writes_dsse_envelope_over_statement(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    bundle = make_bundle(tmp_path)

    result = invoke("sign", bundle, "--key", private)

    assert result.exit_code == 0, result.output
    signature = signature_path(bundle)
    assert signature.name == "m-1.gm.tar.zst.sig.json"
    document = json.loads(signature.read_text())
    assert document["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    envelope = document["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(envelope["payload"])
    # DSSE v1 pre-authentication encoding, written out independently here.
    message = b"DSSEv1 28 application/vnd.in-toto+json %d " % len(payload) + payload
    key = serialization.load_pem_public_key(public.read_bytes())
    key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), message)


def test_sign_statement_lists_every_digest(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, _ = keys
    bundle = make_bundle(tmp_path)
    invoke("sign", bundle, "--key", private)

    statement = statement_of(signature_path(bundle))
    walk = BundleWalk(bundle, strict=False)
    report = walk.run()

    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects["m-1.gm.tar.zst"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert (
        subjects["manifest.yaml"]
        == hashlib.sha256(walk.raw["manifest.yaml"]).hexdigest()
    )
    assert subjects["weights/model.bin"] == hashlib.sha256(b"w" * 5000).hexdigest()
    listed = {f["path"] for f in report.manifest["files"]}
    assert set(subjects) == listed | {"m-1.gm.tar.zst", "manifest.yaml"}
    predicate = statement["predicate"]
    assert predicate["signer"] == {"tool": "goldmaster", "version": __version__}
    assert (predicate["name"], predicate["version"]) == ("m", "1")


def test_verify_key_accepts_signed_bundle(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    bundle = make_bundle(tmp_path)
    invoke("sign", bundle, "--key", private)

    result = invoke("verify", bundle, "--key", public)

    assert result.exit_code == 0, result.output
    assert "SIGNED    by ed25519 key" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("OK")


def test_verify_key_json_reports_signature(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    bundle = make_bundle(tmp_path)
    invoke("sign", bundle, "--key", private)

    result = invoke("verify", bundle, "--key", public, "--json", "--quiet")

    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["signature"]["ok"] is True
    # The bundle file and manifest.yaml, then each file the manifest lists.
    listed = read_manifest(bundle)["files"]
    assert data["signature"]["subjects"] == 2 + len(listed)
    assert data["signature"]["problems"] == []


def test_capture_sign_writes_verifiable_signature(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.bin").write_bytes(b"x" * 100)
    (tmp_path / "code").mkdir()

    result = invoke(
        "capture", model, "--code", tmp_path / "code", "--output", tmp_path / "out",
        "--name", "m", "--version", "1", "--sign", private,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    bundle = tmp_path / "out" / "m-1.gm.tar.zst"
    assert signature_path(bundle).is_file()
    assert invoke("verify", bundle, "--key", public).exit_code == 0


def test_capture_sign_checks_key_before_writing(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.bin").write_bytes(b"x")
    (tmp_path / "code").mkdir()
    (tmp_path / "bad.key").write_text("not a key\n")

    result = invoke(
        "capture", model, "--code", tmp_path / "code", "--output", tmp_path / "out",
        "--sign", tmp_path / "bad.key",
    )  # fmt: skip

    assert result.exit_code == 2
    assert "is not a readable PEM private key" in result.output
    assert not (tmp_path / "out").exists()


def test_verify_key_rejects_other_key(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, _ = keys
    bundle = make_bundle(tmp_path)
    invoke("sign", bundle, "--key", private)
    invoke("keygen", "--out", tmp_path / "other")

    result = invoke("verify", bundle, "--key", tmp_path / "other.pub")

    assert result.exit_code == 1
    assert "SIGNATURE the signature was made with another key" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("FAILED")


def test_verify_key_rejects_changed_signature(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    bundle = make_bundle(tmp_path)
    invoke("sign", bundle, "--key", private)
    path = signature_path(bundle)
    document = json.loads(path.read_text())
    sig = bytearray(base64.b64decode(document["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[0] ^= 1
    document["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    path.write_text(json.dumps(document))

    result = invoke("verify", bundle, "--key", public)

    assert result.exit_code == 1
    assert (
        "SIGNATURE the signature does not match the signed statement" in result.output
    )


def test_verify_key_rejects_changed_statement(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    bundle = make_bundle(tmp_path)
    invoke("sign", bundle, "--key", private)
    path = signature_path(bundle)
    document = json.loads(path.read_text())
    statement = statement_of(path)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    document["dsseEnvelope"]["payload"] = base64.b64encode(
        json.dumps(statement).encode()
    ).decode()
    path.write_text(json.dumps(document))

    result = invoke("verify", bundle, "--key", public)

    assert result.exit_code == 1
    assert "does not match the signed statement" in result.output


def test_verify_key_rejects_rebuilt_bundle(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    """A bundle rebuilt with other weights verifies on its own, but not
    against the signature of the first one."""
    private, public = keys
    bundle = make_bundle(tmp_path)
    invoke("sign", bundle, "--key", private)
    make_bundle(tmp_path, weights=b"v" * 5000, force=True)

    result = invoke("verify", bundle, "--key", public)

    assert result.exit_code == 1
    assert "SIGNATURE the bundle file differs from its signed sha256" in result.output
    assert "SIGNATURE manifest.yaml differs from its signed sha256" in result.output
    assert "SIGNATURE weights/model.bin differs from its signed sha256" in result.output
    assert "SIGNATURE code/infer.py" not in result.output


def test_verify_key_rejects_extra_signed_subject(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    bundle = make_bundle(tmp_path)
    walk = BundleWalk(bundle, strict=False)
    report = walk.run()
    manifest_sha = hashlib.sha256(walk.raw["manifest.yaml"]).hexdigest()
    statement = build_statement(
        bundle.name, report.sha256, manifest_sha, report.manifest
    )
    statement["subject"].append(
        {"name": "weights/extra.bin", "digest": {"sha256": "1" * 64}}
    )
    write_signature(
        signature_path(bundle), sign_statement(statement, load_signer(private))
    )

    result = invoke("verify", bundle, "--key", public)

    assert result.exit_code == 1
    assert (
        "SIGNATURE weights/extra.bin is signed but not in the bundle" in result.output
    )


def test_verify_key_fails_without_signature(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    _, public = keys
    bundle = make_bundle(tmp_path)

    result = invoke("verify", bundle, "--key", public)

    assert result.exit_code == 1
    assert f"SIGNATURE signature not found: {signature_path(bundle)}" in result.output


def test_verify_key_accepts_renamed_bundle(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    bundle = make_bundle(tmp_path)
    invoke("sign", bundle, "--key", private)
    renamed = bundle.with_name("copy.gm.tar.zst")
    os.rename(bundle, renamed)

    result = invoke(
        "verify", renamed, "--key", public, "--signature", signature_path(bundle)
    )

    assert result.exit_code == 0, result.output


def test_sign_rejects_bundle_that_fails_verify(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, _ = keys
    bundle = make_bundle(tmp_path)
    sidecar = bundle.with_name(bundle.name + ".sha256")
    sidecar.write_text("0" * 64 + f"  {bundle.name}\n")

    result = invoke("sign", bundle, "--key", private)

    assert result.exit_code == 1
    assert "does not verify, so it was not signed" in result.output
    assert not signature_path(bundle).exists()


def test_keygen_empty_out_is_usage_error() -> None:
    result = invoke("keygen", "--out", "")
    assert result.exit_code == 2
    assert "Error: --out is empty" in result.output
    assert "unexpected failure" not in result.output


def test_keygen_unwritable_folder_names_path() -> None:
    result = invoke("keygen", "--out", "/proc/goldmaster-test-key")
    assert result.exit_code == 2
    assert "cannot write key file /proc/goldmaster-test-key.key" in result.output
    assert "unexpected failure" not in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_keygen_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    result = invoke("keygen", "--out", folder / "k")
    folder.chmod(0o700)
    assert result.exit_code == 2
    assert f"cannot write key file {folder / 'k.key'}" in result.output


@pytest.mark.parametrize("trailing", ["/", ""])
def test_keygen_into_folder(tmp_path: Path, trailing: str) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    result = invoke("keygen", "--out", f"{folder}{trailing}")
    assert result.exit_code == 0, result.output
    assert (folder / "goldmaster.key").is_file()
    assert (folder / "goldmaster.pub").is_file()


def test_keygen_missing_folder_with_slash(tmp_path: Path) -> None:
    result = invoke("keygen", "--out", f"{tmp_path / 'absent'}/")
    assert result.exit_code == 2
    assert f"folder not found: {tmp_path / 'absent'}" in result.output


def test_keygen_empty_password_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "")
    result = invoke("keygen", "--out", tmp_path / "k")
    assert result.exit_code == 2
    assert f"{PASSWORD_VARIABLE} is set but empty" in result.output
    assert not (tmp_path / "k.key").exists()


def test_sign_password_with_plain_key(
    keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "secret")
    with pytest.raises(UsageError) as caught:
        load_signer(keys[0])
    assert "is not encrypted" in caught.value.message


def test_sign_wrong_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "right")
    assert invoke("keygen", "--out", tmp_path / "enc").exit_code == 0
    monkeypatch.setenv(PASSWORD_VARIABLE, "wrong")
    with pytest.raises(UsageError) as caught:
        load_signer(tmp_path / "enc.key")
    assert "wrong passphrase" in caught.value.message


def test_sign_output_is_folder(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    bundle = make_bundle(tmp_path)
    folder = tmp_path / "sigs"
    folder.mkdir()
    result = invoke("sign", bundle, "--key", keys[0], "--output", folder)
    assert result.exit_code == 2
    assert f"--output {folder} is a folder" in result.output
    assert "unexpected failure" not in result.output


def test_sign_output_missing_folder(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    bundle = make_bundle(tmp_path)
    target = tmp_path / "nodir" / "x.json"
    result = invoke("sign", bundle, "--key", keys[0], "--output", target)
    assert result.exit_code == 2
    assert f"folder not found: {target.parent}" in result.output


def test_sign_output_unwritable(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    bundle = make_bundle(tmp_path)
    result = invoke("sign", bundle, "--key", keys[0], "--output", "/proc/x.sig.json")
    assert result.exit_code == 2
    assert "/proc/x.sig.json" in result.output
    assert "unexpected failure" not in result.output
