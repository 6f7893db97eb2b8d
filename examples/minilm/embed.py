"""Embed a few fixed sentences with all-MiniLM-L6-v2, using NumPy only.

This is the example model's inference code: a BERT encoder (6 layers,
hidden size 384, 12 heads), mean pooling and L2 normalisation, as the
sentence-transformers configuration in the model folder describes. It reads
the weights straight from model.safetensors and the vocabulary from vocab.txt.

Usage: python embed.py [MODEL_DIR] [--out FILE]
MODEL_DIR defaults to $GOLDMASTER_MODEL_DIR, then ./model. The embeddings
are printed as JSON and, with --out, saved as a NumPy .npy file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import unicodedata
from pathlib import Path

import numpy as np

SENTENCES = [
    "A golden master records what a program outputs for fixed inputs.",
    "The quick brown fox jumps over the lazy dog.",
    "Restored models must answer exactly as they did when they were archived.",
]
DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    data = memoryview(raw)[8 + length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=DTYPES[entry["dtype"]])
        tensors[name] = array.reshape(entry["shape"]).astype(np.float64)
    return tensors


class WordPiece:
    """The uncased BERT tokenizer: basic splitting, then greedy WordPiece."""

    def __init__(self, vocab_file: Path) -> None:
        words = vocab_file.read_text(encoding="utf-8").splitlines()
        self.ids = {word: index for index, word in enumerate(words)}

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        tokens: list[str] = []
        for word in text.split():
            current = ""
            for char in word:
                if unicodedata.category(char).startswith("P") or char in "$+<=>^`|~":
                    if current:
                        tokens.append(current)
                    tokens.append(char)
                    current = ""
                else:
                    current += char
            if current:
                tokens.append(current)
        return tokens

    def _wordpiece(self, word: str) -> list[int]:
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    pieces.append(self.ids[piece])
                    break
                end -= 1
            if end == start:
                return [self.ids["[UNK]"]]
            start = end
        return pieces

    def encode(self, text: str) -> list[int]:
        ids = [self.ids["[CLS]"]]
        for word in self._basic(text):
            ids.extend(self._wordpiece(word))
        return ids[:511] + [self.ids["[SEP]"]]


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * weight + bias


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def encode(w: dict[str, np.ndarray], ids: list[int], layers: int = 6, heads: int = 12) -> np.ndarray:
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    size = x.shape[1] // heads
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def dense(name: str, h: np.ndarray) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (
            dense(f"attention.self.{part}", x).reshape(n, heads, size).transpose(1, 0, 2)
            for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, -1)
        x = layer_norm(
            dense("attention.output.dense", context) + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        hidden = gelu(dense("intermediate.dense", x))
        x = layer_norm(
            dense("output.dense", hidden) + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default=os.environ.get("GOLDMASTER_MODEL_DIR", "model"))
    parser.add_argument("--out", help="also save the embeddings to this .npy file")
    args = parser.parse_args()
    model = Path(args.model_dir)
    if not (model / "model.safetensors").is_file():
        print(f"error: no model.safetensors in {model}", file=sys.stderr)
        return 2
    weights = load_safetensors(model / "model.safetensors")
    tokenizer = WordPiece(model / "vocab.txt")
    embeddings = np.stack([encode(weights, tokenizer.encode(s)) for s in SENTENCES]).astype(np.float32)
    if args.out:
        np.save(args.out, embeddings)
    rounded = [[round(float(v), 6) for v in row] for row in embeddings]
    print(json.dumps({"model": "all-MiniLM-L6-v2", "sentences": SENTENCES, "embeddings": rounded}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
