"""Push and pull golden masters to and from an OCI registry.

A bundle is stored as an OCI artifact (image manifest with ``artifactType``)
with three layers: the manifest YAML, the bundle file and its ``.sha256``
sidecar. The manifest YAML is a separate small blob so that ``inspect`` and
``diff`` of a remote bundle download a few kilobytes, not the bundle. Each
layer carries an ``org.opencontainers.image.title`` annotation, so the ORAS
command line pulls the same files.
"""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import manifest as manifest_mod
from .archive import MAX_MANIFEST_BYTES, BundleReader, Member
from .errors import (
    BundleFormatError,
    EngineError,
    GoldmasterError,
    InputError,
    OutputError,
    RegistryError,
    UsageError,
    VerificationError,
)
from .fsutil import (
    atomic_write_bytes,
    fsync_dir,
    make_folders,
    remove_empty_folders,
    temporary_path,
)
from .ociref import Reference, check_tag, is_reference, parse_reference, tag_for_version
from .progress import Reporter
from .registry_client import (
    DEFAULT_CHUNK_SIZE,
    OCI_MANIFEST,
    PASSWORD_VARIABLE,
    USERNAME_VARIABLE,
    Descriptor,
    RegistryClient,
)
from .verify import BundleWalk, Sink, VerifyReport, read_manifest

ARTIFACT_TYPE = "application/vnd.goldmaster.bundle.v1"
BUNDLE_MEDIA_TYPE = "application/vnd.goldmaster.bundle.v1.tar+zstd"
MANIFEST_MEDIA_TYPE = "application/vnd.goldmaster.manifest.v1+yaml"
SIDECAR_MEDIA_TYPE = "application/vnd.goldmaster.bundle.v1.sha256"
# The OCI image specification's empty config for artifacts that need none.
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"

TITLE = "org.opencontainers.image.title"
ANNOTATION_NAME = "vnd.goldmaster.name"
ANNOTATION_VERSION = "org.opencontainers.image.version"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_SIZE = "vnd.goldmaster.bundle.size"
ANNOTATION_SHA256 = "vnd.goldmaster.bundle.sha256"
ANNOTATION_MODEL_DIGEST = "vnd.goldmaster.model.digest"
ANNOTATION_IMAGE = "vnd.goldmaster.image"
ANNOTATION_TOOL = "vnd.goldmaster.version"

IMAGE_MEMBER = "image/image.tar"
IMAGE_TAG_SUFFIX = "-image"
MAX_SIDECAR_BYTES = 4096
SIDECAR_LINE = re.compile(r"^([0-9a-f]{64})[ \t]+\*?(\S.*)$")


@dataclass
class PushResult:
    """Result of a push: the registry reference and digest, and the layers stored."""

    bundle: Path
    reference: str
    digest: str
    manifest: dict[str, Any]
    layers: list[Descriptor]
    sha256: str
    size: int
    model_digest: str
    image: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "goldmaster.push/v1",
            "bundle": str(self.bundle),
            "reference": self.reference,
            "digest": self.digest,
            "name": self.manifest["name"],
            "version": self.manifest["version"],
            "created": self.manifest["created"],
            "sha256": self.sha256,
            "size": self.size,
            "model_digest": self.model_digest,
            "layers": [_layer_json(layer) for layer in self.layers],
            "image": self.image,
        }


@dataclass
class PullResult:
    """The bundle written by a pull and the report of its verification."""

    reference: str
    digest: str
    bundle: Path
    sidecar: Path
    sha256: str
    size: int
    report: VerifyReport
    image: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "goldmaster.pull/v1",
            "reference": self.reference,
            "digest": self.digest,
            "bundle": str(self.bundle),
            "sidecar": str(self.sidecar),
            "sha256": self.sha256,
            "size": self.size,
            "name": self.report.manifest.get("name"),
            "version": self.report.manifest.get("version"),
            "created": self.report.manifest.get("created"),
            "files": self.report.files,
            "bytes": self.report.bytes,
            "ok": self.report.ok,
            "image": self.image,
        }


@dataclass
class RemoteBundle:
    """A goldmaster artifact as its registry manifest describes it."""

    reference: Reference
    digest: str
    oci_manifest: dict[str, Any]
    manifest_layer: Descriptor
    bundle_layer: Descriptor
    sidecar_layer: Descriptor | None
    annotations: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    raw_manifest: bytes = b""


class NotABundleError(RegistryError):
    """A registry reference names something other than a goldmaster bundle."""


class PulledBundleInvalid(VerificationError):
    """A downloaded bundle matched its registry digests but failed verification."""

    def __init__(self, message: str, hint: str, report: VerifyReport) -> None:
        super().__init__(message, hint)
        self.report = report


def _layer_json(layer: Descriptor) -> dict[str, Any]:
    return {
        "media_type": layer.media_type,
        "digest": layer.digest,
        "size": layer.size,
        "title": layer.annotations.get(TITLE),
    }


# ---------------------------------------------------------------------------
# Push


def push(
    bundle: Path,
    ref: str,
    *,
    insecure: bool = False,
    image_tag: str | None = None,
    push_image: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reporter: Reporter | None = None,
) -> PushResult:
    """Upload ``bundle`` to ``ref`` (``REGISTRY/REPOSITORY[:TAG]``) as an OCI artifact.

    The tag defaults to the bundle's version. When the bundle contains a saved
    image, the container engine pushes it first as ``REPOSITORY:TAG-image`` or
    ``image_tag``, so that the artifact never names an image that is missing.
    """
    reporter = reporter or Reporter()
    reference = parse_reference(ref)
    if reference.digest:
        raise UsageError(
            f"cannot push to a digest reference: {ref}",
            "push to REGISTRY/REPOSITORY[:TAG]",
        )
    data, raw = read_bundle_head(bundle)
    reference = reference.with_tag(reference.tag or tag_for_version(data["version"]))
    expected = read_sidecar_digest(bundle)
    with RegistryClient(reference, insecure, reporter) as client:
        image = None
        if _has_image(data):
            image = {"reference": None, "pushed": False, "digest": None}
            if push_image:
                image = _push_image(bundle, reference, image_tag, insecure, reporter)
        with tempfile.TemporaryDirectory(prefix="goldmaster-push-") as scratch:
            layers, sha256 = _upload_layers(
                client, bundle, data, raw, expected, Path(scratch), chunk_size, reporter
            )
            config = _write(Path(scratch, "config.json"), EMPTY_CONFIG)
            config_descriptor = client.upload_small(config, EMPTY_CONFIG_MEDIA_TYPE)
        digest = manifest_mod.model_digest(data)
        annotations = _annotations(data, sha256, bundle.stat().st_size, digest, image)
        oci_manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": config_descriptor.to_oci(),
            "layers": [layer.to_oci() for layer in layers],
            "annotations": annotations,
        }
        reporter.step(f"tagging {reference}")
        manifest_digest = client.put_manifest(oci_manifest, str(reference.tag))
    return PushResult(
        bundle=bundle,
        reference=str(reference),
        digest=manifest_digest,
        manifest=data,
        layers=layers,
        sha256=sha256,
        size=bundle.stat().st_size,
        model_digest=digest,
        image=image,
    )


def read_bundle_head(bundle: Path) -> tuple[dict[str, Any], bytes]:
    """Return a bundle's manifest and its exact bytes, reading only the first member."""
    walk = BundleWalk(bundle, strict=False)
    with BundleReader(bundle) as reader:
        data = walk.read_head(reader)
    return data, walk.raw["manifest.yaml"]


def read_sidecar_digest(bundle: Path) -> str | None:
    """Return the digest in ``BUNDLE.sha256``, or None when there is no sidecar."""
    sidecar = bundle.with_name(bundle.name + ".sha256")
    try:
        text = sidecar.read_bytes()[:MAX_SIDECAR_BYTES].decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {sidecar}: {exc}") from exc
    match = SIDECAR_LINE.match(text.splitlines()[0] if text else "")
    if match is None:
        raise InputError(
            f"{sidecar} is not in sha256sum format",
            f"recreate it with `sha256sum {bundle.name} > {sidecar.name}`",
        )
    return match.group(1)


def _upload_layers(
    client: RegistryClient,
    bundle: Path,
    data: dict[str, Any],
    raw: bytes,
    expected: str | None,
    scratch: Path,
    chunk_size: int,
    reporter: Reporter,
) -> tuple[list[Descriptor], str]:
    """Upload the bundle, its manifest and its sidecar; return their
    descriptors in layer order and the bundle's sha256."""
    reporter.step(f"uploading {bundle.name}")
    reporter.start(bundle.stat().st_size, "uploading")
    try:
        bundle_layer = client.upload_large(
            bundle,
            BUNDLE_MEDIA_TYPE,
            expected_sha256=expected,
            chunk_size=chunk_size,
            progress=reporter.advance,
        )
    finally:
        reporter.finish()
    sha256 = bundle_layer.digest.removeprefix("sha256:")
    top = manifest_mod.top_folder(str(data["name"]), str(data["version"]))
    manifest_file = _write(scratch / f"{top}.manifest.yaml", raw)
    sidecar_file = _write(
        scratch / f"{bundle.name}.sha256", f"{sha256}  {bundle.name}\n".encode()
    )
    manifest_layer = client.upload_small(manifest_file, MANIFEST_MEDIA_TYPE)
    sidecar_layer = client.upload_small(sidecar_file, SIDECAR_MEDIA_TYPE)
    layers = [
        _titled(manifest_layer, manifest_file.name),
        _titled(bundle_layer, bundle.name),
        _titled(sidecar_layer, sidecar_file.name),
    ]
    return layers, sha256


def _titled(layer: Descriptor, title: str) -> Descriptor:
    return Descriptor(layer.media_type, layer.digest, layer.size, {TITLE: title})


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _annotations(
    data: dict[str, Any],
    sha256: str,
    size: int,
    digest: str,
    image: dict[str, Any] | None,
) -> dict[str, str]:
    from . import __version__

    annotations = {
        TITLE: f"{data['name']} {data['version']}",
        ANNOTATION_NAME: str(data["name"]),
        ANNOTATION_VERSION: str(data["version"]),
        ANNOTATION_CREATED: str(data["created"]),
        ANNOTATION_SIZE: str(size),
        ANNOTATION_SHA256: sha256,
        ANNOTATION_MODEL_DIGEST: digest,
        ANNOTATION_TOOL: __version__,
    }
    if image is not None and image.get("pushed"):
        annotations[ANNOTATION_IMAGE] = str(image["reference"])
    return annotations


# ---------------------------------------------------------------------------
# The saved image


def _has_image(data: dict[str, Any]) -> bool:
    return any(entry["path"] == IMAGE_MEMBER for entry in data.get("files", []))


def image_reference(reference: Reference, image_tag: str | None) -> Reference:
    """Return ``REPOSITORY:TAG-image``, or the repository with ``image_tag``."""
    if image_tag:
        return reference.with_tag(image_tag)
    tag = f"{reference.tag}{IMAGE_TAG_SUFFIX}"
    if len(tag) > 128:
        raise UsageError(
            f"the image tag {tag!r} is longer than 128 characters",
            "name a shorter one with --image-tag",
        )
    return reference.with_tag(check_tag(tag))


def _push_image(
    bundle: Path,
    reference: Reference,
    image_tag: str | None,
    insecure: bool,
    reporter: Reporter,
) -> dict[str, Any]:
    """Extract the saved image from the bundle, verifying the whole bundle on
    the way, and push it through the container engine."""
    target = image_reference(reference, image_tag)
    reporter.step(f"pushing the saved image as {target}")
    with tempfile.TemporaryDirectory(prefix="goldmaster-image-") as scratch:
        archive = Path(scratch, "image.tar")
        extract_member(bundle, IMAGE_MEMBER, archive)
        digest = push_image_archive(
            archive, str(target), insecure, _engine_credentials()
        )
    return {"reference": str(target), "pushed": True, "digest": digest}


def push_image_archive(
    archive: Path, reference: str, insecure: bool, credentials: dict[str, str] | None
) -> str | None:
    """Load an image archive into the engine, tag it ``reference``, push it, and
    return the pushed manifest digest when the engine reports one."""
    return _container_engine().push_image_archive(
        archive, reference, insecure=insecure, credentials=credentials
    )


def _container_engine() -> Any:
    """Import the container module, which only the image transfers need.

    Pushing and pulling bundles alone work without loading the Docker SDK.
    """
    try:
        return importlib.import_module(f"{__package__}.container")
    except ImportError as exc:
        raise EngineError(
            f"the container engine module failed to load ({exc})",
            "install goldmaster with its docker dependency, or leave the image out",
        ) from exc


def _engine_credentials() -> dict[str, str] | None:
    """Credentials from the environment for the engine; without them the
    engine reads the Docker config file itself."""
    username = os.environ.get(USERNAME_VARIABLE)
    password = os.environ.get(PASSWORD_VARIABLE)
    if username and password:
        return {"username": username, "password": password}
    return None


class _MemberFile(Sink):
    def __init__(self, fh: Any) -> None:
        self.fh = fh

    def write(self, view: memoryview) -> None:
        self.fh.write(view)


def extract_member(bundle: Path, path: str, dest: Path) -> None:
    """Write one member of ``bundle`` to ``dest`` while checking every member;
    raise on the first mismatch."""
    found: list[str] = []
    with open(dest, "wb") as fh:

        def sinks(member: Member, entry: dict[str, Any]) -> Sink | None:
            if member.path != path or member.kind != "file":
                return None
            found.append(member.path)
            return _MemberFile(fh)

        BundleWalk(bundle, strict=True, sinks=sinks).run()
    if not found:
        raise BundleFormatError(f"{bundle} has no member {path!r} to extract")


# ---------------------------------------------------------------------------
# Remote manifests


def resolve(client: RegistryClient, reference: Reference) -> RemoteBundle:
    """Read the OCI manifest of ``reference`` and find the goldmaster layers."""
    oci, digest, _ = client.get_manifest(reference.target)
    artifact_type = oci.get("artifactType") or (oci.get("config") or {}).get(
        "mediaType"
    )
    if (
        oci.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST
        or artifact_type != ARTIFACT_TYPE
    ):
        raise NotABundleError(
            f"{reference} is not a goldmaster bundle (artifact type {artifact_type!r})",
            "name the tag that `goldmaster push` wrote, not the image tag",
        )
    layers = [
        Descriptor.from_oci(item, str(reference)) for item in oci.get("layers") or []
    ]
    by_type: dict[str, Descriptor] = {}
    for layer in layers:
        by_type.setdefault(layer.media_type, layer)
    for needed in (MANIFEST_MEDIA_TYPE, BUNDLE_MEDIA_TYPE):
        if needed not in by_type:
            raise RegistryError(f"{reference} has no layer of media type {needed}")
    return RemoteBundle(
        reference=reference,
        digest=digest,
        oci_manifest=oci,
        manifest_layer=by_type[MANIFEST_MEDIA_TYPE],
        bundle_layer=by_type[BUNDLE_MEDIA_TYPE],
        sidecar_layer=by_type.get(SIDECAR_MEDIA_TYPE),
        annotations={str(k): str(v) for k, v in (oci.get("annotations") or {}).items()},
    )


def load_remote_manifest(client: RegistryClient, remote: RemoteBundle) -> RemoteBundle:
    """Download and parse the manifest YAML blob of ``remote``."""
    raw = client.read_small(
        remote.manifest_layer, "the manifest blob", MAX_MANIFEST_BYTES
    )
    remote.raw_manifest = raw
    remote.manifest = manifest_mod.load(raw)
    return remote


def fetch_remote(
    ref: str, *, insecure: bool = False, reporter: Reporter | None = None
) -> RemoteBundle:
    """Read the registry manifest and the bundle's manifest YAML, nothing else."""
    reference = parse_reference(ref, require_target=True)
    with RegistryClient(reference, insecure, reporter) as client:
        return load_remote_manifest(client, resolve(client, reference))


def fetch_manifest(
    ref: str, *, insecure: bool = False, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Return the manifest of a remote bundle, downloading only its small blob."""
    return fetch_remote(ref, insecure=insecure, reporter=reporter).manifest


def manifest_of(
    source: str, *, insecure: bool = False, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Return the manifest of a local bundle path or a registry reference."""
    if is_reference(source):
        return fetch_manifest(source, insecure=insecure, reporter=reporter)
    return read_manifest(Path(source))


# ---------------------------------------------------------------------------
# Pull


def pull(
    ref: str,
    out_dir: Path,
    *,
    insecure: bool = False,
    force: bool = False,
    image: bool = False,
    reporter: Reporter | None = None,
) -> PullResult:
    """Download a bundle and its sidecar into ``out_dir``.

    Every blob is checked against its digest while it streams, and the
    bundle is verified member by member under a temporary name. Only a
    bundle that passes gets its final name ``NAME-VERSION.gm.tar.zst``.
    With ``image`` the container engine then pulls the image that push
    stored beside the bundle and checks its id against the manifest.
    """
    reporter = reporter or Reporter()
    reference = parse_reference(ref, require_target=True)
    created = _prepare_folder(out_dir)
    try:
        remote, final, report = _fetch_bundle(
            reference, out_dir, insecure, force, image, reporter
        )
    except BaseException:
        # A failed pull leaves no output folder behind that it created.
        if created is not None:
            remove_empty_folders(out_dir, created)
        raise
    image_target = pushed_image_reference(remote) if image else None
    sha256 = remote.bundle_layer.digest.removeprefix("sha256:")
    sidecar = final.with_name(final.name + ".sha256")
    atomic_write_bytes(sidecar, f"{sha256}  {final.name}\n".encode())
    fsync_dir(out_dir)
    report.sidecar = "match"
    result = PullResult(
        reference=str(reference),
        digest=remote.digest,
        bundle=final,
        sidecar=sidecar,
        sha256=sha256,
        size=remote.bundle_layer.size,
        report=report,
    )
    if image_target is not None:
        try:
            result.image = pull_bundle_image(
                remote, image_target, insecure=insecure, reporter=reporter
            )
        except GoldmasterError as exc:
            exc.message = f"{exc.message}; the verified bundle is kept at {final}"
            raise
    return result


def _fetch_bundle(
    reference: Reference,
    out_dir: Path,
    insecure: bool,
    force: bool,
    image: bool,
    reporter: Reporter,
) -> tuple[RemoteBundle, Path, VerifyReport]:
    """Download and verify the bundle, then give it its final name in ``out_dir``."""
    with RegistryClient(reference, insecure, reporter) as client:
        remote = load_remote_manifest(client, resolve(client, reference))
        if image:
            # Raises before the download when push stored no image.
            pushed_image_reference(remote)
        final = out_dir / _bundle_name(remote)
        if (final.exists() or final.is_symlink()) and not force:
            raise InputError(
                f"bundle already exists: {final}", "pass --force to replace it"
            )
        with temporary_path(final) as tmp:
            _download_bundle(client, remote, tmp, reporter)
            _check_remote_sidecar(client, remote)
            report = _verify_download(tmp, remote, reporter)
            report.bundle = str(final)
            os.replace(tmp, final)
    return remote, final, report


def pull_bundle_image(
    remote: RemoteBundle,
    target: Reference,
    *,
    insecure: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Pull ``target``, the image that push stored beside ``remote``, through
    the container engine and return its reference, id and manifest digest.

    Raises VerificationError unless the image has the id that the bundle's
    manifest records.
    """
    reporter = reporter or Reporter()
    recorded = (remote.manifest.get("image") or {}).get("id")
    reporter.step(f"pulling the image {target}")
    info = _container_engine().pull_image(
        str(target), insecure=insecure, credentials=_engine_credentials()
    )
    if info.id != recorded:
        # NOTE: the id is the digest of the image config, which push and pull
        # keep on Podman 4.3. An engine that reports another kind of id, such
        # as Docker Engine with the containerd image store, fails here.
        raise VerificationError(
            f"the image {target} has id {info.id}, but the bundle records {recorded}",
            "push the bundle again with its image",
        )
    prefix = f"{target.repository_name}@"
    digests = [
        d.removeprefix(prefix) for d in info.repo_digests if d.startswith(prefix)
    ]
    return {
        "reference": str(target),
        "id": info.id,
        "digest": digests[0] if digests else None,
    }


def pushed_image_reference(remote: RemoteBundle) -> Reference:
    """Return the reference of the image that push stored beside ``remote``.

    That is the one the artifact's image annotation names, else ``TAG-image``
    in the bundle's repository. Raises UsageError when the bundle has no
    saved image, because push then stored none.
    """
    section = remote.manifest.get("image") or {}
    if not section.get("saved") or not section.get("id"):
        raise UsageError(
            f"the bundle in {remote.reference} has no saved image, so push stored none",
            "pull without --image",
        )
    return _pushed_image_reference(remote)


def _pushed_image_reference(remote: RemoteBundle) -> Reference:
    """Return the image reference that push recorded, else ``TAG-image``.

    The annotation comes from the registry, so it must name the bundle's
    own registry: credentials for it are sent with the pull.
    """
    annotated = remote.annotations.get(ANNOTATION_IMAGE)
    if annotated:
        target = parse_reference(annotated, require_target=True)
        if target.registry != remote.reference.registry:
            raise RegistryError(
                f"the bundle in {remote.reference} names its image on another "
                f"registry, {target.registry}",
                "pull the image by hand if you trust that registry",
            )
        return target
    if remote.reference.tag is None:
        raise UsageError(
            f"{remote.reference} records no image reference and names no tag",
            "pull the bundle by its tag, so that TAG-image can be pulled",
        )
    return image_reference(remote.reference, None)


def _prepare_folder(out_dir: Path) -> Path | None:
    """Create ``out_dir`` and check that files can be written in it, before
    anything is downloaded. Return the topmost folder that was created, or
    None when ``out_dir`` existed."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path is not a folder: {out_dir}")
    try:
        created = make_folders(out_dir)
    except OSError as exc:
        raise InputError(f"cannot create {out_dir}: {exc.strerror}") from exc
    try:
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write to output folder {out_dir}: {exc.strerror or exc}",
            "pass an --output folder that you can write to",
        ) from exc
    return created


def _bundle_name(remote: RemoteBundle) -> str:
    """Name the file from the verified manifest blob, never from an annotation."""
    name = manifest_mod.check_name(str(remote.manifest.get("name")), "name")
    version = manifest_mod.check_name(str(remote.manifest.get("version")), "version")
    return f"{manifest_mod.top_folder(name, version)}{manifest_mod.SUFFIX}"


def _download_bundle(
    client: RegistryClient, remote: RemoteBundle, tmp: Path, reporter: Reporter
) -> None:
    reporter.step(f"downloading {remote.reference}")
    reporter.start(remote.bundle_layer.size, "downloading")
    try:
        with open(tmp, "wb") as fh:
            client.download(
                remote.bundle_layer, fh, "the bundle blob", reporter.advance
            )
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        reporter.finish()


def remote_sidecar_status(client: RegistryClient, remote: RemoteBundle) -> str:
    """Compare the sidecar blob with the bundle blob's digest: "match",
    "mismatch", "invalid" or "absent". The bundle blob itself is not read."""
    if remote.sidecar_layer is None:
        return "absent"
    raw = client.read_small(remote.sidecar_layer, "the sidecar blob", MAX_SIDECAR_BYTES)
    match = SIDECAR_LINE.match(raw.decode("utf-8", "replace").split("\n", 1)[0])
    if match is None:
        return "invalid"
    return (
        "match"
        if "sha256:" + match.group(1) == remote.bundle_layer.digest
        else "mismatch"
    )


def _check_remote_sidecar(client: RegistryClient, remote: RemoteBundle) -> None:
    status = remote_sidecar_status(client, remote)
    if status in ("mismatch", "invalid"):
        raise VerificationError(
            f"the sidecar in {remote.reference} does not match its bundle blob "
            f"{remote.bundle_layer.digest}",
            "push the bundle again",
        )


def _verify_download(
    tmp: Path, remote: RemoteBundle, reporter: Reporter
) -> VerifyReport:
    reporter.step("verifying the downloaded bundle")
    walk = BundleWalk(tmp, strict=False)
    report = walk.run()
    if not report.ok:
        first = (report.mismatched and report.mismatched[0].path) or (
            report.missing + report.extra + report.sums_mismatched + ["?"]
        )[0]
        raise PulledBundleInvalid(
            f"the bundle in {remote.reference} failed verification at {first!r}",
            "the bundle was corrupt when it was pushed; capture or push it again",
            report,
        )
    if walk.raw.get("manifest.yaml") != remote.raw_manifest:
        raise VerificationError(
            f"the manifest blob in {remote.reference} differs from the bundle's manifest.yaml",
            "push the bundle again",
        )
    return report


def verify_remote(
    ref: str, *, insecure: bool = False, reporter: Reporter | None = None
) -> VerifyReport:
    """Pull ``ref`` into a temporary folder, verify it, and remove it again."""
    with tempfile.TemporaryDirectory(prefix="goldmaster-verify-") as scratch:
        try:
            result = pull(ref, Path(scratch), insecure=insecure, reporter=reporter)
        except PulledBundleInvalid as exc:
            exc.report.bundle = ref
            return exc.report
    result.report.bundle = ref
    return result.report
