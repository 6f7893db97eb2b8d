"""Render benchmark results (out/results.json) as the results part of BENCHMARKS.md.

    python report.py RESULTS_JSON BENCHMARKS_MD

run.py calls render() and replace_block() itself; this entry point re-renders
saved results after a change to the layout.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

START = "<!-- results start -->"
END = "<!-- results end -->"

# (group, command, baseline command(s) it is compared with, limit on the ratio)
TARGETS = [
    ("capture", "goldmaster capture", ["tar -c | zstd -T0 -3"], 1.0),
    ("verify", "goldmaster verify", ["zstd -dc | sha256sum"], 1.0),
    ("restore", "goldmaster restore", ["zstd -dc | tar -x, then sha256sum -c"], 1.0),
    ("small files", "goldmaster capture", ["tar -c | zstd -T0 -3"], 1.5),
]
INSPECT_LIMIT = 0.2
MEMORY_LIMIT_MB = 300


def _commands(results: dict[str, Any], group: str) -> dict[str, dict[str, Any]]:
    return {c["label"]: c for c in results["groups"][group]["commands"]}


def _cell(text: str) -> str:
    # A pipe ends a table cell even inside backticks unless it is escaped.
    return text.replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return lines + [""]


def _group_table(results: dict[str, Any], group: str, baseline: str) -> list[str]:
    commands = results["groups"][group]["commands"]
    base = _commands(results, group)[baseline]["wall"]
    sizes = results.get("sizes", {})
    rows = []
    for c in commands:
        size_key = (
            c["label"] if group != "small files" else f"small files: {c['label']}"
        )
        size = sizes.get(size_key)
        row = [
            f"`{c['label']}`",
            f"{c['wall']:.2f}",
            f"{c['wall'] / base:.2f}",
            f"{c['cpu']:.2f}",
            f"{c['rss_mb']:.0f}",
        ]
        if any(key in sizes for key in (c["label"], f"small files: {c['label']}")):
            row.append(f"{size / 1e6:,.1f}" if size else "")
        rows.append(row)
    header = ["command", "median s", f"ratio to `{baseline}`", "CPU s", "peak MB"]
    if any(len(row) == 6 for row in rows):
        header.append("output MB")
        rows = [row + [""] * (6 - len(row)) for row in rows]
    return [f"*{results['groups'][group]['note']}*", ""] + _table(header, rows)


def _targets(results: dict[str, Any]) -> list[str]:
    rows = []
    for group, label, baselines, limit in TARGETS:
        commands = _commands(results, group)
        base = sum(commands[b]["wall"] for b in baselines)
        ratio = commands[label]["wall"] / base
        verdict = "met" if ratio <= limit else "missed"
        rows.append(
            [
                f"{group}: `{label}` / `{' + '.join(baselines)}`",
                f"≤ {limit}",
                f"{ratio:.2f}",
                verdict,
            ]
        )
    inspect = _commands(results, "inspect")["goldmaster inspect"]["wall"]
    rows.append(
        [
            "inspect, median seconds",
            f"< {INSPECT_LIMIT}",
            f"{inspect:.3f}",
            "met" if inspect < INSPECT_LIMIT else "missed",
        ]
    )
    peak = max(
        row[step]["rss_mb"]
        for row in results["memory"]
        for step in ("capture", "verify", "restore")
    )
    rows.append(
        [
            "peak memory, MB, largest of all sizes",
            f"< {MEMORY_LIMIT_MB}",
            f"{peak:.0f}",
            "met" if peak < MEMORY_LIMIT_MB else "missed",
        ]
    )
    return _table(["target", "limit", "measured", ""], rows)


def _memory(results: dict[str, Any]) -> list[str]:
    rows = []
    for row in results["memory"]:
        rows.append(
            [f"{row['gib']}"]
            + [
                f"{row[step]['rss_mb']:.0f}"
                for step in ("capture", "verify", "restore")
            ]
            + [f"{row[step]['wall']:.1f}" for step in ("capture", "verify", "restore")]
        )
    header = [
        "input GiB",
        "capture MB",
        "verify MB",
        "restore MB",
        "capture s",
        "verify s",
        "restore s",
    ]
    return _table(header, rows)


def _phases(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for label, report in results.get("phases", {}).items():
        lines.append(
            f"*{label}: total {report['total_seconds']:.2f} s, CPU {report['user_seconds']:.2f} s "
            f"user + {report['system_seconds']:.2f} s system, peak {report['peak_rss_mb']} MB*"
        )
        lines.append("")
        rows = [
            [p["phase"], str(p["calls"]), f"{p['seconds']:.3f}"]
            for p in report["phases"]
        ]
        lines += _table(["phase", "calls", "seconds"], rows)
    return lines


def _loads(results: dict[str, Any]) -> str:
    loads = [
        load
        for group in results["groups"].values()
        for c in group["commands"]
        for load in c["loads"]
    ]
    return (
        f"1-minute load average before each command: median {statistics.median(loads):.2f}, "
        f"min {min(loads):.2f}, max {max(loads):.2f}"
    )


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        START,
        "",
        (
            f"Run from {results['started']} to {results['finished']}; "
            f"{_loads(results)}. Input: {results.get('input_bytes', 0) / 1e9:.2f} GB."
        ),
        "",
        "```",
        results["command"],
        "```",
        "",
    ]
    lines += _table(["machine", ""], [[k, v] for k, v in machine.items()])
    lines += ["### Targets", ""] + _targets(results)
    lines += ["### Capture", ""] + _group_table(
        results, "capture", "tar -c | zstd -T0 -3"
    )
    lines += ["### Verify", ""] + _group_table(
        results, "verify", "zstd -dc | sha256sum"
    )
    lines += ["### Restore", ""] + _group_table(
        results, "restore", "zstd -dc | tar -x, then sha256sum -c"
    )
    lines += ["### Inspect", ""] + _group_table(
        results, "inspect", "python3 -c pass (interpreter start)"
    )
    lines += ["### 20,000 small files", ""] + _group_table(
        results, "small files", "tar -c | zstd -T0 -3"
    )
    lines += ["### Other models", ""] + _other_models(results)
    lines += ["### Peak memory as the input grows", ""] + _memory(results)
    if "compression" in results:
        lines += ["### zstd levels and the bytegroup codec", ""] + _compression(results)
    lines += ["### Capture phases", ""] + _phases(results)
    lines += [
        "### Commands",
        "",
        f"Paths are relative to the repository root, `{results['root']}` in this run.",
        "",
    ]
    for name, group in results["groups"].items():
        for c in group["commands"]:
            command = c["command"].replace(results["root"] + "/", "")
            lines.append(f"- {name}, {c['label']}: `{command}`")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def _other_models(results: dict[str, Any]) -> list[str]:
    sizes = results.get("sizes", {})
    rows = []
    for c in results["groups"]["other models"]["commands"]:
        size = sizes.get(c["label"])
        rows.append(
            [
                f"`{c['label']}`",
                f"{c['wall']:.2f}",
                f"{c['cpu']:.2f}",
                f"{c['rss_mb']:.0f}",
                f"{size / 1e6:,.1f}" if size else "",
            ]
        )
    note = results["groups"]["other models"]["note"]
    return [f"*{note}*", ""] + _table(
        ["command", "median s", "CPU s", "peak MB", "output MB"], rows
    )


def _compression(results: dict[str, Any]) -> list[str]:
    """One row per corpus and method: size as % of the input and MB/s of one
    core at each zstd level."""
    rows = []
    levels: list[str] = []
    for corpus in results["compression"]:
        for method in ("zstd", "bytegroup"):
            if method not in corpus:
                continue
            levels = list(corpus[method])
            cells = [
                f"{m['ratio'] * 100:.1f}% at {m['mb_per_s']:.0f}"
                for m in corpus[method].values()
            ]
            rows.append([corpus["corpus"], method] + cells)
    header = ["corpus", "method"] + [f"level {level}" for level in levels]
    note = (
        "*Compressed size as % of the input, at MB/s of input on one core; "
        "samples of 32 MiB (4 MiB at level 19), from `compression.py`.*"
    )
    return [note, ""] + _table(header, rows)


def replace_block(path: Path, block: str) -> None:
    """Put ``block`` between the result markers of ``path``, or at its end."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        before = text[: text.index(START)]
        after = text[text.index(END) + len(END) :].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def main() -> None:
    results = json.loads(Path(sys.argv[1]).read_text())
    replace_block(Path(sys.argv[2]), render(results))


if __name__ == "__main__":
    main()
