"""Generate the benchmark inputs, the same bytes on every run.

    python generate.py weights DEST --gib N [--dtype BF16|F32] [--seed S]
    python generate.py code DEST [--files 20000] [--seed S]
    python generate.py subset SOURCE DEST --gib N

``weights`` writes a sharded safetensors checkpoint (one shard per GiB) whose
values come from a seeded normal distribution with the spread of trained
transformer weights. ``subset`` makes a folder of symbolic links to the first
N shards, so that the 1, 2, 4 and 8 GiB inputs share one set of files on disk.
``code`` writes a git repository of small Python files with a fixed author
and date, so that its commit id is stable too.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

GIB = 1 << 30
# Standard deviation of the generated weights: the order of magnitude of
# linear-layer weights in trained transformers, which sets how many exponent
# values occur and so how well the bytes compress.
WEIGHT_STD = 0.02
ROWS = 4096
# Elements generated per numpy call, which bounds the generator's memory.
CHUNK_ELEMENTS = 16 << 20
ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4}


def shard_name(index: int) -> str:
    """Name shard ``index``; the total is left out, so that a larger
    checkpoint reuses the shards of a smaller one."""
    return f"model-{index + 1:05d}.safetensors"


def write_shard(path: Path, dtype: str, seed: int, index: int) -> None:
    """Write one safetensors shard of one GiB of tensor data."""
    itemsize = ITEMSIZE[dtype]
    columns = GIB // itemsize // ROWS // 32
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for layer in range(32):
        size = ROWS * columns * itemsize
        header[f"layers.{index * 32 + layer}.weight"] = {
            "dtype": dtype,
            "shape": [ROWS, columns],
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)

    rng = np.random.default_rng([seed, index])
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        remaining = offset // itemsize
        while remaining:
            count = min(CHUNK_ELEMENTS, remaining)
            values = rng.standard_normal(count, dtype=np.float32) * np.float32(
                WEIGHT_STD
            )
            fh.write(encode(values, dtype))
            remaining -= count
    partial.rename(path)


def encode(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "F32":
        return values.astype("<f4").tobytes()
    if dtype == "F16":
        return values.astype("<f2").tobytes()
    # bfloat16 is the upper half of float32, rounded to nearest even.
    bits = values.view(np.uint32)
    rounded = (
        bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    ) >> np.uint32(16)
    return rounded.astype("<u2").tobytes()


def weights(dest: Path, gib: int, dtype: str, seed: int) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for index in range(gib):
        path = dest / shard_name(index)
        if not path.exists():
            print(f"writing {path}", file=sys.stderr)
            write_shard(path, dtype, seed, index)
    config = {"model_type": "llama", "torch_dtype": dtype.lower()}
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def subset(source: Path, dest: Path, gib: int) -> None:
    """Link the first ``gib`` shards of ``source`` into ``dest``."""
    shards = [source / shard_name(index) for index in range(gib)]
    missing = [shard.name for shard in shards if not shard.is_file()]
    if missing:
        raise SystemExit(
            f"{source} lacks {', '.join(missing)}: generate {gib} GiB first"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for shard in shards:
        link = dest / shard.name
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(shard, dest))
    (dest / "config.json").write_bytes((source / "config.json").read_bytes())


WORDS = [
    "def", "return", "self", "value", "result", "config", "model", "tensor", "batch",
    "layer", "weight", "input", "output", "import", "from", "class", "if", "else", "for",
    "in", "while", "try", "except", "raise", "with", "as", "None", "True", "False", "loss",
    "optimizer", "step", "grad", "data", "loader", "path", "name", "size", "index",
    "count", "shape", "dtype", "device",
]  # fmt: skip


def code_file(rng: np.random.Generator, size: int) -> bytes:
    """Return about ``size`` bytes of Python-like text."""
    lines = []
    total = 0
    while total < size:
        indent = "    " * int(rng.integers(0, 3))
        words = rng.choice(WORDS, size=int(rng.integers(2, 10)))
        number = int(rng.integers(0, 1000))
        line = f"{indent}{' '.join(words)} = {number}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def code(dest: Path, files: int, seed: int) -> None:
    if (dest / ".git").is_dir():
        return
    partial = dest.with_name(dest.name + ".partial")
    rng = np.random.default_rng(seed)
    # Source files are small and skewed: a median near 2 KB, a few up to 64 KB.
    sizes = np.clip(rng.lognormal(np.log(2000), 1.0, files), 100, 64000).astype(int)
    for number, size in enumerate(sizes):
        path = partial / f"pkg{number // 100:03d}" / f"module{number % 100:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(code_file(rng, int(size)))
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
        GIT_AUTHOR_DATE="2024-01-01T00:00:00Z",
        GIT_COMMITTER_DATE="2024-01-01T00:00:00Z",
    )
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "code"],
    ):
        subprocess.run(["git", "-C", str(partial), *args], check=True, env=env)
    partial.rename(dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["weights", "code", "subset"])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--dtype", choices=sorted(ITEMSIZE), default="BF16")
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "weights":
        weights(args.paths[0], args.gib, args.dtype, args.seed)
    elif args.kind == "subset":
        subset(args.paths[0], args.paths[1], args.gib)
    else:
        code(args.paths[0], args.files, args.seed)


if __name__ == "__main__":
    main()
