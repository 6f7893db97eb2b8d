"""Tests of environment capture, vendoring and restore with real venvs and packages.

One session-scoped world builds tiny projects, serves them from two simple
indexes on 127.0.0.1 (each checking its own Basic-auth credentials), and
installs them into a target venv in six ways. Fake credentials are planted
in pip.conf, PIP_INDEX_URL, a VCS URL and the code folder's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from envkit import (
    IndexServer,
    add_to_index,
    build_wheel,
    clean_pip_env,
    commit_all,
    import_values,
    make_project,
    make_venv,
    pip,
    run,
)
from goldmaster.cli import cli
from goldmaster.env_indexes import (
    auth_env_name,
    effective_indexes,
    pip_sources,
    requirement_file_sources,
    restore_url,
)
from goldmaster.env_lockfiles import find_lockfiles
from goldmaster.env_probe import find_target_python
from goldmaster.environment import capture_environment, restore_environment
from goldmaster.errors import EnvironmentCaptureError
from goldmaster.parts import Section

SECRET_A = "env-s3cret-A1"
SECRET_B = "conf-s3cret-B2"
SECRET_VCS = "vcs-s3cret-C3"
SECRET_REQ = "req-s3cret-D4"
SECRET_UV = "uv-s3cret-E5"
SECRETS = (SECRET_A, SECRET_B, SECRET_VCS, SECRET_REQ, SECRET_UV)
MODULES = ["tinyidx", "tinylabel", "tinywheel", "tinygone", "tinyedit", "tinyvcs"]
# The code folder's files with credentials in index URLs. Capture rejects
# them in code/ because code is copied verbatim, so captures of the code
# folder leave them out. env/lockfiles/ still contains redacted copies.
CREDENTIAL_FILES_OUT = ["--exclude", "requirements.txt", "--exclude", "pyproject.toml"]


@dataclass
class World:
    root: Path
    code_dir: Path
    venv: Path
    python: Path
    index_a: IndexServer
    index_b: IndexServer
    capture_env: dict[str, str]
    vcs_commit: str
    freeze_before: str = ""
    list_before: list[str] = field(default_factory=list)
    values_before: dict[str, str] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)


def _build_indexes(root: Path) -> tuple[Path, Path]:
    wheels = root / "built"
    index_a, index_b = root / "index-a", root / "index-b"
    tinyidx = make_project(root / "src-tinyidx", "tinyidx", "1.0", "idx-1.0")
    add_to_index(index_a, "tinyidx", build_wheel(tinyidx, wheels))
    plain = make_project(root / "src-label-plain", "tinylabel", "1.0", "label-plain")
    add_to_index(index_a, "tinylabel", build_wheel(plain, wheels / "plain"))
    cuda = make_project(
        root / "src-label-cu118", "tinylabel", "1.0+cu118", "label-cu118"
    )
    add_to_index(index_b, "tinylabel", build_wheel(cuda, wheels / "cu118"))
    return index_a, index_b


def _write_code_folder(code_dir: Path, port_b: int) -> None:
    code_dir.mkdir(parents=True)
    (code_dir / "train.py").write_text("import tinyedit\nprint(tinyedit.VALUE)\n")
    (code_dir / "requirements.txt").write_text(
        f"--extra-index-url http://dave:{SECRET_REQ}@127.0.0.1:{port_b}/simple\n"
        f"tinyidx==1.0\ntinyvcs @ git+https://carol:{SECRET_VCS}@git.example.invalid/t.git\n"
    )
    (code_dir / "pyproject.toml").write_text(
        '[project]\nname = "trainer"\nversion = "0"\n\n'
        f'[[tool.uv.index]]\nname = "b"\nurl = "http://erin:{SECRET_UV}@127.0.0.1:{port_b}/simple"\n\n'
        f'[[tool.poetry.source]]\nname = "b"\nurl = "http://127.0.0.1:{port_b}/simple"\n'
    )


def _install_target(world: World) -> None:
    env = dict(clean_pip_env(), **world.capture_env)
    python, root = world.python, world.root
    pip(python, "install", "tinyidx==1.0", "tinylabel==1.0+cu118", env=env)

    local = make_project(root / "src-tinywheel", "tinywheel", "2.0", "wheel-2.0")
    pip(python, "install", str(build_wheel(local, root / "local-wheels")), env=env)

    gone = make_project(root / "gone" / "tinygone", "tinygone", "0.3", "gone-0.3")
    pip(python, "install", str(gone), env=env)
    shutil.rmtree(root / "gone")

    edit = make_project(
        world.code_dir / "tinyedit", "tinyedit", "0.1", "edit-committed", True
    )
    commit_all(edit)
    (edit / "src" / "tinyedit" / "__init__.py").write_text(
        "VALUE = 'edit-uncommitted'\n"
    )
    pip(python, "install", "-e", str(edit), env=env)

    vcs = root / "repos" / "tinyvcs"
    make_project(vcs, "tinyvcs", "0.2", "vcs-0.2")
    world.vcs_commit = commit_all(vcs)
    url = f"git+file://carol:{SECRET_VCS}@localhost{vcs}@{world.vcs_commit}"
    pip(python, "install", url, env=env)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("envworld")
    index_a_dir, index_b_dir = _build_indexes(root)
    server_a = IndexServer(index_a_dir, "alice", SECRET_A)
    server_b = IndexServer(index_b_dir, "bob", SECRET_B)
    pip_conf = root / "pip.conf"
    pip_conf.write_text(
        f"[global]\nextra-index-url = {server_b.url('bob', SECRET_B)}\n"
    )
    capture_env = {
        "PIP_CONFIG_FILE": str(pip_conf),
        "PIP_INDEX_URL": server_a.url("alice", SECRET_A),
    }
    code_dir = root / "code"
    _write_code_folder(code_dir, server_b.port)
    venv = root / "target"
    world = World(
        root, code_dir, venv, make_venv(venv), server_a, server_b, capture_env, ""
    )
    _install_target(world)

    world.freeze_before = pip(world.python, "freeze", "--all")
    world.list_before = pip(world.python, "list", "--format=freeze").split()
    world.values_before = import_values(world.python, MODULES)
    yield world
    server_a.stop()
    server_b.stop()


def _capture(
    world: World, workdir: Path, *, wheels: bool, strict: bool = False
) -> Section:
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith(("PIP_", "UV_")) or key in (
                "VIRTUAL_ENV",
                "CONDA_PREFIX",
                "PYTHONPATH",
            ):
                patch.delenv(key)
        for key, value in world.capture_env.items():
            patch.setenv(key, value)
        return capture_environment(
            world.python, world.code_dir, wheels=wheels, strict=strict, workdir=workdir
        )


@pytest.fixture(scope="session")
def vendored(world: World, tmp_path_factory: pytest.TempPathFactory) -> Section:
    return _capture(world, tmp_path_factory.mktemp("capture-wheels"), wheels=True)


@pytest.fixture(scope="session")
def unvendored(world: World, tmp_path_factory: pytest.TempPathFactory) -> Section:
    return _capture(world, tmp_path_factory.mktemp("capture-plain"), wheels=False)


def _dists(section: Section) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in section.data["distributions"]}


def _part_bytes(section: Section, arcname: str) -> bytes:
    for part in section.parts:
        if part.arcname == arcname:
            return part.data if part.data is not None else part.source.read_bytes()
    raise AssertionError(
        f"no part {arcname}; parts: {[p.arcname for p in section.parts]}"
    )


def _every_byte(section: Section) -> list[tuple[str, bytes]]:
    """Return the section's manifest text, notices and every part, wheels unzipped."""
    blobs = [
        ("manifest", yaml.safe_dump(section.data, sort_keys=True).encode()),
        ("notices", "\n".join(section.notices).encode()),
    ]
    for part in section.parts:
        raw = part.data if part.data is not None else part.source.read_bytes()
        blobs.append((part.arcname, raw))
        if part.arcname.endswith(".whl"):
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                for name in archive.namelist():
                    blobs.append((f"{part.arcname}!{name}", archive.read(name)))
    return blobs


@contextlib.contextmanager
def _venv_moved_aside(world: World, tmp_path: Path) -> Iterator[None]:
    """Move the captured venv away while a restore runs, to show it is not used."""
    aside = tmp_path / "captured-venv-aside"
    world.venv.rename(aside)
    try:
        yield
    finally:
        aside.rename(world.venv)


def _write_bundle_tree(section: Section, code_dir: Path, dest: Path) -> dict[str, Any]:
    """Lay the section out as an extracted bundle and return its manifest."""
    for part in section.parts:
        target = dest / part.arcname
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(
            part.data if part.data is not None else part.source.read_bytes()
        )
    shutil.copytree(code_dir, dest / "code", ignore=shutil.ignore_patterns(".git"))
    text = yaml.safe_dump({"environment": section.data}, sort_keys=True)
    return yaml.safe_load(text)


def test_capture_records_interpreter(world: World, vendored: Section) -> None:
    interpreter = vendored.data["interpreter"]
    assert interpreter["major_minor"] == "{}.{}".format(*sys.version_info[:2])
    assert interpreter["executable"] == str(world.python)
    assert interpreter["is_venv"] is True
    assert vendored.data["kind"] == "venv"
    assert interpreter["tags"]["abi"].startswith("cp")
    assert str(world.venv / "lib") in " ".join(vendored.data["sys_path"])


def test_capture_records_every_origin(world: World, vendored: Section) -> None:
    dists = _dists(vendored)
    assert dists["tinyidx"]["origin"] == {"kind": "index"}
    assert dists["tinyidx"]["installer"] == "pip"
    assert dists["tinyidx"]["requested"] is True
    assert dists["tinylabel"]["version"] == "1.0+cu118"
    assert dists["tinywheel"]["origin"]["kind"] == "file"
    assert dists["tinywheel"]["origin"]["sha256"]
    assert dists["tinygone"]["origin"]["kind"] == "dir"
    assert dists["tinygone"]["origin"]["exists"] is False
    assert dists["tinyedit"]["origin"]["kind"] == "editable"
    assert dists["tinyedit"]["origin"]["in_code"] == "tinyedit"
    vcs = dists["tinyvcs"]["origin"]
    assert vcs["kind"] == "vcs"
    assert vcs["commit"] == world.vcs_commit
    assert vcs["requirement_url"].startswith("git+file://")
    assert vcs["requirement_url"].endswith("@" + vcs["commit"])


def test_capture_reports_editable_pth_as_external(
    world: World, vendored: Section
) -> None:
    external = {item["path"] for item in vendored.data["external_code"]}
    assert str((world.code_dir / "tinyedit" / "src").resolve()) in external


def test_capture_redacts_index_sources(world: World, vendored: Section) -> None:
    index = vendored.data["index"]
    assert (
        index["effective"]["index_url"]
        == f"http://REDACTED@127.0.0.1:{world.index_a.port}/simple"
    )
    assert index["effective"]["extra_index_urls"] == [
        f"http://REDACTED@127.0.0.1:{world.index_b.port}/simple"
    ]
    by_source = {(s["source"], s["option"]): s for s in index["sources"]}
    assert by_source[("environment", "index-url")]["variable"] == "PIP_INDEX_URL"
    conf = by_source[("pip.conf", "extra-index-url")]
    assert conf["path"] == world.capture_env["PIP_CONFIG_FILE"]
    assert conf["credentials"] is True
    assert conf["auth_env"] == f"GOLDMASTER_INDEX_AUTH_127_0_0_1_{world.index_b.port}"
    assert ("requirements", "extra-index-url") in by_source
    assert ("uv", "extra-index-url") in by_source
    assert ("poetry", "extra-index-url") in by_source


def test_capture_copies_lockfiles(world: World, vendored: Section) -> None:
    listing = {item["path"]: item for item in vendored.data["lockfiles"]}
    assert set(listing) == {
        "pyproject.toml",
        "requirements.txt",
        "tinyedit/pyproject.toml",
    }
    assert listing["requirements.txt"]["redacted"] is True
    assert listing["tinyedit/pyproject.toml"]["redacted"] is False
    copied = _part_bytes(vendored, "env/lockfiles/tinyedit/pyproject.toml")
    assert copied == (world.code_dir / "tinyedit" / "pyproject.toml").read_bytes()
    requirements = _part_bytes(vendored, "env/lockfiles/requirements.txt").decode()
    assert "http://REDACTED@127.0.0.1:" in requirements
    assert "tinyidx==1.0" in requirements


def test_capture_vendors_every_distribution(world: World, vendored: Section) -> None:
    wheels = vendored.data["wheels"]
    assert wheels["missing"] == []
    assert wheels["complete"] is True
    methods = {
        name: item["vendored"]["method"] for name, item in _dists(vendored).items()
    }
    assert methods["tinyidx"] == "download"
    assert methods["tinylabel"] == "download"
    assert methods["tinywheel"] == "copy"
    assert methods["tinygone"] == "repack"
    assert methods["tinyedit"] == "build"
    assert methods["tinyvcs"] == "build"
    for item in vendored.data["distributions"]:
        data = _part_bytes(vendored, item["vendored"]["file"])
        assert hashlib.sha256(data).hexdigest() == item["vendored"]["sha256"]


def test_vendored_label_wheel_is_the_cu118_build(vendored: Section) -> None:
    item = _dists(vendored)["tinylabel"]
    assert item["vendored"]["file"] == "env/wheels/tinylabel-1.0+cu118-py3-none-any.whl"
    raw = _part_bytes(vendored, item["vendored"]["file"])
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        assert archive.read("tinylabel/__init__.py") == b"VALUE = 'label-cu118'\n"


def test_vendored_editable_wheel_has_uncommitted_change(vendored: Section) -> None:
    raw = _part_bytes(vendored, _dists(vendored)["tinyedit"]["vendored"]["file"])
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        assert archive.read("tinyedit/__init__.py") == b"VALUE = 'edit-uncommitted'\n"


def test_lock_pins_with_hashes_when_vendored(vendored: Section) -> None:
    lock = _part_bytes(vendored, "env/requirements.lock").decode()
    requirements = [
        line for line in lock.splitlines() if line and not line.startswith("#")
    ]
    pins = [line for line in requirements if "==" in line]
    hashes = [line for line in requirements if "--hash=sha256:" in line]
    assert len(pins) == len(vendored.data["distributions"])
    assert len(hashes) == len(pins)
    assert "tinylabel==1.0+cu118 \\" in pins


def test_lock_references_sources_without_wheels(
    world: World, unvendored: Section
) -> None:
    lock = _part_bytes(unvendored, "env/requirements.lock").decode()
    lines = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert "tinyidx==1.0" in lines
    assert "tinylabel==1.0+cu118" in lines
    assert "-e ./code/tinyedit" in lines
    assert "./env/wheels/tinygone-0.3-py3-none-any.whl" in lines
    assert "./env/wheels/tinywheel-2.0-py3-none-any.whl" in lines
    vcs = [line for line in lines if line.startswith("tinyvcs @ git+file://localhost")]
    assert len(vcs) == 1
    assert "--hash" not in lock
    carried = sorted(
        part.arcname for part in unvendored.parts if part.arcname.endswith(".whl")
    )
    assert carried == [
        "env/wheels/tinygone-0.3-py3-none-any.whl",
        "env/wheels/tinywheel-2.0-py3-none-any.whl",
    ]


def test_pip_freeze_part_matches_target(world: World, vendored: Section) -> None:
    freeze = _part_bytes(vendored, "env/pip-freeze.txt").decode()
    assert vendored.data["files"]["pip_freeze_tool"] == "pip"
    assert "tinylabel==1.0+cu118" in freeze.splitlines()
    assert freeze.splitlines() == world.freeze_before.splitlines()


@pytest.mark.parametrize("fixture", ["vendored", "unvendored"])
def test_capture_holds_no_planted_secret(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    section = request.getfixturevalue(fixture)
    for where, blob in _every_byte(section):
        for secret in SECRETS:
            assert secret.encode() not in blob, f"{secret} found in {where}"


def test_capture_is_reproducible(
    world: World, vendored: Section, tmp_path: Path
) -> None:
    again = _capture(world, tmp_path, wheels=True)
    assert again.data == vendored.data
    first = {
        part.arcname: hashlib.sha256(_part_bytes(vendored, part.arcname)).hexdigest()
        for part in vendored.parts
    }
    second = {
        part.arcname: hashlib.sha256(_part_bytes(again, part.arcname)).hexdigest()
        for part in again.parts
    }
    assert first == second


def test_restore_online_uses_auth_from_environment(
    world: World, unvendored: Section, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "restored"
    manifest = _write_bundle_tree(unvendored, world.code_dir, dest)
    for key in list(os.environ):
        if key.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv(
        auth_env_name(world.index_a.url("alice", "x")), f"alice:{SECRET_A}"
    )
    monkeypatch.setenv(auth_env_name(world.index_b.url("bob", "x")), f"bob:{SECRET_B}")
    served_before = len(world.index_a.requests)

    result = restore_environment(dest, manifest, python=None, offline=False)

    assert result["mode"] == "online"
    assert len(world.index_a.requests) > served_before
    restored = dest / ".venv" / "bin" / "python"
    assert import_values(restored, MODULES) == world.values_before
    assert [d for d in result["differences"] if d["field"] != "origin"] == []
    # code/ replaces the code section here, which is not this module's output.
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_relative_to(dest / "code"):
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{secret} written to {path}"


def test_restore_offline_from_vendored_wheels(
    world: World, vendored: Section, tmp_path: Path
) -> None:
    dest = tmp_path / "restored"
    manifest = _write_bundle_tree(vendored, world.code_dir, dest)
    served = len(world.index_a.requests) + len(world.index_b.requests)

    with _venv_moved_aside(world, tmp_path):
        result = restore_environment(dest, manifest, python=None, offline=True)

    assert result["mode"] == "offline"
    assert len(world.index_a.requests) + len(world.index_b.requests) == served
    restored = dest / ".venv" / "bin" / "python"
    assert pip(restored, "list", "--format=freeze").split() == world.list_before
    before = world.freeze_before.splitlines()
    index_lines = [line for line in before if "==" in line and not line.startswith("#")]
    assert "tinylabel==1.0+cu118" in index_lines
    assert set(index_lines) <= set(pip(restored, "freeze", "--all").splitlines())
    assert import_values(restored, MODULES) == world.values_before
    origin_changes = {
        d["name"]: (d["captured"], d["restored"]) for d in result["differences"]
    }
    assert origin_changes == {
        "tinyedit": ("editable", "index"),
        "tinygone": ("dir", "index"),
        "tinyvcs": ("vcs", "index"),
        "tinywheel": ("file", "index"),
    }
    assert all(
        d["note"] == "installed from the wheel vendored at capture"
        for d in result["differences"]
    )


def test_restore_without_matching_python_names_version(
    vendored: Section, tmp_path: Path
) -> None:
    manifest = {"environment": json.loads(json.dumps(vendored.data))}
    manifest["environment"]["interpreter"]["major_minor"] = "3.99"
    with pytest.raises(
        EnvironmentCaptureError, match=r"no Python 3\.99 interpreter found"
    ):
        restore_environment(tmp_path, manifest, python=None, offline=True)
    assert not (tmp_path / ".venv").exists()


def test_restore_rejects_python_of_other_version(
    vendored: Section, tmp_path: Path
) -> None:
    manifest = {"environment": json.loads(json.dumps(vendored.data))}
    manifest["environment"]["interpreter"]["major_minor"] = "3.99"
    with pytest.raises(
        EnvironmentCaptureError, match=r"the bundle needs cpython 3\.99"
    ):
        restore_environment(tmp_path, manifest, python=sys.executable, offline=True)


def test_restore_offline_needs_vendored_wheels(
    world: World, unvendored: Section, tmp_path: Path
) -> None:
    dest = tmp_path / "restored"
    manifest = _write_bundle_tree(unvendored, world.code_dir, dest)
    with pytest.raises(EnvironmentCaptureError, match="no vendored wheels"):
        restore_environment(dest, manifest, python=None, offline=True)


def test_repacked_pip_leaves_out_entry_point_scripts(vendored: Section) -> None:
    raw = _part_bytes(vendored, _dists(vendored)["pip"]["vendored"]["file"])
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        names = archive.namelist()
    assert "pip/__init__.py" in names
    assert "pip-23.2.1.dist-info/RECORD" == names[-1] or names[-1].endswith(
        ".dist-info/RECORD"
    )
    assert [name for name in names if ".data/scripts/" in name] == []
    assert [name for name in names if name.endswith(".pyc")] == []


def _isolate_pip(patch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("PIP_", "UV_")) or key in (
            "VIRTUAL_ENV",
            "CONDA_PREFIX",
            "PYTHONPATH",
        ):
            patch.delenv(key)
    patch.setenv("PIP_CONFIG_FILE", os.devnull)


def test_capture_without_target_pip(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    index = world.index_a.url("alice", SECRET_A)
    env = clean_pip_env(PIP_INDEX_URL=index)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "tinyidx==1.0",
        ],
        env=env,
    )
    project = make_project(tmp_path / "tinystrict", "tinystrict", "0.1", "strict")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-e",
            str(project),
        ],
        env=env,
    )
    shutil.rmtree(project)
    _isolate_pip(monkeypatch)
    monkeypatch.setenv("PIP_INDEX_URL", index)

    with pytest.raises(
        EnvironmentCaptureError,
        match=r"tinystrict: the source folder .* no longer exists",
    ):
        capture_environment(
            python, None, wheels=True, strict=True, workdir=tmp_path / "strict"
        )
    # A relative work folder must work although pip runs in other folders.
    monkeypatch.chdir(tmp_path)
    section = capture_environment(
        python, None, wheels=True, strict=False, workdir=Path("relative-work")
    )

    dists = _dists(section)
    assert set(dists) == {"tinyidx", "tinystrict"}
    assert dists["tinyidx"]["vendored"]["method"] == "download"
    assert dists["tinystrict"]["vendored"] is None
    (missing,) = section.data["wheels"]["missing"]
    assert missing["name"] == "tinystrict"
    assert "no longer exists" in missing["reason"]
    assert section.data["wheels"]["complete"] is False
    assert section.data["files"]["pip_freeze_tool"] == "goldmaster"
    lock = _part_bytes(section, "env/requirements.lock").decode()
    assert "# not vendored: tinystrict==0.1" in lock.splitlines()
    assert any(
        "could not be vendored: tinystrict==0.1" in notice for notice in section.notices
    )


CONDA_RECORDS = [
    {
        "name": "python",
        "version": "3.11.7",
        "build": "hab00c5b_1_cpython",
        "build_number": 1,
        "channel": "https://conda.anaconda.org/conda-forge/linux-64",
        "subdir": "linux-64",
        "fn": "python-3.11.7-hab00c5b_1_cpython.conda",
        "url": "https://conda.anaconda.org/conda-forge/linux-64/python-3.11.7-hab00c5b_1_cpython.conda",
        "md5": "27cf681282c11dba7b0b1fd266e8f289",
        "sha256": "8ad3a3ba1a5e4cc6e4f5b6cd5a8b5e3d1f3e7c0b8b1c0f0e4a6a6c5e2d7b1f00",
        "requested_spec": "python=3.11",
    },
    {
        "name": "libzlib",
        "version": "1.2.13",
        "build": "hd590300_5",
        "build_number": 5,
        "channel": "https://conda.example.invalid/t/tk-s3cret-F6/private/linux-64",
        "subdir": "linux-64",
        "url": "https://conda.example.invalid/t/tk-s3cret-F6/private/linux-64/libzlib-1.2.13-hd590300_5.conda",
        "md5": "f36c115f1ee199da648e0597ec2047ad",
        "sha256": "370c7c5893b737596fd6ca0d9190c9715d89d888b8c88537ae1ef168c25e82e4",
    },
]


def test_capture_reads_conda_records(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "envs" / "trainer"
    python = make_venv(prefix, with_pip=False)
    (prefix / "conda-meta").mkdir()
    for record in CONDA_RECORDS:
        name = f"{record['name']}-{record['version']}-{record['build']}.json"
        (prefix / "conda-meta" / name).write_text(json.dumps(record))
    (prefix / "conda-meta" / "history").write_text("==> 2024-01-01 <==\n")
    env = clean_pip_env(PIP_INDEX_URL=world.index_a.url("alice", SECRET_A))
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "tinyidx==1.0",
        ],
        env=env,
    )
    _isolate_pip(monkeypatch)
    monkeypatch.setenv("CONDA_PREFIX", str(prefix))

    section = capture_environment(
        None, None, wheels=False, strict=False, workdir=tmp_path / "w"
    )

    conda = section.data["conda"]
    assert section.data["kind"] == "conda"
    assert [p["name"] for p in conda["packages"]] == ["libzlib", "python"]
    assert conda["packages"][1]["channel"] == "conda-forge"
    assert conda["packages"][1]["md5"] == CONDA_RECORDS[0]["md5"]
    assert conda["pip_on_top"] == ["tinyidx"]
    assert conda["platform"] == "linux-64"
    spec = _part_bytes(section, "env/conda-explicit.txt").decode().splitlines()
    assert "@EXPLICIT" in spec
    assert CONDA_RECORDS[0]["url"] + "#" + CONDA_RECORDS[0]["md5"] in spec
    assert (
        "https://conda.example.invalid/t/REDACTED/private/linux-64/libzlib-1.2.13-hd590300_5.conda"
        "#f36c115f1ee199da648e0597ec2047ad"
    ) in spec
    yml = _part_bytes(section, "env/environment.yml").decode()
    assert yml.startswith("name: trainer\n")
    assert "prefix" not in yml
    assert "  - python=3.11.7=hab00c5b_1_cpython" in yml.splitlines()
    assert "      - tinyidx==1.0" in yml.splitlines()
    for where, blob in _every_byte(section):
        assert b"tk-s3cret-F6" not in blob, f"conda token found in {where}"

    dest = tmp_path / "restored"
    manifest = _write_bundle_tree(section, tmp_path / "envs", dest)
    monkeypatch.setenv("PATH", str(tmp_path / "no-conda-here"))
    result = restore_environment(dest, manifest, python=None, offline=None)
    assert result["conda"]["ran"] is False
    script = (dest / "env" / "conda-restore.sh").read_text()
    assert (
        f"conda create --yes --prefix {dest / '.conda'} --file {dest / 'env/conda-explicit.txt'}"
        in script
    )
    assert not (dest / ".conda").exists()


def test_capture_records_legacy_egg_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = make_venv(tmp_path / "venv")
    project = tmp_path / "tinylegacy"
    (project / "tinylegacy").mkdir(parents=True)
    (project / "tinylegacy" / "__init__.py").write_text("VALUE = 'legacy'\n")
    (project / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='tinylegacy', version='0.5', packages=['tinylegacy'])\n"
    )
    has_setuptools = run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print(bool(u.find_spec('setuptools')))",
        ]
    )
    if has_setuptools.strip() != "True":
        pytest.skip(
            "this Python's venv comes without setuptools, which setup.py develop needs"
        )
    run([str(python), "setup.py", "-q", "develop"], env=clean_pip_env(), cwd=project)
    _isolate_pip(monkeypatch)

    section = capture_environment(
        python, tmp_path, wheels=False, strict=False, workdir=tmp_path / "w"
    )

    origin = _dists(section)["tinylegacy"]["origin"]
    assert origin["kind"] == "egg-link"
    assert origin["path"] == str(project)
    assert origin["in_code"] == "tinylegacy"
    lock = _part_bytes(section, "env/requirements.lock").decode()
    assert "-e ./code/tinylegacy" in lock.splitlines()


def _scan_tree_for_secrets(root: Path) -> None:
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        blobs = [(str(path), path.read_bytes())]
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as archive:
                blobs += [
                    (f"{path}!{name}", archive.read(name))
                    for name in archive.namelist()
                ]
        for where, blob in blobs:
            for secret in SECRETS:
                assert secret.encode() not in blob, f"{secret} found in {where}"


def test_cli_capture_inspect_restore_offline(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "out"
    _isolate_pip(monkeypatch)
    for key, value in world.capture_env.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    capture_args = [
        "capture",
        str(model),
        "--code",
        str(world.code_dir),
        *CREDENTIAL_FILES_OUT,
        "--python",
        str(world.python),
        "--wheels",
        "--strict",
        "--name",
        "tiny",
        "--version",
        "1",
        "--output",
        str(out),
    ]
    captured = runner.invoke(cli, capture_args)
    assert captured.exit_code == 0, captured.output
    bundle = out / "tiny-1.gm.tar.zst"

    inspected = runner.invoke(cli, ["inspect", str(bundle)])
    assert inspected.exit_code == 0, inspected.output
    assert "Python environment" in inspected.output
    assert "tinyvcs 0.2" in inspected.output
    as_json = json.loads(runner.invoke(cli, ["inspect", "--json", str(bundle)]).output)
    environment = as_json["manifest"]["environment"]
    assert environment["wheels"]["complete"] is True

    extracted = tmp_path / "extracted"
    plain = runner.invoke(cli, ["restore", "--no-env", str(bundle), str(extracted)])
    assert plain.exit_code == 0, plain.output
    assert not (extracted / ".venv").exists()
    assert (extracted / "env" / "requirements.lock").is_file()
    assert (extracted / "env" / "lockfiles" / "requirements.txt").is_file()
    _scan_tree_for_secrets(extracted)

    shutil.rmtree(world.venv)
    monkeypatch.delenv("PIP_INDEX_URL")
    dest = tmp_path / "restored"
    restored = runner.invoke(
        cli, ["restore", "--no-index", "--json", str(bundle), str(dest)]
    )
    assert restored.exit_code == 0, restored.output
    stage = json.loads(restored.stdout)["stages"]["environment"]
    assert stage["mode"] == "offline"
    assert {d["field"] for d in stage["differences"]} == {"origin"}
    python = dest / ".venv" / "bin" / "python"
    assert pip(python, "list", "--format=freeze").split() == world.list_before
    assert import_values(python, MODULES) == world.values_before


def test_cli_bundle_code_folder_holds_no_secret(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code is copied verbatim, so capture rejects a code folder whose
    dependency files carry a password until those files are left out."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"weights")
    _isolate_pip(monkeypatch)
    runner = CliRunner()
    args = ["capture", str(model), "--code", str(world.code_dir), "--no-env"]
    rejected = runner.invoke(cli, [*args, "--output", str(tmp_path / "rejected")])
    assert rejected.exit_code == 1, rejected.output
    assert "code/requirements.txt line 1" in rejected.output
    assert "code/pyproject.toml line 7" in rejected.output
    assert not (tmp_path / "rejected").exists()

    args += CREDENTIAL_FILES_OUT
    captured = runner.invoke(cli, [*args, "--output", str(tmp_path / "out")])
    assert captured.exit_code == 0, captured.output
    (bundle,) = (tmp_path / "out").glob("*.gm.tar.zst")
    extracted = tmp_path / "extracted"
    plain = runner.invoke(cli, ["restore", "--no-env", str(bundle), str(extracted)])
    assert plain.exit_code == 0, plain.output
    _scan_tree_for_secrets(extracted / "code")


def test_pip_sources_follow_pip_precedence(tmp_path: Path) -> None:
    prefix = tmp_path / "venv"
    prefix.mkdir()
    (prefix / "pip.conf").write_text(
        "[global]\nindex-url = https://site.example.invalid/simple\n"
        "[install]\nextra-index-url =\n  https://u:p1@a.example.invalid/simple\n"
        "  https://b.example.invalid/simple\n"
    )
    env_file = tmp_path / "env.conf"
    env_file.write_text("[global]\nfind-links = /wheels\n")
    environ = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_DIRS": str(tmp_path / "none"),
    }

    sources, effective = pip_sources(
        str(prefix), dict(environ, PIP_CONFIG_FILE=str(env_file))
    )
    summary = effective_indexes(effective)
    assert summary["index_url"] == "https://site.example.invalid/simple"
    assert summary["extra_index_urls"] == [
        "https://REDACTED@a.example.invalid/simple",
        "https://b.example.invalid/simple",
    ]
    assert summary["find_links"] == ["/wheels"]
    assert [(s["scope"], s["option"]) for s in sources] == [
        ("site", "index-url"),
        ("site", "extra-index-url"),
        ("site", "extra-index-url"),
        ("env", "find-links"),
    ]

    overridden = dict(environ, PIP_INDEX_URL="https://t:p2@env.example.invalid/simple")
    _, effective = pip_sources(str(prefix), overridden)
    assert (
        effective_indexes(effective)["index_url"]
        == "https://REDACTED@env.example.invalid/simple"
    )
    assert pip_sources(str(prefix), dict(environ, PIP_CONFIG_FILE=os.devnull))[0] == []


def test_requirement_file_sources_read_every_spelling(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(
        "-i https://u:p@one.example.invalid/simple\n"
        "--extra-index-url=https://two.example.invalid/simple\n"
        "--find-links https://three.example.invalid/wheels  # comment\n"
        "--no-index\n"
        "numpy==2.0 --hash=sha256:00\n"
    )
    sources = requirement_file_sources(path, "requirements.txt")
    assert [(s["option"], s.get("url", s.get("value"))) for s in sources] == [
        ("index-url", "https://REDACTED@one.example.invalid/simple"),
        ("extra-index-url", "https://two.example.invalid/simple"),
        ("find-links", "https://three.example.invalid/wheels"),
        ("no-index", "true"),
    ]


def test_restore_url_fills_credentials_from_environment() -> None:
    recorded = "https://REDACTED@idx.example.invalid:8443/simple"
    variable = auth_env_name(recorded)
    assert variable == "GOLDMASTER_INDEX_AUTH_IDX_EXAMPLE_INVALID_8443"
    assert restore_url(recorded, {}) == (
        "https://idx.example.invalid:8443/simple",
        variable,
    )
    filled, unset = restore_url(recorded, {variable: "me:p@ss/word"})
    assert filled == "https://me:p%40ss%2Fword@idx.example.invalid:8443/simple"
    assert unset is None
    assert restore_url("https://plain.example.invalid/simple", {}) == (
        "https://plain.example.invalid/simple",
        None,
    )


def test_find_lockfiles_skips_venvs_and_hidden(tmp_path: Path) -> None:
    for name in (
        "requirements-dev.txt",
        "uv.lock",
        "sub/poetry.lock",
        "requirements/base.in",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / "venv" / "requirements.txt").write_text("x\n")
    (tmp_path / ".tox").mkdir()
    (tmp_path / ".tox" / "requirements.txt").write_text("x\n")
    (tmp_path / "notes.txt").write_text("x\n")
    expected = [
        "requirements/base.in",
        "requirements-dev.txt",
        "sub/poetry.lock",
        "uv.lock",
    ]
    found = [path.relative_to(tmp_path).as_posix() for path in find_lockfiles(tmp_path)]
    assert found == expected

    (tmp_path / "restored" / "code").mkdir(parents=True)
    (tmp_path / "restored" / "code" / "pyproject.toml").write_text("x\n")
    (tmp_path / ".gitignore").write_text("restored/\n")
    commit_all(tmp_path)
    (tmp_path / "environment.yml").write_text("name: x\n")
    found = [path.relative_to(tmp_path).as_posix() for path in find_lockfiles(tmp_path)]
    assert found == ["environment.yml", *expected]


def test_find_target_python_order(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    conda = tmp_path / "conda"
    (conda / "bin").mkdir(parents=True)
    (conda / "bin" / "python").write_text("")
    environ = {"VIRTUAL_ENV": str(venv), "CONDA_PREFIX": str(conda), "PATH": ""}
    assert find_target_python(None, environ) == venv / "bin" / "python"
    assert (
        find_target_python(None, dict(environ, VIRTUAL_ENV=""))
        == conda / "bin" / "python"
    )
    assert find_target_python(conda, environ) == conda / "bin" / "python"
    with pytest.raises(EnvironmentCaptureError, match="no Python interpreter found"):
        find_target_python(None, {"PATH": str(tmp_path / "empty")})
    with pytest.raises(EnvironmentCaptureError, match="Python interpreter not found"):
        find_target_python(tmp_path / "missing" / "python", environ)
