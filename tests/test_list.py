"""goldmaster list of a folder and of a registry repository."""

from __future__ import annotations

import os
from pathlib import Path

import oras.provider
import pytest

from bundle_factory import make_bundle, make_code, run_cli, run_json
from goldmaster.manifest import model_digest
from goldmaster.verify import read_manifest
from registry_fixtures import RegistryServer

pytestmark = pytest.mark.usefixtures("registry_env")

ENTRY_KEYS = {
    "location",
    "tag",
    "digest",
    "name",
    "version",
    "created",
    "size",
    "model_digest",
    "sidecar",
    "error",
}


def folder_of_bundles(tmp_path: Path) -> tuple[Path, list[Path]]:
    bundles = [
        make_bundle(tmp_path, "alpha", "1.0"),
        make_bundle(tmp_path, "beta", "2.0"),
    ]
    return bundles[0].parent, bundles


def test_list_folder_json(tmp_path: Path) -> None:
    folder, bundles = folder_of_bundles(tmp_path)
    listing = run_json("list", folder)
    assert listing["schema"] == "goldmaster.list/v1"
    assert listing["kind"] == "folder"
    assert listing["ok"] is True
    entries = {entry["name"]: entry for entry in listing["bundles"]}
    assert set(entries) == {"alpha", "beta"}
    for bundle in bundles:
        entry = entries[read_manifest(bundle)["name"]]
        assert set(entry) == ENTRY_KEYS
        assert entry["location"] == str(bundle)
        assert entry["size"] == bundle.stat().st_size
        assert entry["model_digest"] == model_digest(read_manifest(bundle))
        assert entry["sidecar"] == "match"
        assert entry["error"] is None


def test_list_folder_table(tmp_path: Path) -> None:
    folder, _ = folder_of_bundles(tmp_path)
    result = run_cli("list", folder)
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header == [
        "FILE",
        "NAME",
        "VERSION",
        "CREATED",
        "SIZE",
        "MODEL",
        "DIGEST",
        "SIDECAR",
    ]
    assert "alpha" in result.stdout
    assert "beta" in result.stdout


def test_list_folder_sidecar_mismatch(tmp_path: Path) -> None:
    folder, bundles = folder_of_bundles(tmp_path)
    sidecar = bundles[1].with_name(bundles[1].name + ".sha256")
    sidecar.write_text(f"{'0' * 64}  {bundles[1].name}\n")
    result = run_cli("list", folder, "--json")
    assert result.exit_code == 1
    assert '"sidecar": "mismatch"' in result.stdout
    unchecked = run_json("list", folder, "--no-hash")
    assert {entry["sidecar"] for entry in unchecked["bundles"]} == {"unchecked"}


def test_list_folder_reports_unreadable(tmp_path: Path) -> None:
    folder, _ = folder_of_bundles(tmp_path)
    (folder / "broken-1.0.gm.tar.zst").write_bytes(b"not zstd at all")
    result = run_cli("list", folder, "--json")
    assert result.exit_code == 1
    assert "not a zstd-compressed file" in result.stdout


def test_list_missing_folder(tmp_path: Path) -> None:
    result = run_cli("list", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "folder not found" in result.stderr


def test_list_empty_folder(tmp_path: Path) -> None:
    result = run_cli("list", tmp_path)
    assert result.exit_code == 0
    assert "no golden masters" in result.stdout


def test_model_digest_follows_weights(tmp_path: Path) -> None:
    weights = {"b.bin": os.urandom(1000), "a/c.bin": os.urandom(1000)}
    first = read_manifest(
        make_bundle(
            tmp_path / "1",
            weights=weights,
            params={"lr": 1},
            code=make_code(tmp_path / "c1"),
        )
    )
    second = read_manifest(
        make_bundle(
            tmp_path / "2",
            weights=dict(reversed(list(weights.items()))),
            params={"lr": 2},
            code=make_code(tmp_path / "c2", {"other.py": "pass\n"}),
        )
    )
    changed = read_manifest(
        make_bundle(tmp_path / "3", weights={**weights, "b.bin": b"x"})
    )
    assert model_digest(first) == model_digest(second)
    assert model_digest(first) != model_digest(changed)


def test_list_registry(oci_registry: RegistryServer, tmp_path: Path) -> None:
    _, bundles = folder_of_bundles(tmp_path)
    repository = f"{oci_registry.address}/team/listed"
    for bundle in bundles:
        run_json("push", bundle, repository, "--insecure")
    note = tmp_path / "note.txt"
    note.write_text("not a bundle\n")
    oras.provider.Registry(hostname=oci_registry.address, insecure=True).push(
        target=f"{repository}:notes",
        files=[str(note)],
        disable_path_validation=True,
        quiet=True,
    )

    listing = run_json("list", repository, "--insecure")

    assert listing["kind"] == "registry"
    assert listing["source"] == repository
    assert listing["skipped"] == ["notes"]
    entries = {entry["tag"]: entry for entry in listing["bundles"]}
    assert set(entries) == {"1.0", "2.0"}
    for bundle in bundles:
        manifest = read_manifest(bundle)
        entry = entries[manifest["version"]]
        assert entry["name"] == manifest["name"]
        assert entry["created"] == manifest["created"]
        assert entry["size"] == bundle.stat().st_size
        assert entry["model_digest"] == model_digest(manifest)
        assert entry["sidecar"] == "match"
        assert entry["digest"].startswith("sha256:")


def test_list_registry_table(oci_registry: RegistryServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "tabled", "4.2")
    repository = f"{oci_registry.address}/team/tabled"
    run_json("push", bundle, repository, "--insecure")
    result = run_cli("list", repository, "--insecure")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "TAG"
    assert lines[1].split()[:3] == ["4.2", "tabled", "4.2"]


def test_list_registry_unknown_repository(oci_registry: RegistryServer) -> None:
    result = run_cli("list", f"{oci_registry.address}/team/never-pushed", "--insecure")
    assert result.exit_code == 2
    assert "NAME_UNKNOWN" in result.stderr


def test_list_table_names_each_file(tmp_path: Path) -> None:
    folder, bundles = folder_of_bundles(tmp_path)
    copy = folder / "copy-of-alpha.gm.tar.zst"
    copy.write_bytes(bundles[0].read_bytes())
    result = run_cli("list", folder)
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()[1:]
    first_cells = sorted(row.split()[0] for row in rows)
    assert first_cells == sorted([bundles[0].name, bundles[1].name, copy.name])


def test_list_file_is_not_folder(tmp_path: Path) -> None:
    _, bundles = folder_of_bundles(tmp_path)
    result = run_cli("list", bundles[0])
    assert result.exit_code == 2
    assert f"{bundles[0]} is a file, not a folder" in result.stderr


ROOT_READS_ALL = pytest.mark.skipif(
    os.geteuid() == 0, reason="root can read files without read permission"
)


@ROOT_READS_ALL
def test_list_unreadable_folder(tmp_path: Path) -> None:
    folder, _ = folder_of_bundles(tmp_path)
    folder.chmod(0o300)
    try:
        result = run_cli("list", folder)
    finally:
        folder.chmod(0o700)
    assert result.exit_code == 2
    assert f"cannot read folder {folder}" in result.stderr


@ROOT_READS_ALL
def test_list_unreadable_bundle_is_row(tmp_path: Path) -> None:
    folder, bundles = folder_of_bundles(tmp_path)
    bundles[0].chmod(0o200)
    try:
        listing = run_cli("list", folder, "--json")
    finally:
        bundles[0].chmod(0o600)
    assert listing.exit_code == 1
    assert f"cannot read {bundles[0]}" in listing.stdout
    assert '"beta"' in listing.stdout
