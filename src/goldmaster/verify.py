"""Read a bundle member by member and check every byte against its manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import manifest as manifest_mod
from .archive import (
    HEADER_ALLOWANCE,
    MAX_MANIFEST_BYTES,
    BundleReader,
    Member,
    safe_relpath,
)
from .codec import SUFFIX, ByteGroup, Transform
from .errors import BundleFormatError, UnsafeMemberError, VerificationError

SPECIAL = ("manifest.yaml", "SHA256SUMS")


@dataclass
class Mismatch:
    """A member whose size or digest differs from what the manifest records."""

    path: str
    expected: str
    actual: str


@dataclass
class VerifyReport:
    """The outcome of checking one bundle."""

    bundle: str
    manifest: dict[str, Any]
    mismatched: list[Mismatch] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    sums_mismatched: list[str] = field(default_factory=list)
    sidecar: str = "absent"
    # Why the sidecar is "invalid"; empty otherwise.
    sidecar_problem: str = ""
    files: int = 0
    bytes: int = 0
    sha256: str = ""  # of the whole bundle file
    # sha256 of each member as read, by path
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.mismatched
            or self.missing
            or self.extra
            or self.sums_mismatched
            or self.sidecar in ("mismatch", "invalid")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "goldmaster.verify/v1",
            "bundle": self.bundle,
            "ok": self.ok,
            "name": self.manifest.get("name"),
            "version": self.manifest.get("version"),
            "files": self.files,
            "bytes": self.bytes,
            "mismatched": [vars(m) for m in self.mismatched],
            "missing": self.missing,
            "extra": self.extra,
            "sha256sums_mismatched": self.sums_mismatched,
            "sidecar": self.sidecar,
            "sidecar_problem": self.sidecar_problem or None,
        }


# A sink receives one member's data in chunks; ``None`` means "only hash it".
SinkFactory = Callable[[Member, dict[str, Any]], "Sink | None"]


class Sink:
    """Receives a member's data; restore writes it to disk."""

    def write(self, view: memoryview) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the member after its data has arrived, before its digest is
        compared; also called when reading the data failed."""

    def link(self, member: Member, target: str) -> None:
        """Record ``member`` as another name for the earlier member ``target``."""


class BundleWalk:
    """One pass over a bundle: validates every member, hashes every byte and
    hands data to an optional sink.

    ``strict`` turns every finding into an exception at the member that caused
    it, before any of its data reaches the sink; restore uses it. A finding
    that ``verify`` reports (a size, sha256, SHA256SUMS or sidecar mismatch, a
    missing or unlisted member) raises VerificationError (exit status 1), the
    same status that ``verify`` exits with. Unsafe members and unreadable
    streams raise BundleFormatError or UnsafeMemberError (exit status 2).
    """

    def __init__(self, path: Path, strict: bool, sinks: SinkFactory | None = None) -> None:
        self.path = path
        self.strict = strict
        self.sinks = sinks
        self.report = VerifyReport(bundle=str(path), manifest={})
        self._digests: dict[str, str] = {}
        self._kinds: dict[str, str] = {}
        self._folders: set[str] = set()
        self._sums: dict[str, str] | None = None
        self.raw: dict[str, bytes] = {}  # manifest.yaml and SHA256SUMS as read
        # For members stored with a codec, by member path: the path and the
        # sha256 of the file that decoding gives.
        self._decoded: dict[str, tuple[str, str]] = {}

    def run(self, progress: Callable[[int], None] | None = None) -> VerifyReport:
        with BundleReader(self.path, hash_file=True) as reader:
            manifest = self.read_head(reader)
            expected = {_member_path(entry): entry for entry in manifest["files"]}
            total = sum(e["size"] for e in manifest["files"])
            reader.allow(total + HEADER_ALLOWANCE * (len(expected) + 8) + 2 * MAX_MANIFEST_BYTES)
            for member in reader.tar:
                self._member(reader, member, expected, progress)
            file_digest = reader.file_digest()
        self.report.sha256 = file_digest
        self.report.digests = dict(self._digests)
        self.report.digests.update(dict(self._decoded.values()))
        self._finish(expected)
        self._check_sidecar(file_digest)
        return self.report

    def read_head(self, reader: BundleReader) -> dict[str, Any]:
        try:
            first = next(reader.tar)
        except StopIteration:
            raise BundleFormatError(f"{self.path} is an empty archive") from None
        if first.path != "manifest.yaml" or first.kind != "file":
            raise BundleFormatError(
                f"not a goldmaster bundle: the first member is {first.path!r}, not manifest.yaml"
            )
        if first.size > MAX_MANIFEST_BYTES:
            raise BundleFormatError(f"manifest.yaml of {first.size} bytes is too large")
        raw = reader.tar.read_all()
        manifest = manifest_mod.load(raw)
        self.raw["manifest.yaml"] = raw
        top = manifest_mod.top_folder(str(manifest.get("name")), str(manifest.get("version")))
        if reader.tar.top != top:
            raise BundleFormatError(
                f"top folder {reader.tar.top!r} does not match the manifest's {top!r}"
            )
        self._digests["manifest.yaml"] = hashlib.sha256(raw).hexdigest()
        self._kinds["manifest.yaml"] = "file"
        self.report.manifest = manifest
        return manifest

    def _check_tree(self, member: Member) -> None:
        """Reject a member that lies under an earlier file or link, or a file
        or link whose path earlier members used as a folder: tar cannot
        extract either, and a restore must not write through a link."""
        parts = member.path.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            if self._kinds.get(ancestor, "dir") != "dir":
                raise UnsafeMemberError(
                    f"member {member.path!r} lies under {ancestor!r}, which is not a folder",
                    "do not restore this bundle",
                )
            self._folders.add(ancestor)
        if member.kind != "dir" and member.path in self._folders:
            raise UnsafeMemberError(
                f"member {member.path!r} is a {member.kind}, "
                "but earlier members use it as a folder",
                "do not restore this bundle",
            )

    def _fail(self, message: str) -> None:
        if self.strict:
            raise VerificationError(
                message,
                f"do not restore this bundle; run `goldmaster verify {self.path}` "
                "for a full report",
            )

    def _member(
        self,
        reader: BundleReader,
        member: Member,
        expected: dict[str, dict[str, Any]],
        progress: Callable[[int], None] | None,
    ) -> None:
        if member.path in self._kinds:
            raise UnsafeMemberError(f"duplicate member {member.path!r}", "do not restore this bundle")
        self._check_tree(member)
        self._kinds[member.path] = member.kind
        if member.kind == "dir":
            return
        if member.path == "SHA256SUMS" and member.kind == "file":
            if member.size > MAX_MANIFEST_BYTES:
                raise BundleFormatError(f"SHA256SUMS of {member.size} bytes is too large")
            raw = reader.tar.read_all()
            self._sums = manifest_mod.parse_sha256sums(raw)
            self.raw["SHA256SUMS"] = raw
            self._digests["SHA256SUMS"] = hashlib.sha256(raw).hexdigest()
            return
        entry = expected.get(member.path)
        if entry is None:
            self.report.extra.append(member.path)
            self._fail(f"member {member.path!r} is not listed in the manifest")
            return
        if member.kind == "link":
            self._link(member, entry)
            return
        if member.size != entry["size"]:
            self.report.mismatched.append(
                Mismatch(member.path, f"{entry['size']} bytes", f"{member.size} bytes")
            )
            self._fail(f"member {member.path!r} is {member.size} bytes, the manifest says {entry['size']}")
            return
        self._file(reader, member, entry, progress)

    def _file(
        self,
        reader: BundleReader,
        member: Member,
        entry: dict[str, Any],
        progress: Callable[[int], None] | None,
    ) -> None:
        codec = _codec(entry)
        if codec is not None:
            self._decoded_file(reader, member, entry, codec, progress)
            return
        digest = hashlib.sha256()
        sink = self.sinks(member, entry) if self.sinks else None

        def consume(view: memoryview) -> None:
            digest.update(view)
            if sink is not None:
                sink.write(view)
            if progress is not None:
                progress(len(view))

        try:
            reader.tar.read_data(consume)
        finally:
            if sink is not None:
                sink.close()
        self._record(member, entry["sha256"], digest.hexdigest())

    def _record(self, member: Member, expected: str, actual: str) -> None:
        self._digests[member.path] = actual
        self.report.files += 1
        self.report.bytes += member.size
        if actual != expected:
            self.report.mismatched.append(Mismatch(member.path, expected, actual))
            self._fail(f"member {member.path!r} does not match its sha256 in the manifest")

    def _decoded_member(self, member: Member) -> Member:
        """Return the file that decoding ``member`` gives, after checking that
        its path is safe and not used by another member."""
        path = member.path[: -len(SUFFIX)]
        try:
            safe_relpath(f"top/{path}", "top")
        except UnsafeMemberError as exc:
            raise UnsafeMemberError(
                f"member {member.path!r} decodes to the unsafe path {path!r}",
                "do not restore this bundle",
            ) from exc
        decoded = Member(path, "file", member.size, None, member.mode)
        if path in self._kinds:
            raise UnsafeMemberError(f"duplicate member {path!r}", "do not restore this bundle")
        self._check_tree(decoded)
        # Not "file": a hard link may point only to a member as stored.
        self._kinds[path] = "decoded"
        return decoded

    def _decoded_file(
        self,
        reader: BundleReader,
        member: Member,
        entry: dict[str, Any],
        codec: ByteGroup,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Check a member stored with a codec: its stored bytes against the
        stored digest, and the decoded bytes, which the sink receives, against
        the file's digest."""
        decoded = self._decoded_member(member)
        stored = hashlib.sha256()
        digest = hashlib.sha256()
        transform = Transform(codec, decode=True)
        sink = self.sinks(decoded, entry) if self.sinks else None

        def emit(piece: bytes | bytearray) -> None:
            digest.update(piece)
            if sink is not None:
                sink.write(memoryview(piece))

        def consume(view: memoryview) -> None:
            stored.update(view)
            for piece in transform.feed(view):
                emit(piece)
            if progress is not None:
                progress(len(view))

        try:
            reader.tar.read_data(consume)
            emit(transform.finish())
        finally:
            if sink is not None:
                sink.close()
        self._record(member, entry["stored"]["sha256"], stored.hexdigest())
        self._check_decoded(member, decoded.path, entry["sha256"], digest.hexdigest())

    def _check_decoded(self, member: Member, path: str, expected: str, actual: str) -> None:
        self._decoded[member.path] = (path, actual)
        if actual != expected:
            self.report.mismatched.append(Mismatch(path, expected, actual))
            self._fail(f"file {path!r} decoded from {member.path!r} does not match its sha256")

    def _link(self, member: Member, entry: dict[str, Any]) -> None:
        target = member.link or ""
        if self._kinds.get(target) != "file" or target in SPECIAL:
            raise UnsafeMemberError(
                f"hard link {member.path!r} points to {target!r}, which is not an earlier file",
                "do not restore this bundle",
            )
        codec = _codec(entry)
        if (codec is not None) != (target in self._decoded):
            raise UnsafeMemberError(
                f"hard link {member.path!r} and its target {target!r} are not both "
                "stored with the codec",
                "do not restore this bundle",
            )
        actual = self._digests.get(target, "")
        self._digests[member.path] = actual
        self.report.files += 1
        expected = entry["stored"]["sha256"] if codec is not None else entry["sha256"]
        if actual != expected:
            self.report.mismatched.append(Mismatch(member.path, expected, actual))
            self._fail(f"member {member.path!r} does not match its sha256 in the manifest")
        if codec is not None:
            decoded = self._decoded_member(member)
            target, decoded_digest = self._decoded[target]
            self._check_decoded(member, decoded.path, entry["sha256"], decoded_digest)
            member = Member(decoded.path, "link", 0, target, member.mode)
        if self.sinks is not None:
            sink = self.sinks(member, entry)
            if sink is not None:
                sink.link(member, target)

    def _finish(self, expected: dict[str, dict[str, Any]]) -> None:
        # A member whose size differs is already in ``mismatched``; it is
        # present, so it is not listed as missing too.
        mismatched = {item.path for item in self.report.mismatched}
        self.report.missing = sorted(
            p for p in expected if p not in self._digests and p not in mismatched
        )
        if self.report.missing:
            self._fail(f"{len(self.report.missing)} files listed in the manifest are missing, "
                       f"first {self.report.missing[0]!r}")
        if self._sums is None:
            self.report.sums_mismatched.append("SHA256SUMS")
            self._fail("the bundle has no SHA256SUMS member")
            return
        covered = set(self._digests) - {"SHA256SUMS"}
        for path in sorted(covered | set(self._sums)):
            if self._sums.get(path) != self._digests.get(path):
                self.report.sums_mismatched.append(path)
        if self.report.sums_mismatched:
            self._fail(f"SHA256SUMS disagrees on {self.report.sums_mismatched[0]!r}")

    def _check_sidecar(self, file_digest: str) -> None:
        """Compare the bundle file with its ``.sha256`` sidecar. An absent
        sidecar is fine, but one that exists and cannot be read or contains no
        sha256 is a finding, because it can no longer vouch for the file."""
        sidecar = self.path.with_name(self.path.name + ".sha256")
        if not sidecar.exists():
            return
        problem = _sidecar_problem(sidecar)
        if problem:
            self.report.sidecar = "invalid"
            self.report.sidecar_problem = problem
            self._fail(f"{sidecar} is invalid: {problem}")
            return
        words = sidecar.read_text(encoding="utf-8").split()
        self.report.sidecar = "match" if words[0] == file_digest else "mismatch"
        if self.report.sidecar == "mismatch":
            self._fail(f"{sidecar.name} does not match the bundle file")


def _sidecar_problem(sidecar: Path) -> str:
    """Return why ``sidecar`` contains no usable sha256, or "" when it does."""
    try:
        words = sidecar.read_text(encoding="utf-8").split()
    except IsADirectoryError:
        return "it is a folder, not a file"
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    except UnicodeDecodeError:
        return "it is not UTF-8 text"
    if not words:
        return "it is empty"
    if not _is_sha256_hex(words[0]):
        return f"it starts with {words[0][:20]!r}, not a sha256 of 64 hex digits"
    return ""


def _is_sha256_hex(word: str) -> bool:
    return len(word) == 64 and all(c in "0123456789abcdef" for c in word)


def _member_path(entry: dict[str, Any]) -> str:
    """Return the name of the tar member that contains a manifest entry's file."""
    stored = entry.get("stored")
    if stored is None:
        return str(entry["path"])
    if not isinstance(stored, dict) or stored.get("path") != f"{entry['path']}{SUFFIX}":
        raise BundleFormatError(
            f"manifest entry {entry['path']!r} has an invalid stored form: "
            f"its path must be the file's path plus {SUFFIX!r}"
        )
    sha = stored.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise BundleFormatError(f"manifest entry {entry['path']!r} has an invalid stored sha256")
    ByteGroup.from_manifest(stored, entry["size"])
    return str(stored["path"])


def _codec(entry: dict[str, Any]) -> ByteGroup | None:
    stored = entry.get("stored")
    return None if stored is None else ByteGroup.from_manifest(stored, entry["size"])


def verify(path: Path, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Re-hash every member of a bundle and compare with the manifest,
    SHA256SUMS and the sidecar checksum file."""
    return BundleWalk(path, strict=False).run(progress)


def read_manifest(path: Path) -> dict[str, Any]:
    """Return the manifest of a bundle, decompressing only its first frame."""
    with BundleReader(path, head_only=True) as reader:
        return BundleWalk(path, strict=False).read_head(reader)

