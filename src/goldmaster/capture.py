"""Capture: write a golden-master bundle of a model, its code and its context."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from . import __version__, manifest
from . import codec as codec_mod
from .archive import (
    SKIPPABLE_HEADER,
    BundleWriter,
    WrittenFile,
    _HeadTooLarge,
    compress_head,
    rewrite_with_head,
    safe_relpath,
)
from .checks import checks_section
from .codebase import snapshot_code
from .codec import ByteGroup
from .environment import capture_environment
from .errors import InputError, OutputError, UnsafeMemberError, UsageError
from .fsutil import (
    deferred_signals,
    fsync_dir,
    make_folders,
    remove_empty_folders,
    temporary_path,
    write_synced,
)
from .gpu import probe_system
from .image import image_section
from .model import SourceFile, scan_model
from .ociref import check_image_reference
from .parts import Part, Section
from .progress import Reporter
from .redact import redact_url, redact_value
from .secrets import check_capture

# Room left in the reserved manifest frame for what is only known after the
# body is written (the image section and its files).
HEAD_SLACK = 8 << 10
FREE_SPACE_MARGIN = 64 << 20

# Member groups in bundle order, each compressed at the weights level or the
# text level.
GROUPS = ["code", "git", "env", "system", "checks", "weights", "image"]
BULK_PREFIXES = ("weights/", "image/", "env/wheels/")
# Default levels for code and text: hard up to this many bytes of it, and
# level 3 above (see text_level_for).
TEXT_BYTES_HARD = 16 << 20
TEXT_LEVEL_HARD = 9
TEXT_LEVEL_LARGE = 3


@dataclass
class CaptureOptions:
    """Options of ``goldmaster capture``."""

    model: Path
    output: Path
    name: str | None = None
    version: str | None = None
    code: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    params_file: Path | None = None
    metrics_file: Path | None = None
    datasets: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    level: int = 1
    text_level: int | None = None  # None: chosen by the size of the text
    # "zstd", or "bytegroup" to group the bytes of float tensors in safetensors
    # weights before compressing them (see goldmaster.codec).
    codec: str = "zstd"
    threads: int = 0
    force: bool = False
    env: bool = True
    # The training interpreter: its environment is captured and its CUDA
    # libraries recorded. None uses the active environment for the former
    # and goldmaster's own interpreter for the latter.
    python: Path | None = None
    wheels: bool = False
    strict: bool = False
    image: bool | None = None
    """Build the image: None when an engine is reachable, True or fail, False never."""
    base_image: str | None = None
    image_weights: bool = True
    tags: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    check_outputs: list[str] = field(default_factory=list)
    check_rtol: float | None = None
    check_atol: float | None = None
    check_timeout: float | None = None


@dataclass
class CaptureResult:
    """Outcome of a capture: the bundle path, its digest and its manifest."""

    bundle: Path
    sidecar: Path
    sha256: str
    size: int
    manifest: dict[str, Any]
    input_bytes: int  # archived content, each stored file once, without README and sums
    notices: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "goldmaster.capture/v1",
            "bundle": str(self.bundle),
            "sidecar": str(self.sidecar),
            "sha256": self.sha256,
            "size": self.size,
            "name": self.manifest["name"],
            "version": self.manifest["version"],
            "created": self.manifest["created"],
            "files": len(self.manifest["files"]),
            "input_bytes": self.input_bytes,
            "notices": self.notices,
        }


@dataclass
class _Entry:
    """One body member: from a file, from memory, or a link to another member."""

    arcname: str
    source: Path | None = None
    data: bytes | None = None
    link: str | None = None
    size: int = 0
    codec: ByteGroup | None = None


def _early_sections(
    options: CaptureOptions, data: dict[str, Any], workdir: Path, system: Section
) -> list[Section]:
    """Run the probes whose results are known before the body is written,
    after the ``system`` section that the caller probed.

    ``workdir`` keeps files that probes make, such as vendored wheels, until
    the bundle is written.
    """
    sections = [system]
    if options.env:
        sections.append(
            capture_environment(
                options.python,
                _code_root(options, data["code"]),
                wheels=options.wheels,
                strict=options.strict,
                workdir=workdir / "env",
            )
        )
    checks = checks_section(options)
    if checks is not None:
        sections.append(checks)
    return sections


def _code_root(options: CaptureOptions, code_info: dict[str, Any]) -> Path:
    """Return the folder that the bundle's code/ mirrors: the repository root
    when the code is in git, else the code folder."""
    folder = (options.code if options.code is not None else Path.cwd()).resolve()
    for _ in Path(code_info.get("subdir") or "").parts:
        folder = folder.parent
    return folder


def _late_sections(
    options: CaptureOptions, data: dict[str, Any], entries: list[_Entry], workdir: Path
) -> list[Section]:
    """Run the probes that need the hashed manifest so far, such as the image
    build, which labels the image with the manifest's digest."""
    image = image_section(
        data,
        _image_context(entries),
        workdir,
        base_image=options.base_image,
        weights=options.image_weights,
        tags=options.tags,
        build=options.image is not False,
        required=options.image is True,
    )
    return [image]


def _image_context(entries: list[_Entry]) -> list[Part]:
    """Turn the body's entries into the image build's context, links resolved."""
    by_name = {entry.arcname: entry for entry in entries}
    parts = []
    for entry in entries:
        target = by_name[entry.link] if entry.link is not None else entry
        if target.source is not None:
            parts.append(Part(entry.arcname, source=target.source))
        elif target.data is not None:
            parts.append(Part(entry.arcname, data=target.data))
    return parts


def source_date_epoch() -> int:
    """Return SOURCE_DATE_EPOCH when set (for reproducible bundles), else now."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return int(time.time())
    try:
        epoch = int(value)
    except ValueError as exc:
        raise UsageError(
            f"invalid SOURCE_DATE_EPOCH {value!r}", "set it to a number of seconds since 1970"
        ) from exc
    if epoch < 0:
        raise UsageError(f"invalid SOURCE_DATE_EPOCH {value!r}", "use a non-negative number")
    return epoch


def capture(options: CaptureOptions, reporter: Reporter | None = None) -> CaptureResult:
    """Write ``OUTPUT/NAME-VERSION.gm.tar.zst`` and its ``.sha256`` sidecar."""
    reporter = reporter or Reporter()
    created = _check_options(options)
    try:
        with _work_folder(options.output) as work:
            return _capture_with(options, reporter, Path(work))
    except BaseException:
        # A failed capture leaves no output folder behind that it created.
        if created is not None:
            remove_empty_folders(options.output, created)
        raise


def _work_folder(output: Path) -> tempfile.TemporaryDirectory[str]:
    """Create the work folder inside ``output``, so that large vendored wheels
    stay on the bundle's file system. It is removed whether or not the capture
    succeeds."""
    try:
        return tempfile.TemporaryDirectory(prefix=".goldmaster-work-", dir=output)
    except OSError as exc:
        raise OutputError(
            f"cannot write to output folder {output}: {exc.strerror or exc}",
            "pass an --output folder that you can write to",
        ) from exc


def _capture_with(options: CaptureOptions, reporter: Reporter, workdir: Path) -> CaptureResult:
    created = source_date_epoch()

    # The system probes wait on child processes most of the time, so they
    # run while this thread walks the model and the code.
    with ThreadPoolExecutor(1, thread_name_prefix="system-probe") as pool:
        system = pool.submit(probe_system, options.python)
        reporter.step("scanning the model")
        model = scan_model(options.model, options.excludes)
        code_folder = options.code if options.code is not None else Path.cwd()
        reporter.step("reading the code and its git state")
        skip = [options.model, options.output]
        code = snapshot_code(code_folder, options.excludes, options.includes, skip)
        system_section = system.result()

    name = _bundle_name(options)
    version = manifest.check_name(
        _default_version(code.info, created) if options.version is None else options.version,
        "version",
    )
    top = manifest.top_folder(name, version)
    data = _base_manifest(options, name, version, created, model.info, code.info)
    notices = model.notices + code.notices

    entries = _entries(model.files, model.links, code.files, code.extra)
    if options.env:
        reporter.step("capturing the Python environment")
    for section in _early_sections(options, data, workdir, system_section):
        _add_section(data, entries, notices, section)
    _check_member_names(entries)
    check_capture(data, entries)
    if options.text_level is None:
        options = replace(options, text_level=text_level_for(entries))
    if options.codec == codec_mod.NAME:
        _choose_codecs(entries, options)

    final = options.output / f"{top}{manifest.SUFFIX}"
    _check_target(final, options.force)
    _check_free_space(options.output, sum(e.size for e in entries if e.link is None))
    reserve = _reserve_for(data, entries, top)

    reporter.step(f"writing {final.name}")
    sidecar = final.with_name(final.name + ".sha256")
    try:
        with temporary_path(final) as tmp, temporary_path(sidecar) as sidecar_tmp:
            body = _write(tmp, top, created, options, data, entries, reserve, reporter, notices)
            written, data, digest, size = body.files, body.manifest, body.sha256, body.size
            if body.frame is not None:
                _move_body_after(tmp, body.frame, reserve)
                digest, size = _file_digest(tmp)
            write_synced(sidecar_tmp, f"{digest}  {final.name}\n".encode())
            # An interrupt between the two renames would pair the new bundle
            # with the old sidecar, so both happen before a signal is handled.
            with deferred_signals():
                os.replace(tmp, final)
                os.replace(sidecar_tmp, sidecar)
    except OSError as exc:
        raise _output_error(final, exc) from exc
    fsync_dir(final.parent)
    for notice in notices:
        reporter.notice(notice)
    return CaptureResult(
        bundle=final,
        sidecar=sidecar,
        sha256=digest,
        size=size,
        manifest=data,
        input_bytes=_archived_bytes(written),
        notices=notices,
    )


def _archived_bytes(written: list[WrittenFile]) -> int:
    generated = ("README.txt", "SHA256SUMS")
    return sum(w.size for w in written if w.link is None and w.arcname not in generated)


def _check_options(options: CaptureOptions) -> Path | None:
    """Raise on an invalid option, then create the output folder. Return the
    topmost folder that was created, or None when the output folder existed."""
    if not 1 <= options.level <= 22:
        raise UsageError(f"invalid --level {options.level}", "use a zstd level from 1 to 22")
    if options.text_level is not None and not 1 <= options.text_level <= 22:
        raise UsageError(f"invalid text level {options.text_level}", "use a zstd level from 1 to 22")
    if options.threads < 0:
        raise UsageError(f"invalid --threads {options.threads}", "use 0 for all cores, or a count")
    _bundle_name(options)
    for tag in options.tags:
        check_image_reference(tag, "--tag")
    if options.base_image is not None:
        check_image_reference(options.base_image, "--base-image")
    if options.codec not in ("zstd", codec_mod.NAME):
        raise UsageError(f"invalid --codec {options.codec!r}", f"use zstd or {codec_mod.NAME}")
    if options.output.exists() and not options.output.is_dir():
        raise InputError(f"output path is not a folder: {options.output}")
    try:
        return make_folders(options.output)
    except OSError as exc:
        raise InputError(
            f"cannot create output folder {options.output}: {exc.strerror}",
            "pass an --output folder that can be created",
        ) from exc


def _bundle_name(options: CaptureOptions) -> str:
    if options.name is not None:
        return manifest.check_name(options.name, "name")
    name = _default_name(options.model)
    try:
        return manifest.check_name(name, "name")
    except UsageError as exc:
        raise UsageError(
            f"invalid name {name!r}, made from the model path {options.model.name!r}",
            "pass --name with at most 128 letters, digits, '.', '_', '+' or '-'",
        ) from exc


def _default_name(model: Path) -> str:
    """Make a bundle name from the model's file or folder name: accents are
    dropped (modèl becomes model) and other characters become '-'."""
    stem = model.name if model.is_dir() else model.stem
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    cleaned = "".join(c if c.isalnum() or c in "._+-" else "-" for c in ascii_stem)
    return cleaned.strip(".-_+") or "model"


def _default_version(code_info: dict[str, Any], created: int) -> str:
    git = code_info.get("git")
    if git and git.get("commit"):
        return "g" + git["commit"][:12] + ("-dirty" if git["dirty"] else "")
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created))


def _base_manifest(
    options: CaptureOptions,
    name: str,
    version: str,
    created: int,
    model_info: dict[str, Any],
    code_info: dict[str, Any],
) -> dict[str, Any]:
    params = dict(_read_mapping(options.params_file, "--params-file"))
    params.update(options.params)
    return {
        "schema": manifest.SCHEMA,
        "goldmaster": __version__,
        "name": name,
        "version": version,
        "created": manifest.timestamp(created),
        "model": model_info,
        "code": code_info,
        "params": redact_value(dict(sorted(params.items()))),
        "metrics": dict(sorted(_read_mapping(options.metrics_file, "--metrics-file").items())),
        "datasets": [redact_url(uri) for uri in options.datasets],
    }


def _read_mapping(path: Path | None, option: str) -> dict[str, Any]:
    """Read a JSON or YAML file that contains one mapping of names to values."""
    if path is None:
        return {}
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{option} file not found: {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {option} file {path}: {exc.strerror}") from exc
    try:
        value = _load_json_or_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{option} file {path} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError(
            f"{option} file {path} is not valid JSON or YAML: {manifest.yaml_problem(exc)}",
            "fix the file at that line and column",
        ) from exc
    if not isinstance(value, dict):
        raise InputError(
            f"{option} file {path} must hold a mapping of names to values",
            'for example {"lr": 0.001, "epochs": 3}',
        )
    return {str(k): _plain(v) for k, v in value.items()}


def _load_json_or_yaml(text: str) -> Any:
    """Parse ``text`` as JSON when it is JSON, else as YAML.

    PyYAML follows YAML 1.1, which reads a JSON number such as 1e-4 as a
    string, so JSON goes first.
    """
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return yaml.safe_load(text)


def _plain(value: Any) -> Any:
    """Turn YAML-only types such as dates into JSON-compatible values."""
    return json.loads(json.dumps(value, default=str))


def _entries(
    model_files: list[SourceFile],
    model_links: dict[str, str],
    code_files: list[SourceFile],
    code_extra: dict[str, bytes],
) -> list[_Entry]:
    entries = [_Entry(f.arcname, source=f.path, size=f.size) for f in model_files + code_files]
    sizes = {f.arcname: f.size for f in model_files}
    entries += [_Entry(a, link=t, size=sizes[t]) for a, t in model_links.items()]
    entries += [_Entry(a, data=d, size=len(d)) for a, d in code_extra.items()]
    return entries


def _add_section(
    data: dict[str, Any], entries: list[_Entry], notices: list[str], section: Section
) -> None:
    if section.name in data:
        raise ValueError(f"two probes wrote the manifest section {section.name!r}")
    data[section.name] = section.data
    entries.extend(_part_entry(part) for part in section.parts)
    notices.extend(section.notices)


def _part_entry(part: Part) -> _Entry:
    if part.data is not None:
        return _Entry(part.arcname, data=part.data, size=len(part.data))
    assert part.source is not None
    return _Entry(part.arcname, source=part.source, size=part.source.stat().st_size)


def _choose_codecs(entries: list[_Entry], options: CaptureOptions) -> None:
    """Set the bytegroup codec on the safetensors weights where it pays."""
    names = {entry.arcname for entry in entries}
    for entry in entries:
        if (
            entry.source is None
            or not entry.arcname.startswith("weights/")
            or not entry.arcname.endswith(".safetensors")
            or codec_mod.stored_name(entry.arcname) in names
        ):
            continue
        entry.codec = codec_mod.plan(entry.source, entry.size, _level(entry.arcname, options))


# Names that need no closer look: printable ASCII without backslashes, and
# no empty, "." or ".." component.
_PLAIN_NAME = re.compile(r"(?!.*(?:^|/)\.{0,2}(?:/|$))[\x20-\x5b\x5d-\x7e]+")


def _check_member_names(entries: list[_Entry]) -> None:
    """Reject, before anything is written, file names that SHA256SUMS cannot
    hold or that verify and restore would reject as unsafe."""
    hint = "rename the file or leave it out with --exclude"
    for entry in entries:
        if _PLAIN_NAME.fullmatch(entry.arcname):
            continue
        try:
            entry.arcname.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"file name is not valid UTF-8: {entry.arcname!r}", hint) from None
        try:
            safe_relpath(f"top/{entry.arcname}", "top")
        except UnsafeMemberError:
            raise InputError(
                f"file name cannot be stored in a bundle: {entry.arcname!r} "
                "(backslashes and control characters such as newlines are not allowed)",
                hint,
            ) from None


def _order(arcname: str) -> tuple[int, str]:
    group = arcname.split("/", 1)[0]
    rank = GROUPS.index(group) if group in GROUPS else len(GROUPS)
    return rank, arcname


def text_level_for(entries: list[_Entry]) -> int:
    """Choose the zstd level for code and text from how much of it there is.

    Up to TEXT_BYTES_HARD bytes, code and text compress at TEXT_LEVEL_HARD.
    Above that, levels past 3 cost several times the time of level 3 for a
    few percent of size, so a large tree compresses at level 3, as
    ``zstd -3`` would. The choice depends on the input alone, so the same
    input still gives the same bundle.
    """
    text = sum(
        e.size
        for e in entries
        if e.link is None and not e.arcname.startswith(BULK_PREFIXES)
    )
    return TEXT_LEVEL_HARD if text <= TEXT_BYTES_HARD else TEXT_LEVEL_LARGE


def _level(arcname: str, options: CaptureOptions) -> int:
    if arcname.startswith(BULK_PREFIXES):
        return options.level
    assert options.text_level is not None
    return options.text_level


def _check_target(final: Path, force: bool) -> None:
    if final.exists() and not force:
        raise InputError(
            f"bundle already exists: {final}",
            "pass --force to replace it, or choose another --version",
        )


def _check_free_space(folder: Path, needed: int) -> None:
    """Fail before writing when the output file system cannot hold the bundle.

    Compression usually shrinks the input, but weights shrink little, so the
    whole input size is asked for.
    """
    free = shutil.disk_usage(folder).free
    if free < needed + FREE_SPACE_MARGIN:
        raise InputError(
            f"not enough free space in {folder}: {_mb(free)} free, "
            f"up to {_mb(needed + FREE_SPACE_MARGIN)} needed",
            "free some space or write the bundle elsewhere with --output",
        )


def _output_error(final: Path, exc: OSError) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(
            f"no space left in {final.parent} while writing {final.name}; "
            "nothing was written and an earlier bundle of that name is unchanged",
            "free some space or write the bundle elsewhere with --output",
        )
    return OutputError(f"cannot write {final}: {exc.strerror or exc}")


def _mb(count: int) -> str:
    return f"{count / 1e6:,.0f} MB"


def _reserve_for(data: dict[str, Any], entries: list[_Entry], top: str) -> int:
    """Size the space at the start of the file for the manifest frame.

    The manifest is compressed with stand-in digests, which compress like the
    real ones; the margin covers the image section added after the body. A
    manifest that still outgrows the space costs one copy of the body.
    """
    codecs = {e.arcname: e.codec for e in entries if e.codec is not None}
    placeholder = []
    for e in entries + [_Entry("README.txt", size=4096)]:
        stand_in = hashlib.sha256(e.arcname.encode()).hexdigest()
        item: dict[str, Any] = {"path": e.arcname, "size": e.size, "sha256": stand_in}
        codec = codecs.get(e.link or e.arcname)
        if codec is not None:
            stored = codec_mod.stored_name(e.arcname)
            item["stored"] = {"path": stored, "sha256": stand_in, **codec.to_manifest()}
        placeholder.append(item)
    template = dict(data, files=sorted(placeholder, key=lambda f: f["path"]))
    frame = len(compress_head(top, manifest.dump(template)))
    return frame + frame // 16 + HEAD_SLACK + SKIPPABLE_HEADER


@dataclass
class _Body:
    """Result of ``_write``: the files, the final manifest, and the sha256 and
    size of the bundle file.

    When the manifest frame outgrew its reserve, ``frame`` is that frame and
    the digest stays empty until the body is moved behind it.
    """

    files: list[WrittenFile]
    manifest: dict[str, Any]
    frame: bytes | None
    sha256: str = ""
    size: int = 0


def _write(
    tmp: Path,
    top: str,
    created: int,
    options: CaptureOptions,
    data: dict[str, Any],
    entries: list[_Entry],
    reserve: int,
    reporter: Reporter,
    notices: list[str],
) -> _Body:
    """Write the bundle into ``tmp`` and flush it to disk."""
    threads = options.threads or os.cpu_count() or 1
    with open(tmp, "wb") as fh:
        writer = BundleWriter(fh, top, created, threads, reserve, reporter.advance)
        try:
            body = _write_members(writer, tmp, options, data, entries, reporter, notices)
        except BaseException:
            writer.abort()
            raise
        fh.flush()
        if body.frame is None:
            body.sha256, body.size = _sync_and_digest(fh, tmp)
    return body


def _write_members(
    writer: BundleWriter,
    tmp: Path,
    options: CaptureOptions,
    data: dict[str, Any],
    entries: list[_Entry],
    reporter: Reporter,
    notices: list[str],
) -> _Body:
    reporter.start(sum(e.size for e in entries if e.source is not None), "hashing and compressing")
    _write_entries(writer, sorted(entries, key=lambda e: _order(e.arcname)), options)
    reporter.finish()
    late_entries: list[_Entry] = []
    if options.image is not False:
        reporter.step("building the container image")
    with tempfile.TemporaryDirectory(prefix=".goldmaster-image-", dir=tmp.parent) as work:
        hashed = _with_files(data, writer.files)
        for section in _late_sections(options, hashed, entries, Path(work)):
            late: list[_Entry] = []
            _add_section(data, late, notices, section)
            _write_entries(writer, sorted(late, key=lambda e: _order(e.arcname)), options)
            late_entries += late
    readme = manifest.readme(_with_files(data, writer.files))
    readme_entry = WrittenFile("README.txt", len(readme), hashlib.sha256(readme).hexdigest())
    final = _with_files(data, writer.files + [readme_entry])
    check_capture(final, late_entries + [_Entry("README.txt", data=readme)])
    text = manifest.dump(final)
    sums = manifest.sha256sums(
        [(w.stored_arcname, w.stored_sha256 or w.sha256) for w in writer.files + [readme_entry]]
        + [("manifest.yaml", hashlib.sha256(text).hexdigest())]
    )
    frame = None
    try:
        writer.close(
            [("README.txt", readme), ("SHA256SUMS", sums)], text, _level("README.txt", options)
        )
    except _HeadTooLarge as exc:
        frame = exc.frame
    return _Body(writer.files, final, frame)


def _write_entries(writer: BundleWriter, entries: list[_Entry], options: CaptureOptions) -> None:
    written: dict[str, WrittenFile] = {}
    for entry in entries:
        level = _level(entry.arcname, options)
        if entry.link is not None:
            written[entry.arcname] = writer.add_link(entry.arcname, written[entry.link], level)
        elif entry.source is not None:
            written[entry.arcname] = writer.add_file(
                entry.arcname, entry.source, level, codec=entry.codec
            )
        else:
            assert entry.data is not None
            written[entry.arcname] = writer.add_bytes(entry.arcname, entry.data, level)


def _with_files(data: dict[str, Any], files: list[WrittenFile]) -> dict[str, Any]:
    listing = []
    for item in sorted(files, key=lambda w: w.arcname):
        entry: dict[str, Any] = {"path": item.arcname, "size": item.size, "sha256": item.sha256}
        if item.link:
            entry["same_as"] = item.link
        if item.codec is not None:
            entry["stored"] = {
                "path": item.stored_arcname,
                "sha256": item.stored_sha256,
                **item.codec.to_manifest(),
            }
        listing.append(entry)
    return dict(data, files=listing)


def _move_body_after(tmp: Path, frame: bytes, reserve: int) -> None:
    """Rebuild ``tmp`` with ``frame`` in front of the body. Only a manifest that
    grew past the slack after the body was written needs this extra copy."""
    with temporary_path(tmp) as second:
        with open(second, "wb") as out:
            rewrite_with_head(tmp, frame, reserve, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(second, tmp)


def _sync_and_digest(fh: BinaryIO, path: Path) -> tuple[str, int]:
    """Flush ``fh`` to disk while hashing the file it wrote, and return the
    file's sha256 and size.

    The manifest frame at the start of the file is written last, so the
    whole-file digest needs one more read. That read comes from the page
    cache and costs CPU, while the fsync waits for the disk, so the two run
    side by side.
    """
    errors: list[OSError] = []

    def sync() -> None:
        try:
            os.fsync(fh.fileno())
        except OSError as exc:
            errors.append(exc)

    syncer = threading.Thread(target=sync, name="bundle-fsync", daemon=True)
    syncer.start()
    try:
        digest = _file_digest(path)
    finally:
        syncer.join()
    if errors:
        raise errors[0]
    return digest


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    buffer = bytearray(4 << 20)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while count := fh.readinto(buffer):
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size
