"""Code snapshots: git-tracked files, git state, secrets left out, plain folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldmaster.codebase import snapshot_code
from goldmaster.errors import InputError
from helpers import git, git_repo, plain_code


def _names(snapshot) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(f.arcname.removeprefix("code/") for f in snapshot.files)


def test_git_state_recorded(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    facts = git_repo(repo)

    snapshot = snapshot_code(repo, [], [], [])

    state = snapshot.info["git"]
    assert state["commit"] == facts["commit"]
    assert len(state["commit"]) == 40
    assert state["branch"] == "train"
    assert state["dirty"] is True
    assert state["untracked"] == facts["untracked"]
    assert state["diff"] == "git/uncommitted.diff"
    assert snapshot.info["root_name"] == "repo"


def test_remote_recorded_without_credentials(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    facts = git_repo(repo)

    remote = snapshot_code(repo, [], [], []).info["git"]["remote"]

    assert remote["name"] == "origin"
    assert remote["url"] == "https://REDACTED@git.example.test/ml/model.git"
    assert facts["secret"] not in remote["url"]
    assert "alice" not in remote["url"]


def test_tracked_files_only_and_env_left_out(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    facts = git_repo(repo)

    snapshot = snapshot_code(repo, [], [], [])

    assert _names(snapshot) == facts["tracked"]
    assert snapshot.info["left_out_secrets"] == [".env"]
    assert any(".env" in notice for notice in snapshot.notices)
    assert snapshot.info["files"] == len(facts["tracked"])


def test_working_tree_content_archived(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git_repo(repo)

    snapshot = snapshot_code(repo, [], [], [])

    [train] = [f for f in snapshot.files if f.arcname == "code/train.py"]
    assert train.path.read_text() == "EPOCHS = 5\n"


def test_diff_and_untracked_files_generated(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git_repo(repo)

    extra = snapshot_code(repo, [], [], []).extra

    assert (
        extra["git/uncommitted.diff"]
        == git(repo, "diff", "--binary", "HEAD").encode() + b"\n"
    )
    assert b"-EPOCHS = 3\n+EPOCHS = 5" in extra["git/uncommitted.diff"]
    assert extra["git/untracked.txt"] == b"notes.txt\nscratch/plot.py\n"


def test_staged_change_counts_as_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git_repo(repo)
    git(repo, "checkout", "-q", "train.py")
    (repo / "src" / "net.py").write_text("LAYERS = 4\n")
    git(repo, "add", "src/net.py")

    snapshot = snapshot_code(repo, [], [], [])

    assert snapshot.info["git"]["dirty"] is True
    assert b"+LAYERS = 4" in snapshot.extra["git/uncommitted.diff"]


def test_clean_repository_has_no_diff(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git_repo(repo)
    git(repo, "checkout", "-q", "train.py")
    (repo / "notes.txt").unlink()
    (repo / "scratch" / "plot.py").unlink()

    snapshot = snapshot_code(repo, [], [], [])

    assert snapshot.info["git"]["dirty"] is False
    assert snapshot.info["git"]["untracked"] == []
    assert "diff" not in snapshot.info["git"]
    assert snapshot.extra == {}


def test_detached_head_has_no_branch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    facts = git_repo(repo)
    git(repo, "checkout", "-q", "--detach", "HEAD")

    state = snapshot_code(repo, [], [], []).info["git"]

    assert state["branch"] is None
    assert state["commit"] == facts["commit"]


def test_subfolder_snapshots_whole_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    facts = git_repo(repo)

    snapshot = snapshot_code(repo / "src", [], [], [])

    assert _names(snapshot) == facts["tracked"]


def test_include_keeps_named_secret(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git_repo(repo)

    snapshot = snapshot_code(repo, [], [".env"], [])

    assert ".env" in _names(snapshot)
    assert snapshot.info["left_out_secrets"] == []


def test_exclude_and_skip_paths(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git_repo(repo)
    (repo / "model").mkdir()
    (repo / "model" / "w.bin").write_bytes(b"w")
    git(repo, "add", "model")

    snapshot = snapshot_code(repo, ["README.md"], [], [repo / "model"])

    assert _names(snapshot) == ["src/loss.py", "src/net.py", "train.py"]


def test_repository_without_remote_or_commits(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")

    snapshot = snapshot_code(repo, [], [], [])

    state = snapshot.info["git"]
    assert state["commit"] is None
    assert state["remote"] is None
    assert state["branch"] == "main"
    assert _names(snapshot) == ["a.py"]
    assert "git/uncommitted.diff" not in snapshot.extra


def test_folder_outside_git(tmp_path: Path) -> None:
    code = plain_code(tmp_path / "code")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "infer.cpython-311.pyc").write_bytes(b"\0")
    (code / ".venv").mkdir()
    (code / ".venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (code / ".venv" / "site.py").write_text("")
    (code / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")

    snapshot = snapshot_code(code, [], [], [])

    assert snapshot.info["git"] is None
    assert _names(snapshot) == ["infer.py", "pkg/__init__.py"]
    assert snapshot.info["left_out_secrets"] == ["id_rsa"]
    assert snapshot.extra == {}


def test_symbolic_links_in_code_listed(tmp_path: Path) -> None:
    code = plain_code(tmp_path / "code")
    (code / "latest.py").symlink_to("infer.py")

    snapshot = snapshot_code(code, [], [], [])

    assert "latest.py" not in _names(snapshot)
    assert snapshot.info["symbolic_links_skipped"] == ["latest.py"]


def test_missing_code_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        snapshot_code(tmp_path / "absent", [], [], [])

    assert str(tmp_path / "absent") in info.value.message


def test_code_path_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file.py"
    path.write_text("")

    with pytest.raises(InputError) as info:
        snapshot_code(path, [], [], [])

    assert "not a folder" in info.value.message
