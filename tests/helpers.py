"""Builders for real test inputs: safetensors files, git repositories, Hugging Face
cache layouts, and bundles taken apart and put back together."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from goldmaster.archive import SKIPPABLE_MAGIC
from goldmaster.capture import CaptureOptions, CaptureResult, capture

# numpy dtype and safetensors dtype name for each kind of tensor the builders
# write. BF16 has no numpy type, so its bits are written as uint16.
DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I8": np.int8,
}

WRITE_CHUNK = 16 << 20


def write_safetensors(
    path: Path,
    tensors: dict[str, tuple[str, tuple[int, ...]]],
    metadata: dict[str, str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a valid safetensors file, generating tensor data in chunks so that
    files of hundreds of MB never sit in memory, and return the facts that a
    header reader must find: tensor count, parameter count and dtype counts.
    """
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype]).itemsize
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)

    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for dtype, shape in tensors.values():
            _write_tensor_data(
                fh, rng, DTYPES[dtype], int(np.prod(shape, dtype=np.int64))
            )

    dtypes: dict[str, int] = {}
    for dtype, _ in tensors.values():
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
    return {
        "tensors": len(tensors),
        "parameters": sum(
            int(np.prod(shape, dtype=np.int64)) for _, shape in tensors.values()
        ),
        "dtypes": dict(sorted(dtypes.items())),
    }


def _write_tensor_data(
    fh: Any, rng: np.random.Generator, dtype: Any, count: int
) -> None:
    per_chunk = max(1, WRITE_CHUNK // np.dtype(dtype).itemsize)
    while count:
        n = min(per_chunk, count)
        if np.issubdtype(dtype, np.floating):
            block = rng.standard_normal(n, dtype=np.float32).astype(dtype)
        else:
            info = np.iinfo(dtype)
            block = rng.integers(
                max(info.min, -1000), min(info.max, 1000), n, dtype=dtype
            )
        fh.write(block.tobytes())
        count -= n


def small_model(folder: Path, seed: int = 0) -> dict[str, Any]:
    """Create a small Hugging Face style model folder and return its header facts."""
    folder.mkdir(parents=True, exist_ok=True)
    facts = write_safetensors(
        folder / "model.safetensors",
        {
            "embed.weight": ("F32", (64, 32)),
            "layer.0.weight": ("F16", (32, 32)),
            "layer.0.bias": ("BF16", (32,)),
            "position_ids": ("I64", (1, 64)),
        },
        metadata={"format": "pt"},
        seed=seed,
    )
    config = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text(
        json.dumps({"version": "1.0", "vocab": ["a", "b"]})
    )
    return facts


def plain_code(folder: Path) -> Path:
    """Create a small code folder that is not a git repository."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "infer.py").write_text("import sys\nprint(sys.argv)\n")
    (folder / "pkg").mkdir(exist_ok=True)
    (folder / "pkg" / "__init__.py").write_text("VERSION = 1\n")
    return folder


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def git_repo(folder: Path) -> dict[str, Any]:
    """Create a git repository with two commits, a remote URL with credentials,
    uncommitted changes, untracked files and a committed .env file. Return the
    facts a snapshot must record."""
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q", "-b", "train")
    git(
        folder,
        "remote",
        "add",
        "origin",
        "https://alice:s3cr3t-token@git.example.test/ml/model.git",
    )
    (folder / "train.py").write_text("EPOCHS = 3\n")
    (folder / "README.md").write_text("# model\n")
    (folder / ".env").write_text("API_KEY=hunter2\n")
    (folder / "src").mkdir()
    (folder / "src" / "net.py").write_text("LAYERS = 2\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "first")
    (folder / "src" / "loss.py").write_text("def loss():\n    return 0\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "second")

    (folder / "train.py").write_text("EPOCHS = 5\n")  # uncommitted change
    (folder / "notes.txt").write_text("try lr 3e-4\n")  # untracked
    (folder / "scratch").mkdir()
    (folder / "scratch" / "plot.py").write_text("pass\n")  # untracked
    return {
        "commit": git(folder, "rev-parse", "HEAD"),
        "branch": "train",
        "untracked": ["notes.txt", "scratch/plot.py"],
        "tracked": sorted(["train.py", "README.md", "src/net.py", "src/loss.py"]),
        "secret": "s3cr3t-token",
    }


def hf_cache(root: Path) -> dict[str, Any]:
    """Create a Hugging Face hub cache entry: files under snapshots/<rev>/ are
    relative symbolic links into blobs/, and two paths share one blob. Return
    the snapshot folder and the content of each snapshot path."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    staging = root / "weights.tmp"
    facts = write_safetensors(staging, {"w": ("F32", (128, 64))})
    weights = staging.read_bytes()
    staging.unlink()
    contents = {
        "model.safetensors": weights,
        "config.json": b'{"model_type": "bert"}',
        "tokenizer_config.json": b'{"do_lower_case": true}',
    }
    # The same bytes under a second name, as the hub does for duplicated files.
    contents["onnx/config.json"] = contents["config.json"]

    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = root / "snapshots" / revision
    for rel, data in contents.items():
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return {"snapshot": snapshot, "contents": contents, "facts": facts}


def paths_under(manifest: dict[str, Any], *folders: str) -> list[str]:
    """Return the sorted paths of the manifest's files under the top ``folders``.

    Tests that count a bundle's files count weights/ and code/, because
    system/ contains whichever probe outputs the host produces.
    """
    return sorted(
        entry["path"]
        for entry in manifest["files"]
        if entry["path"].split("/", 1)[0] in folders
    )


def run_capture(model: Path, code: Path, output: Path, **kwargs: Any) -> CaptureResult:
    kwargs.setdefault("env", False)
    options = CaptureOptions(model=model, output=output, code=code, **kwargs)
    return capture(options)


# ---------------------------------------------------------------------------
# Taking bundles apart


def body_start(bundle: Path) -> int:
    """Return the offset of the first frame after the manifest's skippable frame."""
    data = bundle.read_bytes()
    position = data.index(struct.pack("<I", SKIPPABLE_MAGIC))
    (gap,) = struct.unpack("<I", data[position + 4 : position + 8])
    return position + 8 + gap


def decompress(bundle: Path) -> bytes:
    """Return the whole tar stream of a bundle."""
    with open(bundle, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
        return reader.read()


def compress(tar_bytes: bytes, bundle: Path) -> None:
    """Write ``tar_bytes`` as a bundle file made of one zstd frame, which every
    zstd reader (and goldmaster) accepts as well as the multi-frame layout."""
    bundle.write_bytes(
        zstandard.ZstdCompressor(level=3, write_checksum=True).compress(tar_bytes)
    )


def members(bundle: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(decompress(bundle))) as tar:
        return tar.getmembers()


def member_bytes(bundle: Path, relpath: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(decompress(bundle))) as tar:
        for info in tar.getmembers():
            if info.name.split("/", 1)[1] == relpath:
                handle = tar.extractfile(info)
                assert handle is not None
                return handle.read()
    raise KeyError(relpath)


def data_offset(tar_bytes: bytes, relpath: str) -> int:
    """Return where the data of member ``relpath`` starts in an uncompressed tar."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for info in tar.getmembers():
            if info.name.split("/", 1)[1] == relpath:
                return info.offset_data
    raise KeyError(relpath)


Edit = Callable[[str, bytes], "tuple[str, bytes] | None"]


def rewrite(
    bundle: Path, out: Path, edit: Edit, extra: tuple[tuple[str, bytes], ...] = ()
) -> None:
    """Rebuild a bundle member by member. ``edit`` gets each member's path
    relative to the top folder and its data, and returns the new pair or None
    to drop the member. ``extra`` members are appended at the end."""
    source = io.BytesIO(decompress(bundle))
    target = io.BytesIO()
    with (
        tarfile.open(fileobj=source) as old,
        tarfile.open(fileobj=target, mode="w", format=tarfile.PAX_FORMAT) as new,
    ):
        top = ""
        for info in old.getmembers():
            top, rel = info.name.split("/", 1)
            if info.islnk():
                new.addfile(info)
                continue
            handle = old.extractfile(info)
            assert handle is not None
            changed = edit(rel, handle.read())
            if changed is None:
                continue
            _add(new, info, f"{top}/{changed[0]}", changed[1])
        for rel, data in extra:
            _add(new, tarfile.TarInfo(), f"{top}/{rel}", data)
    compress(target.getvalue(), out)


def _add(
    tar: tarfile.TarFile, template: tarfile.TarInfo, name: str, data: bytes
) -> None:
    info = tarfile.TarInfo(name)
    info.mode = template.mode or 0o644
    info.mtime = template.mtime
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def sidecar_for(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ".sha256")


def write_sidecar(bundle: Path) -> None:
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    sidecar_for(bundle).write_text(f"{digest}  {bundle.name}\n")


def tree(folder: Path) -> dict[str, bytes]:
    """Map each regular file under ``folder`` to its content."""
    found: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            found[path.relative_to(folder).as_posix()] = path.read_bytes()
    return found


def leftovers(folder: Path) -> list[str]:
    """Names in ``folder`` that a failed capture must not leave behind. A
    failed capture removes an output folder that it created."""
    if not folder.exists():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if "goldmaster-tmp" in p.name or ".gm.tar" in p.name
    )
