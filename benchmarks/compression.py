"""Measure zstd levels and the bytegroup codec on the benchmark inputs.

    python compression.py --data DATA [--sample-mib 64] [--json FILE]

For each corpus, a sample is compressed in one thread at zstd levels 1, 3,
6, 9 and 19. Level 19 runs at 1 to 3 MB/s, so it gets only the first
SLOW_SAMPLE_MIB of the sample. Float tensors are also compressed after
grouping the bytes of each value (goldmaster.codec.group, in blocks as
capture writes them). Reported: compressed size as a share of the input, and
input MB per second of one core. Corpora:

- code (synthetic): the generated 20,000-file repository, files concatenated
  in path order;
- code (Python standard library): the interpreter's own .py files, real code;
- text (MiniLM tokenizer and vocabulary);
- weights: the MiniLM fp32 safetensors (trained weights), the generated bf16
  and fp32 checkpoints, and fp16 made from the fp32 sample.
"""

from __future__ import annotations

import argparse
import json
import sysconfig
import time
from pathlib import Path

import numpy as np
import zstandard

from goldmaster import codec

LEVELS = [1, 3, 6, 9, 19]
SLOW_LEVEL = 19
SLOW_SAMPLE_MIB = 4
MIB = 1 << 20


def read_tree(root: Path, pattern: str, limit: int) -> bytes:
    parts = []
    total = 0
    for path in sorted(root.rglob(pattern)):
        if ".git" in path.parts or not path.is_file():
            continue
        data = path.read_bytes()
        parts.append(data)
        total += len(data)
        if total >= limit:
            break
    return b"".join(parts)[:limit]


def tensor_sample(path: Path, limit: int) -> tuple[bytes, int]:
    """Return up to ``limit`` bytes of tensor data from the middle of a
    safetensors file, and the file's float width."""
    layout = codec._float_layout(path, path.stat().st_size)
    assert layout is not None, path
    offset, width = layout
    size = path.stat().st_size
    start = offset + max(0, (size - offset - limit) // 2) // width * width
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(limit), width


def grouped(data: bytes, width: int) -> bytes:
    step = codec.BLOCK_VALUES * width
    return b"".join(
        codec.group(data[i : i + step], width) for i in range(0, len(data), step)
    )


def measure(data: bytes, level: int) -> dict[str, float]:
    if level >= SLOW_LEVEL:
        data = data[: SLOW_SAMPLE_MIB * MIB]
    compressor = zstandard.ZstdCompressor(level=level)
    start = time.perf_counter()
    size = len(compressor.compress(data))
    seconds = time.perf_counter() - start
    return {
        "ratio": round(size / len(data), 4),
        "mb_per_s": round(len(data) / seconds / 1e6, 1),
    }


def corpora(data_dir: Path, limit: int) -> list[tuple[str, bytes, int | None]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    minilm = data_dir / "minilm"
    text = (minilm / "tokenizer.json").read_bytes() + (
        minilm / "vocab.txt"
    ).read_bytes()
    bf16, bf16_width = tensor_sample(
        next((data_dir / "bf16").glob("*.safetensors")), limit
    )
    fp32, fp32_width = tensor_sample(
        next((data_dir / "fp32").glob("*.safetensors")), limit
    )
    fp16 = np.frombuffer(fp32, "<f4").astype("<f2").tobytes()
    minilm_fp32, minilm_width = tensor_sample(minilm / "model.safetensors", limit)
    return [
        (
            "code, synthetic (20,000 files)",
            read_tree(data_dir / "code", "*.py", limit),
            None,
        ),
        (
            f"code, Python {stdlib.name} standard library",
            read_tree(stdlib, "*.py", limit),
            None,
        ),
        ("text, MiniLM tokenizer and vocabulary", text, None),
        ("weights, MiniLM fp32 (trained)", minilm_fp32, minilm_width),
        ("weights, bf16 normal(0, 0.02)", bf16, bf16_width),
        ("weights, fp32 normal(0, 0.02)", fp32, fp32_width),
        ("weights, fp16 normal(0, 0.02)", fp16, 2),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sample-mib", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rows = []
    for name, data, width in corpora(args.data, args.sample_mib * MIB):
        row: dict[str, object] = {"corpus": name, "bytes": len(data)}
        row["zstd"] = {level: measure(data, level) for level in LEVELS}
        if width is not None:
            grouped_data = grouped(data, width)
            row["bytegroup"] = {level: measure(grouped_data, level) for level in LEVELS}
            start = time.perf_counter()
            grouped(data, width)
            row["group_mb_per_s"] = round(
                len(data) / (time.perf_counter() - start) / 1e6, 1
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
