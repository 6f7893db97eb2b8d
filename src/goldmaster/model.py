"""Find the files of a model and read what their headers tell about it."""

from __future__ import annotations

import fnmatch
import functools
import json
import math
import os
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import InputError

# Largest safetensors header accepted; the format's reference reader caps it at 100 MB.
MAX_SAFETENSORS_HEADER = 100_000_000

FORMATS = {
    ".safetensors": "safetensors",
    ".bin": "pytorch",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".ckpt": "checkpoint",
    ".gguf": "gguf",
    ".ggml": "ggml",
    ".onnx": "onnx",
    ".h5": "keras",
    ".keras": "keras",
    ".msgpack": "flax",
    ".pb": "tensorflow",
    ".tflite": "tflite",
    ".pkl": "pickle",
    ".joblib": "joblib",
    ".npz": "numpy",
    ".npy": "numpy",
}

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class SourceFile:
    """A file to archive: where it is read from and its path in the bundle."""

    arcname: str
    path: Path
    size: int
    identity: tuple[int, int]  # (st_dev, st_ino) of the file read, after links


@dataclass
class ModelScan:
    """The files of a model and what was learned from their names and headers."""

    files: list[SourceFile]
    links: dict[str, str] = field(default_factory=dict)  # arcname -> target arcname
    info: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def matches(rel: str, patterns: list[str]) -> bool:
    """Tell whether a relative path or any of its folders matches a glob."""
    if not patterns:
        return False
    pattern = _glob_union(tuple(patterns))
    if _irregular(rel):
        return any(pattern.match(c) for c in _candidates(rel))
    folder, _, name = rel.rpartition("/")
    if pattern.match(rel) or (folder and pattern.match(name)):
        return True
    # Thousands of files share a few folders, so each folder is matched once.
    return bool(folder) and _folder_matches(folder, pattern)


@functools.lru_cache(maxsize=4096)
def _folder_matches(folder: str, pattern: re.Pattern[str]) -> bool:
    """Tell whether ``folder`` or a folder above it, as a path from the top,
    matches."""
    parts = folder.split("/")
    return any(pattern.match("/".join(parts[:i])) for i in range(len(parts), 0, -1))


def _irregular(rel: str) -> bool:
    return (
        rel in ("", ".")
        or rel.startswith(("/", "./"))
        or rel.endswith(("/", "/."))
        or ("//" in rel or "/./" in rel)
    )


def _candidates(rel: str) -> list[str]:
    """Return ``rel``, its name and each of its folders, as PurePosixPath
    names them; plain string splitting gives the same for normalised paths."""
    if _irregular(rel):
        path = PurePosixPath(rel)
        return [rel, path.name, *(str(p) for p in path.parents if str(p) != ".")]
    parts = rel.split("/")
    return [
        rel,
        parts[-1],
        *("/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)),
    ]


@functools.lru_cache(maxsize=256)
def _glob_union(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """Compile globs into one regular expression with fnmatchcase's semantics."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def scan_model(model: Path, excludes: list[str], prefix: str = "weights") -> ModelScan:
    """Walk a model file or folder. Symbolic links are followed to their content,
    and a second path to the same file becomes a link to the first."""
    if not os.path.lexists(model):
        raise InputError(
            f"model path not found: {model}", "pass a model file or folder"
        )
    if model.is_file():
        entries = [(model.name, model)]
    elif model.is_dir():
        entries = sorted(_walk(model, excludes))
    else:
        raise InputError(f"model path is neither a file nor a folder: {model}")
    if not entries:
        raise InputError(
            f"no files in model folder {model}", "check the path and --exclude"
        )

    scan = ModelScan(files=[])
    seen: dict[tuple[int, int], str] = {}
    for rel, path in entries:
        st = _stat_model_file(rel, path)
        arcname = f"{prefix}/{rel}"
        identity = (st.st_dev, st.st_ino)
        if identity in seen:
            scan.links[arcname] = seen[identity]
            continue
        seen[identity] = arcname
        scan.files.append(SourceFile(arcname, path, st.st_size, identity))
    scan.info = describe_model(model, scan, prefix)
    return scan


def _stat_model_file(rel: str, path: Path) -> os.stat_result:
    """Stat the file that ``path`` leads to, after symbolic links."""
    try:
        return path.stat()
    except OSError as exc:
        if path.is_symlink():
            raise InputError(
                f"dangling symbolic link in the model: {rel} -> {os.readlink(path)} "
                f"({exc.strerror})",
                "restore the file it points to or exclude it with --exclude",
            ) from exc
        raise InputError(
            f"cannot read model file {rel}: {exc.strerror}",
            "check that nothing removes model files while capturing",
        ) from exc


def _walk(root: Path, excludes: list[str]) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    visited: set[str] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        rel_folder = os.path.relpath(folder, root)
        rel_folder = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
        dirs[:] = sorted(d for d in dirs if not matches(rel_folder + d, excludes))
        for name in names:
            rel = rel_folder + name
            if not matches(rel, excludes):
                found.append((rel, Path(folder, name)))
    return found


def describe_model(model: Path, scan: ModelScan, prefix: str) -> dict[str, Any]:
    """Summarise formats, sizes and safetensors headers for the manifest."""
    by_format: Counter[str] = Counter()
    bytes_by_format: Counter[str] = Counter()
    tensors: list[dict[str, Any]] = []
    for item in scan.files:
        kind = FORMATS.get(Path(item.arcname).suffix.lower())
        if kind is None:
            continue
        by_format[kind] += 1
        bytes_by_format[kind] += item.size
        if kind == "safetensors":
            tensors.append(_safetensors_entry(item, scan.notices))
    info: dict[str, Any] = {
        "source_name": model.name,
        "kind": "file" if model.is_file() else "folder",
        "format": _main_format(model, bytes_by_format),
        "formats": dict(sorted(by_format.items())),
        "files": len(scan.files) + len(scan.links),
        "bytes": sum(f.size for f in scan.files),
    }
    if tensors:
        info["safetensors"] = tensors
        info["parameters"] = sum(t.get("parameters", 0) for t in tensors)
        dtypes: Counter[str] = Counter()
        for entry in tensors:
            dtypes.update(entry.get("dtypes", {}))
        info["dtypes"] = dict(sorted(dtypes.items()))
    hf_config = model / "config.json" if model.is_dir() else None
    if hf_config is not None and hf_config.is_file():
        info["huggingface"] = _hf_config(hf_config)
    return info


def _main_format(model: Path, bytes_by_format: Counter[str]) -> str:
    if not bytes_by_format:
        return "unknown"
    return bytes_by_format.most_common(1)[0][0]


def _safetensors_entry(item: SourceFile, notices: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": item.arcname}
    try:
        entry.update(read_safetensors_header(item.path))
    except ValueError as exc:
        entry["error"] = str(exc)
        notices.append(f"{item.arcname}: invalid safetensors header ({exc})")
    return entry


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """Return tensor count, parameter count and per-dtype tensor counts of a
    safetensors file, read from its JSON header only.

    Raises ValueError when the header is missing, malformed or points past
    the end of the file.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise ValueError("file shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_SAFETENSORS_HEADER or 8 + length > size:
            raise ValueError(f"header length {length} does not fit the file")
        raw = fh.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")  # noqa: TRY004
    return _summarise_tensors(header, size - 8 - length)


def _summarise_tensors(header: dict[str, Any], data_size: int) -> dict[str, Any]:
    dtypes: Counter[str] = Counter()
    parameters = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = str(tensor["dtype"])
            shape = [int(d) for d in tensor["shape"]]
            start, end = (int(o) for o in tensor["data_offsets"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"tensor {name!r} has an invalid entry") from exc
        if not 0 <= start <= end <= data_size:
            raise ValueError(f"tensor {name!r} points past the end of the file")
        count = math.prod(shape)
        width = DTYPE_BYTES.get(dtype)
        if width is not None and count * width != end - start:
            raise ValueError(f"tensor {name!r} size does not match its shape and dtype")
        dtypes[dtype] += 1
        parameters += count
    return {
        "tensors": sum(dtypes.values()),
        "parameters": parameters,
        "dtypes": dict(sorted(dtypes.items())),
    }


def _hf_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {"config": "unreadable"}
    if not isinstance(config, dict):
        return {"config": "not an object"}
    keys = ("model_type", "architectures", "torch_dtype", "transformers_version")
    return {key: config[key] for key in keys if key in config}
