"""Terminal output: progress, step lines, errors and the inspect page."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from .progress import Reporter
from .system_report import cuda_rows, gpu_rows, system_rows


def make_console(stream: Any = None) -> Console:
    """A console on stderr whose colour follows NO_COLOR and whether it is a terminal."""
    stream = stream or sys.stderr
    return Console(
        file=stream,
        no_color=bool(os.environ.get("NO_COLOR")),
        highlight=False,
        soft_wrap=True,
    )


class ConsoleReporter(Reporter):
    """Draws a byte progress bar on a terminal and writes step lines otherwise."""

    def __init__(
        self, console: Console, quiet: bool = False, verbose: bool = False
    ) -> None:
        self.console = console
        self.quiet = quiet
        self.verbose = verbose
        self._progress: Progress | None = None
        self._task: Any = None

    def step(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[bold]goldmaster:[/bold] {message}", markup=True)

    def notice(self, message: str) -> None:
        self.console.print(f"[yellow]Notice:[/yellow] {message}", markup=True)

    def start(self, total: int, label: str) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def advance(self, count: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, count)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def print_json(data: dict[str, Any]) -> None:
    """Print ``data`` as strict JSON: non-finite floats (NaN, Infinity), which
    JSON cannot hold, become the strings "NaN", "Infinity" and "-Infinity"."""
    text = json.dumps(_finite(data), indent=2, sort_keys=False, allow_nan=False)
    sys.stdout.write(text + "\n")


def _finite(value: Any) -> Any:
    """Return ``value`` with every non-finite float replaced by its name."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def plural(count: int, noun: str) -> str:
    """Return "1 file" or "3 files": the count and the noun, plural unless 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def human_bytes(count: float | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(
        title=title, title_justify="left", show_header=False, box=None, pad_edge=False
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows:
        if value is None or value == "" or value == [] or value == {}:
            continue
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def render_manifest(console: Console, manifest: dict[str, Any]) -> None:
    """Print the manifest as a readable page."""
    model = manifest.get("model", {})
    console.print(
        _kv_table(
            f"{manifest.get('name')} {manifest.get('version')}",
            [
                ("created", manifest.get("created")),
                ("goldmaster", manifest.get("goldmaster")),
                ("schema", manifest.get("schema")),
            ],
        )
    )
    console.print()
    console.print(
        _kv_table(
            "Model",
            [
                ("format", model.get("format")),
                ("files", model.get("files")),
                ("size", human_bytes(model.get("bytes"))),
                (
                    "parameters",
                    f"{model['parameters']:,}" if "parameters" in model else None,
                ),
                ("dtypes", _inline(model.get("dtypes"))),
                ("huggingface", _inline(model.get("huggingface"))),
            ],
        )
    )
    _render_code(console, manifest.get("code", {}))
    _render_environment(console, manifest.get("environment"))
    _render_mapping(console, "Parameters", manifest.get("params"))
    _render_mapping(console, "Metrics", manifest.get("metrics"))
    if manifest.get("datasets"):
        console.print()
        console.print(_kv_table("Datasets", [("", d) for d in manifest["datasets"]]))
    if manifest.get("system"):
        render_system(console, manifest["system"], "System")
    _render_image(console, manifest.get("image"))
    _render_checks(console, (manifest.get("checks") or {}).get("items") or [])
    _render_files(console, manifest.get("files", []))


def render_system(console: Console, system: dict[str, Any], title: str) -> None:
    """Print a system section: the host, its NVIDIA GPUs and its CUDA stack."""
    for heading, rows in (
        (title, system_rows(system)),
        ("NVIDIA", gpu_rows(system)),
        ("CUDA", cuda_rows(system)),
    ):
        # Text cells, because probed values (paths, tool output) may contain
        # square brackets that rich would read as markup.
        plain = [(key, Text(value)) for key, value in rows if value]
        if plain:
            console.print()
            console.print(_kv_table(heading, plain))


def render_findings(console: Console, findings: list[Any]) -> None:
    """Print host-comparison findings, errors first, each with its advice."""
    console.print()
    if not findings:
        console.print("No differences that stop the captured model from running here.")
        return
    table = Table(title="Findings", title_justify="left", box=None, pad_edge=False)
    table.add_column("severity", style="bold", no_wrap=True)
    table.add_column("code", no_wrap=True)
    table.add_column("finding and advice")
    for finding in findings:
        table.add_row(finding.severity, finding.code, Text(f"{finding.message}\n{finding.advice}"))
    console.print(table)


def _inline(value: Any) -> str | None:
    if not value:
        return None
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _render_code(console: Console, code: dict[str, Any]) -> None:
    git = code.get("git") or {}
    remote = git.get("remote") or {}
    console.print()
    console.print(
        _kv_table(
            "Code",
            [
                ("files", code.get("files")),
                ("size", human_bytes(code.get("bytes"))),
                ("git remote", remote.get("url")),
                ("commit", git.get("commit")),
                ("branch", git.get("branch")),
                ("dirty", git.get("dirty") if git else None),
                ("untracked", len(git.get("untracked", [])) if git else None),
                ("left out", _inline(code.get("left_out_secrets"))),
            ],
        )
    )


def _render_environment(console: Console, env: dict[str, Any] | None) -> None:
    if not env:
        return
    interpreter = env.get("interpreter", {})
    dists = env.get("distributions", [])

    kinds: dict[str, int] = {}
    for dist in dists:
        kind = dist["origin"]["kind"]
        kinds[kind] = kinds.get(kind, 0) + 1

    wheels = env.get("wheels", {})
    vendored = None
    if wheels.get("vendored"):
        vendored = (
            f"{wheels.get('count')} files, {len(wheels.get('missing', []))} missing"
        )
    effective = env.get("index", {}).get("effective", {})
    conda = env.get("conda") or {}

    console.print()
    console.print(
        _kv_table(
            "Python environment",
            [
                (
                    "python",
                    f"{interpreter.get('implementation')} {interpreter.get('version')}",
                ),
                ("platform", interpreter.get("platform")),
                ("kind", env.get("kind")),
                (
                    "distributions",
                    f"{len(dists)} ({_inline(dict(sorted(kinds.items())))})",
                ),
                ("index", effective.get("index_url")),
                ("extra indexes", _inline(effective.get("extra_index_urls"))),
                ("wheels", vendored),
                ("conda packages", len(conda.get("packages", [])) if conda else None),
                (
                    "lockfiles",
                    _inline([item["path"] for item in env.get("lockfiles", [])]),
                ),
                (
                    "external code",
                    _inline([item["path"] for item in env.get("external_code", [])]),
                ),
            ],
        )
    )
    _render_local_origins(console, dists)


def _render_local_origins(console: Console, dists: list[dict[str, Any]]) -> None:
    """List the distributions that did not come from an index, with their source."""
    rows = []
    for dist in dists:
        origin = dist["origin"]
        if origin["kind"] in ("index", "unknown", "conda"):
            continue
        source = (
            origin.get("requirement_url") or origin.get("url") or origin.get("path")
        )
        rows.append(
            (f"{dist['name']} {dist['version']}", f"{origin['kind']}: {source}")
        )
    if rows:
        console.print()
        console.print(_kv_table("Distributions not from an index", rows))


def _render_image(console: Console, image: dict[str, Any] | None) -> None:
    if not image:
        return
    base = image.get("base_image") or {}
    engine = image.get("engine") or {}
    weights = image.get("weights")
    if weights == "mounted":
        weights = f"mounted at {image.get('weights_path')}"
    console.print()
    console.print(
        _kv_table(
            "Image",
            [
                ("built", "yes" if image.get("built") else "no"),
                ("reason", image.get("reason")),
                ("id", _short_digest(image.get("id"))),
                ("tags", _inline(image.get("tags"))),
                ("size", human_bytes(image["size"]) if image.get("size") else None),
                ("saved", image.get("archive") if image.get("saved") else "no"),
                ("dockerfile", image.get("dockerfile")),
                ("base image", base.get("ref")),
                ("base digest", _short_digest(base.get("digest") or base.get("id"))),
                ("weights", weights),
                ("engine", " ".join(filter(None, [engine.get("name"), engine.get("version")]))),
            ],
        )
    )


def _short_digest(digest: str | None) -> str | None:
    """Shorten ``sha256:<64 hex>`` to 12 hex digits, as docker prints image ids."""
    if not digest:
        return None
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}" if value else digest[:12]


def _render_mapping(
    console: Console, title: str, mapping: dict[str, Any] | None
) -> None:
    if mapping:
        console.print()
        console.print(_kv_table(title, list(mapping.items())))


def _render_checks(console: Console, checks: list[dict[str, Any]]) -> None:
    if not checks:
        return
    table = Table(title="Golden-output checks", title_justify="left", box=None, pad_edge=False)
    for column in ("name", "command", "outputs", "comparison", "at capture"):
        table.add_column(column, style="bold" if column == "name" else None)
    for check in checks:
        rtol, atol = check.get("rtol"), check.get("atol")
        exact = rtol is None and atol is None
        comparison = "exact" if exact else f"rtol={rtol or 0:g}, atol={atol or 0:g}"
        capture = "deterministic" if check.get("deterministic") else "nondeterministic"
        outputs = ", ".join(["stdout", *check.get("outputs", [])])
        table.add_row(check["name"], check["command"], outputs, comparison, capture)
    console.print()
    console.print(table)


def _render_files(console: Console, files: list[dict[str, Any]]) -> None:
    console.print()
    groups: dict[str, list[int]] = {}
    for entry in files:
        group = entry["path"].split("/", 1)[0] if "/" in entry["path"] else "."
        count_size = groups.setdefault(group, [0, 0])
        count_size[0] += 1
        count_size[1] += entry["size"]
    table = Table(title="Files", title_justify="left", box=None, pad_edge=False)
    table.add_column("folder", style="bold")
    table.add_column("files", justify="right")
    table.add_column("size", justify="right")
    for group, (count, size) in sorted(groups.items()):
        table.add_row(group, str(count), human_bytes(size))
    console.print(table)
