"""Signed golden masters: a DSSE envelope over an in-toto Statement.

``BUNDLE.sig.json`` is a Sigstore bundle (media type v0.3) that contains a DSSE
envelope, as the OpenSSF model-signing library writes for key-based
signatures. The envelope's payload is an in-toto Statement v1 whose subjects
are the bundle file, manifest.yaml and every file the manifest lists, each
with its sha256, so that a verifier can check any one of them on its own.
(model-signing v1.0 puts the files in its predicate and one root digest in
the subject; the per-file subjects here follow its earlier v0.2 layout.)

Keys are Ed25519, through the ``cryptography`` package. Signing and
verification go through the :class:`Signer` and :class:`Verifier` protocols:
keyless Sigstore signing fits as another pair that fills the bundle's
``verificationMaterial`` with a certificate and transparency-log entries
instead of a public-key hint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from . import __version__
from . import manifest as manifest_mod
from .errors import (
    InputError,
    OutputError,
    SignatureError,
    UsageError,
    VerificationError,
)
from .fsutil import atomic_write_bytes, temporary_path, write_synced
from .verify import BundleWalk, VerifyReport

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://goldmaster/golden-master/v1"
SIGSTORE_BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGNATURE_SUFFIX = ".sig.json"
# Set to a passphrase to encrypt new private keys and to read encrypted ones.
PASSWORD_VARIABLE = "GOLDMASTER_KEY_PASSWORD"


def signature_path(bundle: Path) -> Path:
    """Return where the signature of ``bundle`` is kept: ``BUNDLE.sig.json``."""
    return bundle.with_name(bundle.name + SIGNATURE_SUFFIX)


def pae(payload_type: str, payload: bytes) -> bytes:
    """Encode the DSSE pre-authentication message, the bytes actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


# ---------------------------------------------------------------------------
# Keys


class Signer(Protocol):
    """Makes signatures and describes the material needed to verify them."""

    def sign(self, message: bytes) -> bytes: ...

    def verification_material(self) -> dict[str, Any]:
        """Return the Sigstore bundle's ``verificationMaterial`` for this signer."""
        ...


class Verifier(Protocol):
    """Checks signatures made by the matching Signer."""

    def verify(self, material: dict[str, Any], message: bytes, signature: bytes) -> str:
        """Raise SignatureError unless ``signature`` signs ``message``; return
        a short identity of the signer for display."""
        ...


def key_hint(public_key: Ed25519PublicKey) -> str:
    """Return the sha256 of the key's PEM form, the public-key hint that
    model-signing also records."""
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


@dataclass
class Ed25519Signer:
    """Signs with an Ed25519 private key."""

    key: Ed25519PrivateKey

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def verification_material(self) -> dict[str, Any]:
        return {
            "publicKey": {"hint": key_hint(self.key.public_key())},
            "tlogEntries": [],
        }

    @property
    def hint(self) -> str:
        return key_hint(self.key.public_key())


@dataclass
class Ed25519Verifier:
    """Verifies with an Ed25519 public key."""

    key: Ed25519PublicKey

    @property
    def hint(self) -> str:
        return key_hint(self.key)

    def verify(self, material: dict[str, Any], message: bytes, signature: bytes) -> str:
        hint = (material.get("publicKey") or {}).get("hint")
        if hint is not None and hint != self.hint:
            raise SignatureError(
                f"the signature was made with another key (hint {str(hint)[:16]}), "
                f"not the one given (hint {self.hint[:16]})"
            )
        try:
            self.key.verify(signature, message)
        except InvalidSignature as exc:
            raise SignatureError(
                "the signature does not match the signed statement"
            ) from exc
        return f"ed25519 key {self.hint[:16]}"


def _password() -> bytes | None:
    value = os.environ.get(PASSWORD_VARIABLE)
    return value.encode() if value else None


def _new_key_password() -> bytes | None:
    """Return the passphrase for a new private key, or None when the variable
    is unset. A set but empty variable is rejected, because writing an
    unencrypted key when a passphrase was meant is silent and unsafe."""
    value = os.environ.get(PASSWORD_VARIABLE)
    if value == "":
        raise UsageError(
            f"{PASSWORD_VARIABLE} is set but empty",
            "set it to a passphrase, or unset it to write an unencrypted key",
        )
    return value.encode() if value is not None else None


# Names of the key files that keygen writes when --out is a folder.
DEFAULT_KEY_NAME = "goldmaster"


def key_pair_paths(prefix: str | Path) -> tuple[Path, Path]:
    """Return the private and public key paths for the keygen ``--out`` value.

    A prefix ``P`` gives ``P.key`` and ``P.pub``. An existing folder, or a
    value that ends with a slash, gives ``goldmaster.key`` and
    ``goldmaster.pub`` inside that folder.
    """
    text = str(prefix)
    if not text.strip():
        raise UsageError("--out is empty", "pass a path prefix such as keys/release")
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        path = path / DEFAULT_KEY_NAME
    return path.with_name(path.name + ".key"), path.with_name(path.name + ".pub")


def generate_key_pair(prefix: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair to ``PREFIX.key`` (PEM PKCS#8, mode 0600)
    and ``PREFIX.pub`` (PEM SubjectPublicKeyInfo). Return both paths.

    See :func:`key_pair_paths` for how a folder as ``prefix`` is handled.
    """
    private_path, public_path = key_pair_paths(prefix)
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise UsageError(
                f"key file already exists: {path}", "pass --force to replace it"
            )
    folder = private_path.parent
    if not folder.is_dir():
        raise InputError(
            f"folder not found: {folder}", "create it first or pass another --out"
        )
    password = _new_key_password()
    key = Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_key_file(private_path, lambda: _write_private(private_path, private_pem))
    _write_key_file(public_path, lambda: atomic_write_bytes(public_path, public_pem))
    return private_path, public_path


def _write_key_file(path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        raise OutputError(
            f"cannot write key file {path}: {exc.strerror or exc}",
            "pass an --out in a folder that you can write to",
        ) from exc


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key so that it is never readable by others, not even
    for a moment: the temporary file is created with mode 0600."""
    with temporary_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        write_synced(tmp, data)
        os.replace(tmp, path)


def _read_key_file(path: Path, kind: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(
            f"{kind} not found: {path}", "make a key pair with goldmaster keygen"
        ) from exc
    except OSError as exc:
        raise InputError(f"cannot read {kind} {path}: {exc.strerror}") from exc


def load_signer(path: Path) -> Ed25519Signer:
    """Load an Ed25519 private key from a PEM file."""
    data = _read_key_file(path, "private key")
    password = _password()
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:
        # cryptography raises TypeError both for a missing passphrase and for
        # a passphrase given with an unencrypted key.
        if password is None:
            raise UsageError(
                f"private key {path} is encrypted",
                f"set {PASSWORD_VARIABLE} to its passphrase",
            ) from exc
        raise UsageError(
            f"private key {path} is not encrypted, but {PASSWORD_VARIABLE} is set",
            f"unset {PASSWORD_VARIABLE} to use this key",
        ) from exc
    except ValueError as exc:
        if password is not None and _is_encrypted_pem(data):
            raise UsageError(
                f"wrong passphrase for private key {path}",
                f"set {PASSWORD_VARIABLE} to the passphrase given to keygen",
            ) from exc
        raise UsageError(
            f"{path} is not a readable PEM private key: {exc}",
            "pass the .key file that goldmaster keygen wrote",
        ) from exc
    except UnsupportedAlgorithm as exc:
        raise UsageError(
            f"{path} is not a readable PEM private key: {exc}",
            "pass the .key file that goldmaster keygen wrote",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(
            f"{path} is not an Ed25519 key", "make one with goldmaster keygen"
        )
    return Ed25519Signer(key)


def _is_encrypted_pem(data: bytes) -> bool:
    """Tell whether a PEM private key is encrypted, in PKCS#8 or in the
    traditional OpenSSL form with a Proc-Type header."""
    return b"BEGIN ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data


def load_verifier(path: Path) -> Ed25519Verifier:
    """Load an Ed25519 public key from a PEM file."""
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(
            f"{path} is not a readable PEM public key: {exc}",
            "pass the .pub file that goldmaster keygen wrote",
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key")
    return Ed25519Verifier(key)


# ---------------------------------------------------------------------------
# Statements and envelopes


def build_statement(
    bundle_name: str, bundle_sha256: str, manifest_sha256: str, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Return the in-toto Statement that a signature covers."""
    subjects = [
        _subject(bundle_name, bundle_sha256),
        _subject("manifest.yaml", manifest_sha256),
    ]
    subjects += [_subject(f["path"], f["sha256"]) for f in manifest["files"]]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "signer": {"tool": "goldmaster", "version": __version__},
            "bundle": bundle_name,
            "name": manifest["name"],
            "version": manifest["version"],
            "created": manifest.get("created"),
            "schema": manifest.get("schema"),
        },
    }


def _subject(name: str, sha256: str) -> dict[str, Any]:
    return {"name": name, "digest": {"sha256": sha256}}


def sign_statement(statement: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """Sign ``statement`` and return the Sigstore bundle that carries it."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signature = signer.sign(pae(PAYLOAD_TYPE, payload))
    material = signer.verification_material()
    return {
        "mediaType": SIGSTORE_BUNDLE_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [
                {
                    "sig": base64.b64encode(signature).decode(),
                    "keyid": (material.get("publicKey") or {}).get("hint", ""),
                }
            ],
        },
    }


def check_signature_output(path: Path, bundle: Path) -> None:
    """Raise unless a signature can be written at ``path``: it must not be a
    folder and its folder must exist and be writable."""
    if path.is_dir():
        raise UsageError(
            f"--output {path} is a folder",
            f"pass a file path such as {path / signature_path(bundle).name}",
        )
    folder = path.parent
    if not folder.is_dir():
        raise InputError(
            f"folder not found: {folder}", "create it first or pass another --output"
        )
    if not os.access(folder, os.W_OK):
        raise OutputError(
            f"cannot write to folder {folder}: permission denied",
            "pass an --output in a folder that you can write to",
        )


def write_signature(path: Path, envelope: dict[str, Any]) -> Path:
    data = (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise OutputError(
            f"cannot write signature {path}: {exc.strerror or exc}",
            "pass an --output in a folder that you can write to",
        ) from exc
    return path


@dataclass
class SignResult:
    """A signature that was written."""

    bundle: Path
    signature: Path
    signer: str
    subjects: int

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "goldmaster.sign/v1",
            "bundle": str(self.bundle),
            "signature": str(self.signature),
            "signer": self.signer,
            "subjects": self.subjects,
        }


def sign_digests(
    bundle: Path,
    bundle_sha256: str,
    manifest_text: bytes,
    manifest: dict[str, Any],
    signer: Ed25519Signer,
    output: Path | None = None,
) -> SignResult:
    """Sign a bundle whose digests are already computed, as capture computes them."""
    manifest_sha256 = hashlib.sha256(manifest_text).hexdigest()
    statement = build_statement(bundle.name, bundle_sha256, manifest_sha256, manifest)
    path = write_signature(
        output or signature_path(bundle), sign_statement(statement, signer)
    )
    return SignResult(
        bundle, path, f"ed25519 key {signer.hint[:16]}", len(statement["subject"])
    )


def sign_bundle(
    bundle: Path,
    signer: Ed25519Signer,
    output: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> SignResult:
    """Verify ``bundle`` and sign it. A bundle that fails verification is not signed."""
    check_signature_output(output or signature_path(bundle), bundle)
    walk = BundleWalk(bundle, strict=False)
    report = walk.run(progress)
    if not report.ok:
        raise VerificationError(
            f"{bundle} does not verify, so it was not signed",
            f"run goldmaster verify {bundle} to see what differs",
        )
    return sign_digests(
        bundle,
        report.sha256,
        walk.raw["manifest.yaml"],
        report.manifest,
        signer,
        output,
    )


def sign_capture(
    bundle: Path, bundle_sha256: str, manifest: dict[str, Any], signer: Ed25519Signer
) -> SignResult:
    """Sign a bundle that capture has just written, from the digests it computed."""
    return sign_digests(
        bundle, bundle_sha256, manifest_mod.dump(manifest), manifest, signer
    )


# ---------------------------------------------------------------------------
# Verification


@dataclass
class SignatureCheck:
    """The outcome of checking a bundle's signature."""

    signature: Path
    ok: bool = False
    signer: str | None = None
    subjects: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "signature": str(self.signature),
            "ok": self.ok,
            "signer": self.signer,
            "subjects": self.subjects,
            "problems": self.problems,
        }


def check_signature(
    bundle: Path,
    report: VerifyReport,
    verifier: Verifier,
    signature: Path | None = None,
) -> SignatureCheck:
    """Check the signature of a bundle that ``report`` has just re-hashed:
    the envelope must be signed by ``verifier``'s key and every subject's
    digest must match what was read from the bundle."""
    path = signature or signature_path(bundle)
    check = SignatureCheck(path)
    try:
        envelope = _read_envelope(path)
        payload = _verify_envelope(envelope, verifier, check)
        statement = _parse_statement(payload)
    except SignatureError as exc:
        check.problems.append(exc.message)
        return check
    check.subjects = len(statement["subject"])
    check.problems = _compare_subjects(statement, report)
    check.ok = not check.problems
    return check


def _read_envelope(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise SignatureError(f"signature not found: {path}") from exc
    except OSError as exc:
        raise SignatureError(f"cannot read signature {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"signature {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("mediaType") != SIGSTORE_BUNDLE_TYPE:
        raise SignatureError(
            f"{path} is not a Sigstore bundle of type {SIGSTORE_BUNDLE_TYPE}"
        )
    return data


def _verify_envelope(
    bundle: dict[str, Any], verifier: Verifier, check: SignatureCheck
) -> bytes:
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureError(
            f"the signature file contains no DSSE envelope of type {PAYLOAD_TYPE}"
        )
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise SignatureError("the DSSE envelope must hold exactly one signature")
    try:
        payload = base64.b64decode(str(envelope.get("payload")), validate=True)
        signature = base64.b64decode(str(signatures[0].get("sig")), validate=True)
    except (binascii.Error, AttributeError) as exc:
        raise SignatureError("the DSSE envelope is not valid base64") from exc
    material = bundle.get("verificationMaterial")
    check.signer = verifier.verify(
        material if isinstance(material, dict) else {},
        pae(PAYLOAD_TYPE, payload),
        signature,
    )
    return payload


def _parse_statement(payload: bytes) -> dict[str, Any]:
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError("the signed payload is not JSON") from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise SignatureError(f"the signed payload is not an in-toto {STATEMENT_TYPE}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise SignatureError(
            f"unexpected predicate type {statement.get('predicateType')!r}"
        )
    subjects = statement.get("subject")
    valid = isinstance(subjects, list) and all(
        isinstance(s, dict)
        and isinstance(s.get("name"), str)
        and isinstance(s.get("digest"), dict)
        and isinstance(s["digest"].get("sha256"), str)
        for s in subjects
    )
    if not valid or not isinstance(statement.get("predicate"), dict):
        raise SignatureError("the signed statement has an invalid subject list")
    return statement


def _compare_subjects(statement: dict[str, Any], report: VerifyReport) -> list[str]:
    """List every difference between the signed subjects and the bundle."""
    bundle_name = statement["predicate"].get("bundle")
    actual = {"manifest.yaml": report.digests.get("manifest.yaml", "")}
    actual.update(
        {f["path"]: report.digests.get(f["path"], "") for f in report.manifest["files"]}
    )
    actual[str(bundle_name)] = report.sha256
    signed = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    problems = []
    for name in sorted(set(signed) | set(actual)):
        if name not in signed:
            problems.append(f"{name} is in the bundle but not signed")
        elif name not in actual:
            problems.append(f"{name} is signed but not in the bundle")
        elif signed[name] != actual[name]:
            label = "the bundle file" if name == bundle_name else name
            problems.append(f"{label} differs from its signed sha256")
    return problems
