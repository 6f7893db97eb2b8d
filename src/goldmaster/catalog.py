"""List the golden masters in a folder or in a registry repository."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import manifest as manifest_mod
from .errors import GoldmasterError, InputError
from .ociref import parse_reference
from .progress import Reporter
from .registry import (
    ANNOTATION_CREATED,
    ANNOTATION_MODEL_DIGEST,
    ANNOTATION_NAME,
    ANNOTATION_VERSION,
    NotABundleError,
    RemoteBundle,
    read_sidecar_digest,
    remote_sidecar_status,
    resolve,
)
from .registry_client import RegistryClient, hash_file
from .verify import read_manifest


@dataclass
class CatalogEntry:
    """One golden master in a listing; ``error`` is set when it could not be read."""

    location: str
    name: str | None = None
    version: str | None = None
    created: str | None = None
    size: int | None = None
    model_digest: str | None = None
    sidecar: str = "absent"
    tag: str | None = None
    digest: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.sidecar not in ("mismatch", "invalid")

    def to_json(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "tag": self.tag,
            "digest": self.digest,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "size": self.size,
            "model_digest": self.model_digest,
            "sidecar": self.sidecar,
            "error": self.error,
        }


@dataclass
class Catalog:
    """The golden masters found in one folder or repository."""

    source: str
    kind: str  # "folder" or "registry"
    entries: list[CatalogEntry]
    skipped: list[str]

    @property
    def ok(self) -> bool:
        return all(entry.ok for entry in self.entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "goldmaster.list/v1",
            "source": self.source,
            "kind": self.kind,
            "ok": self.ok,
            "bundles": [entry.to_json() for entry in self.entries],
            "skipped": self.skipped,
        }


def list_folder(folder: Path, check_sidecar: bool = True) -> Catalog:
    """List the bundles directly inside ``folder``, newest first.

    With ``check_sidecar``, every bundle file is hashed in full and compared
    with its ``.sha256`` file. Without it, the sidecar status is "unchecked".
    """
    entries = [
        _folder_entry(path, check_sidecar)
        for path in _bundle_files(folder)
        if not path.name.startswith(".") and path.is_file()
    ]
    entries.sort(
        key=lambda e: (e.created or "", e.name or "", e.version or ""), reverse=True
    )
    return Catalog(source=str(folder), kind="folder", entries=entries, skipped=[])


def _bundle_files(folder: Path) -> list[Path]:
    """Return the bundle files in ``folder``, sorted by name, or raise
    InputError when it is missing, a file or unreadable."""
    hint = "pass a folder of bundles or REGISTRY/REPOSITORY"
    if folder.is_file():
        raise InputError(f"{folder} is a file, not a folder", hint)
    if not folder.is_dir():
        raise InputError(f"folder not found: {folder}", hint)
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InputError(
            f"cannot read folder {folder}: {exc.strerror or exc}",
            "check the folder's permissions",
        ) from exc
    return [folder / name for name in names if name.endswith(manifest_mod.SUFFIX)]


def _folder_entry(path: Path, check_sidecar: bool) -> CatalogEntry:
    """Describe one bundle file. A bundle that cannot be read becomes an entry
    with ``error`` set, so that the rest of the folder is still listed."""
    entry = CatalogEntry(location=str(path))
    try:
        entry.size = path.stat().st_size
        try:
            _describe(entry, read_manifest(path))
        except GoldmasterError as exc:
            entry.error = exc.message
        entry.sidecar = sidecar_status(path) if check_sidecar else "unchecked"
    except OSError as exc:
        entry.error = f"cannot read {path}: {exc.strerror or exc}"
    return entry


def _describe(entry: CatalogEntry, manifest: dict[str, Any]) -> None:
    entry.name = str(manifest.get("name"))
    entry.version = str(manifest.get("version"))
    entry.created = str(manifest.get("created"))
    entry.model_digest = manifest_mod.model_digest(manifest)


def sidecar_status(bundle: Path) -> str:
    """Return "match", "mismatch", "invalid" or "absent" for ``BUNDLE.sha256``."""
    try:
        expected = read_sidecar_digest(bundle)
    except InputError:
        return "invalid"
    if expected is None:
        return "absent"
    return "match" if hash_file(bundle) == expected else "mismatch"


def list_repository(
    ref: str, *, insecure: bool = False, reporter: Reporter | None = None
) -> Catalog:
    """List the goldmaster artifacts among the tags of ``REGISTRY/REPOSITORY``.

    Only registry manifests, their annotations and the tiny sidecar blobs are
    read. The sidecar column compares the sidecar's digest with the bundle
    blob's digest; ``goldmaster verify REF`` checks the bundle itself.
    """
    reference = parse_reference(ref)
    entries: list[CatalogEntry] = []
    skipped: list[str] = []
    with RegistryClient(reference, insecure, reporter) as client:
        for tag in sorted(client.list_tags()):
            tagged = reference.with_tag(tag)
            entry = CatalogEntry(location=str(tagged), tag=tag)
            try:
                remote = resolve(client, tagged)
                _describe_remote(entry, remote)
                entry.sidecar = remote_sidecar_status(client, remote)
            except NotABundleError:
                skipped.append(tag)
                continue
            except GoldmasterError as exc:
                entry.error = exc.message
            entries.append(entry)
    entries.sort(key=lambda e: (e.created or "", e.tag or ""), reverse=True)
    return Catalog(
        source=reference.repository_name,
        kind="registry",
        entries=entries,
        skipped=skipped,
    )


def _describe_remote(entry: CatalogEntry, remote: RemoteBundle) -> None:
    annotations = remote.annotations
    entry.digest = remote.digest
    entry.name = annotations.get(ANNOTATION_NAME)
    entry.version = annotations.get(ANNOTATION_VERSION)
    entry.created = annotations.get(ANNOTATION_CREATED)
    entry.model_digest = annotations.get(ANNOTATION_MODEL_DIGEST)
    entry.size = remote.bundle_layer.size
