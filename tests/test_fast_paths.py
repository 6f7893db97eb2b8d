"""Shortcuts that make capture fast must give exactly what the general code gives:
tar headers, manifest YAML, glob matching, member names and the secret scan of
the manifest. The default text level follows the amount of text."""

from __future__ import annotations

import fnmatch
import hashlib
import random
import tarfile
from pathlib import PurePosixPath

import pytest
import yaml

from goldmaster import manifest
from goldmaster.archive import _ustar_header, safe_relpath, tar_header
from goldmaster.capture import (
    _PLAIN_NAME,
    TEXT_BYTES_HARD,
    TEXT_LEVEL_HARD,
    TEXT_LEVEL_LARGE,
    _Entry,
    text_level_for,
)
from goldmaster.errors import SecretFoundError, UnsafeMemberError
from goldmaster.model import _candidates, matches
from goldmaster.secrets import _scan_value, check_capture, scan_value


def _tarfile_header(name: str, size: int, mtime: int, mode: int, link: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if link else size
    info.mtime = mtime
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if link:
        info.type = tarfile.LNKTYPE
        info.linkname = link
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def test_tar_header_matches_tarfile() -> None:
    rng = random.Random(0)
    fast = 0
    for _ in range(5000):
        name = "".join(
            rng.choice("ab/._-é") for _ in range(rng.choice([1, 9, 100, 101, 160]))
        )
        link = rng.choice(["", "top/x", "l" * 100, "l" * 101, "é"])
        size = rng.choice([0, 1, 511, 8**11 - 1, 8**11, 10**13])
        mtime = rng.choice([0, 1_700_000_000, 8**11 - 1, 8**11])
        mode = rng.choice([0o644, 0o755, 0o100644])

        header = tar_header(name, size, mtime, mode, link)

        assert header == _tarfile_header(name, size, mtime, mode, link), (
            name,
            size,
            link,
        )
        fast += _ustar_header(name, size, mtime, mode, link) is not None
    assert fast > 200


def _plain_entry(rng: random.Random, index: int) -> dict[str, object]:
    digest = hashlib.sha256(str(index).encode()).hexdigest()
    entry: dict[str, object] = {
        "path": rng.choice(["code/", "weights/", "env/"])
        + "".join(rng.choice("abcXYZ019_.-+/") for _ in range(rng.randint(1, 30))),
        "size": rng.choice([0, 7, 10**12]),
        # Digests of decimal digits only must be quoted, like the number they look like.
        "sha256": rng.choice([digest, "1" * 64, "0" * 64]),
    }
    if rng.random() < 0.2:
        entry["same_as"] = "weights/model.safetensors"
    if rng.random() < 0.2:
        entry["stored"] = {"path": f"{entry['path']}.bytegroup", "sha256": digest,
                           "codec": "bytegroup", "offset": 8, "width": 2, "block": 16}  # fmt: skip
    return entry


@pytest.mark.parametrize("seed", range(20))
def test_manifest_dump_matches_yaml_emitter(seed: int) -> None:
    rng = random.Random(seed)
    files = [_plain_entry(rng, i) for i in range(200)]
    if seed % 4 == 0:
        # Names that need quotes or escapes send the whole list to the emitter.
        files.append({"path": rng.choice(["a b", "true", "x: y", "é", "-", "1.5"]),
                      "size": 1, "sha256": "f" * 64})  # fmt: skip
    data = {"schema": "goldmaster/v1", "files": files, "notes": "a\nb\n", "n": 3}

    assert manifest.dump(data) == manifest._dump(data)


def test_manifest_dump_without_files() -> None:
    data = {"schema": "goldmaster/v1", "files": [], "name": "m"}

    assert manifest.dump(data) == manifest._dump(data)
    assert b"files: []\n" in manifest.dump(data)


def test_glob_candidates_match_purepath() -> None:
    rng = random.Random(0)
    for _ in range(20000):
        rel = "".join(
            rng.choice(["a", "b", "/", ".", ".."]) for _ in range(rng.randint(0, 7))
        )
        path = PurePosixPath(rel)
        expected = [rel, path.name, *(str(p) for p in path.parents if str(p) != ".")]

        assert _candidates(rel) == expected, rel


def _matches_by_fnmatch(rel: str, patterns: list[str]) -> bool:
    path = PurePosixPath(rel)
    candidates = [rel, path.name, *(str(p) for p in path.parents if str(p) != ".")]
    return any(fnmatch.fnmatchcase(c, pat) for c in candidates for pat in patterns)


def test_matches_agrees_with_fnmatch() -> None:
    rng = random.Random(1)
    globs = [
        "*.pem",
        ".env",
        "secrets",
        "a/*",
        "[ab]/b",
        "*/c?",
        "**",
        "b",
        "?",
        "*.py",
    ]
    hits = 0
    for _ in range(5000):
        rel = "/".join(
            rng.choice(["a", "b", "c1", ".env", "k.pem", "x.py"]) for _ in range(3)
        )
        patterns = rng.sample(globs, rng.randint(0, 3))

        result = matches(rel, patterns)

        assert result is _matches_by_fnmatch(rel, patterns), (rel, patterns)
        hits += result
    assert 500 < hits < 4500


def test_scan_value_finds_token_in_files_list() -> None:
    token = "ghp_" + "A1b2" * 9
    files = [
        {"path": f"code/m{i}.py", "size": i, "sha256": "0" * 64} for i in range(3000)
    ]
    files[1234]["path"] = f"code/{token}.py"

    found = scan_value({"files": files}, "manifest.yaml")

    assert [f.where for f in found] == ["manifest.yaml: files[1234].path"]
    assert found == _scan_value({"files": files}, "manifest.yaml", "")


@pytest.mark.parametrize(
    "value",
    [
        "AKIAABCDEFGHIJKLMNOP",
        "aws_secret_access_key = " + "a" * 40,
        "https://user:pass@example.com/x",
        "-----BEGIN RSA PRIVATE KEY-----",
    ],
)
def test_scan_value_finds_token_at_string_edges(value: str) -> None:
    data = {"a": value, "b": [value + "\n", "x", {"k": value}]}

    assert scan_value(data, "m") == _scan_value(data, "m", "")
    assert len(scan_value(data, "m")) == 3


def test_plain_shortcut_matches_resolver() -> None:
    # manifest._plain skips the resolver for names with a slash and for hex
    # digests, so YAML must read back every such value as a string.
    rng = random.Random(2)
    resolver = yaml.resolver.Resolver()
    values = ["0b101", "0x1f", "1e5", "deadbeef", "12:30", "2024-01-01", "a/1.5"]
    values += [hashlib.sha256(str(i).encode()).hexdigest() for i in range(500)]
    values += [
        "".join(
            rng.choice("0123456789abcdefbx/._-+:eE") for _ in range(rng.randint(1, 8))
        )
        for _ in range(20000)
    ]
    for value in values:
        slow = (
            manifest._PLAIN.fullmatch(value) is not None
            and resolver.resolve(yaml.ScalarNode, value, (True, False))
            == manifest._STR_TAG
        )
        assert manifest._plain(value) is slow, value


def test_text_level_by_text_size() -> None:
    small = [
        _Entry("code/a.py", size=TEXT_BYTES_HARD),
        _Entry("weights/w.bin", size=1 << 40),
    ]
    large = [_Entry("code/a.py", size=TEXT_BYTES_HARD), _Entry("code/b.py", size=1)]
    linked = [*small, _Entry("code/c.py", link="code/a.py", size=TEXT_BYTES_HARD)]

    assert text_level_for(small) == TEXT_LEVEL_HARD
    assert text_level_for(large) == TEXT_LEVEL_LARGE
    assert text_level_for(linked) == TEXT_LEVEL_HARD


def test_secret_scan_reads_file_names() -> None:
    token = "ghp_" + "A1b2" * 9
    files = [
        {"path": "code/a.py", "size": 1, "sha256": "0" * 64},
        {
            "path": "code/b.py",
            "size": 1,
            "sha256": "0" * 64,
            "same_as": f"code/{token}",
        },
    ]

    with pytest.raises(SecretFoundError, match=r"files\[1\]\.same_as"):
        check_capture({"files": files}, [])
    files[1]["same_as"] = "code/a.py"
    check_capture({"files": files}, [])


def _yaml_or_error(text: str) -> object:
    try:
        return yaml.load(text, Loader=manifest._Loader)
    except yaml.YAMLError:
        return "error"


@pytest.mark.parametrize("seed", range(20))
def test_manifest_load_shortcut_matches_yaml(seed: int) -> None:
    rng = random.Random(seed)
    files = [_plain_entry(rng, i) for i in range(100)]
    data = {"schema": "goldmaster/v1", "name": "m", "files": files, "notes": "a\nb\n"}
    text = manifest.dump(data).decode()

    fast = manifest._load_fast(text)

    if any("stored" in entry for entry in files):
        assert fast is None
    else:
        assert fast == data
        assert list(fast) == list(data)
    assert _yaml_or_error(text) == data


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  size: 7\n", "  size: 07\n"),  # an octal int in YAML
        ("  size: 7\n", "  size: 7\n  extra: 1\n"),
        ("- path: code/a\n", "- path: code/a #c\n"),
        ("- path: code/a\n", "- path: 'code/a'\n"),
        ("- path: code/a\n", "- path: code/a\n# note\n"),
        ("- path: code/a\n", "- path: true\n"),
        ("- path: code/a\n", "- path: 1.5\n"),
        ("sha256: " + "a" * 64, "sha256: " + "1" * 64),  # an int in YAML
        ("files:\n", "files:\n-\n"),
        ("notes: x\n", "notes: x\nfiles: []\n"),
        (
            "notes: x\n",
            'notes: "x\nfiles:\n- path: code/b\n  size: 1\n  sha256: '
            + "b" * 64
            + '\n"\n',
        ),
        ("notes: x\n", "notes: x\n-\n"),
        ("notes: x\n", "notes: |\n  x\n"),
        ("- path: code/a\n", "- path: code/a\r\n"),
    ],
)
def test_manifest_load_falls_back_to_yaml(old: str, new: str) -> None:
    entry = "- path: code/a\n  size: 7\n  sha256: " + "a" * 64 + "\n"
    text = "schema: goldmaster/v1\nfiles:\n" + entry * 3 + "notes: x\n"
    assert old in text
    changed = text.replace(old, new, 1)

    fast = manifest._load_fast(changed)

    if fast is not None:
        assert fast == _yaml_or_error(changed)


def test_plain_name_shortcut_accepts_only_safe_names() -> None:
    # capture skips the full name check for names that _PLAIN_NAME matches,
    # so each of them must pass that check.
    rng = random.Random(3)
    names = ["a", "a/b", ".env", "...", "a/.../b", "a/", "a//b", "../a", "a/..", "é"]
    names += [
        "".join(
            rng.choice(["a", "/", ".", "..", "\\", "\n", " ", "é"]) for _ in range(6)
        )
        for _ in range(20000)
    ]
    plain = 0
    for name in names:
        if _PLAIN_NAME.fullmatch(name) is None:
            continue
        plain += 1
        try:
            safe_relpath(f"top/{name}", "top")
        except UnsafeMemberError:
            pytest.fail(f"{name!r} matched the shortcut but is unsafe")
    assert plain > 300
