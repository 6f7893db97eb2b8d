"""Time the phases of one ``goldmaster capture`` run, in this process.

    python profile_capture.py MODEL --code CODE --output DIR [--json FILE]

Each phase is a function of goldmaster.capture or goldmaster.archive that
this script wraps with a timer before it calls ``capture()``; nested phases
are reported inside the phases that call them, so the times do not add up
to the total. The capture runs without the Python environment and the
image, like the benchmark's captures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from goldmaster import archive, capture, manifest

# (module or class, function name, label) of each timed phase, in the order a
# capture reaches them. Functions that capture imports by name are wrapped in
# the capture module, where it looks them up.
PHASES: list[tuple[Any, str, str]] = [
    (capture, "scan_model", "scan the model folder"),
    (capture, "snapshot_code", "list the code files and read git state"),
    (capture, "probe_system", "system probes, in a thread beside the two scans above"),
    (capture, "_early_sections", "other probes"),
    (capture, "check_capture", "secret scan"),
    (capture, "_reserve_for", "size the manifest reserve"),
    (capture, "_write_entries", "read, hash and compress the members"),
    (archive.BundleWriter, "close", "end the body and write the manifest frame"),
    (manifest, "dump", "render manifest YAML"),
    (capture, "_sync_and_digest", "fsync and whole-file sha256, side by side"),
    (capture, "_file_digest", "whole-file sha256 for the .sha256 file"),
]


def wrap(owner: Any, name: str, label: str, totals: dict[str, list[float]]) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label].append(time.perf_counter() - start)

    setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--code", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--codec", default="zstd")
    parser.add_argument("--text-level", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    totals: dict[str, list[float]] = defaultdict(list)
    for owner, name, label in PHASES:
        if hasattr(owner, name):
            wrap(owner, name, label, totals)

    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    options = capture.CaptureOptions(
        model=args.model,
        output=args.output,
        version="profile",
        code=args.code,
        env=False,
        image=False,
        force=True,
        text_level=args.text_level,
    )
    if args.codec != "zstd":
        options.codec = args.codec  # type: ignore[attr-defined]
    start = time.perf_counter()
    result = capture.capture(options)
    total = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)

    rows = [
        {
            "phase": label,
            "calls": len(totals[label]),
            "seconds": round(sum(totals[label]), 3),
        }
        for _, _, label in PHASES
        if totals.get(label)
    ]
    report = {
        "total_seconds": round(total, 3),
        "user_seconds": round(usage.ru_utime, 3),
        "system_seconds": round(usage.ru_stime, 3),
        "peak_rss_mb": usage.ru_maxrss // 1024,
        "bundle_bytes": result.size,
        "input_bytes": result.input_bytes,
        "phases": rows,
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
