"""Golden-output checks: record what commands output at capture, compare later.

At capture each check command runs twice in the code folder with the captured
Python environment. The first run's stdout and output files go into the
bundle under ``checks/NAME/`` and the manifest's ``checks`` section records
them with their digests. When the two runs disagree, the check is marked
nondeterministic with the size of the difference.

``goldmaster check`` and ``restore --check`` run the commands again in a
restored folder, or in the restored container image, and compare each output
with the recording, exactly or within the check's tolerance.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from . import manifest as manifest_module
from .check_runner import (
    NOT_STARTED,
    TIMED_OUT,
    CheckCommand,
    CheckRun,
    RunContext,
    check_output_path,
    describe_exit,
    find_python,
    model_folders,
    run_command,
    run_in_image_command,
)
from .compare import (
    DIFFERENT,
    IDENTICAL,
    WITHIN_TOLERANCE,
    Comparison,
    Tolerance,
    compare_outputs,
)
from .errors import (
    CheckFailedError,
    InputError,
    OutputError,
    UsageError,
    VerificationError,
)
from .image import find_bundle_image
from .parts import Part, Section
from .progress import Reporter

if TYPE_CHECKING:
    from .capture import CaptureOptions

SECTION = "checks"
CONFIG_FILE = "goldmaster.yaml"
DEFAULT_TIMEOUT = 600.0
RUNS_AT_CAPTURE = 2
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CONFIG_KEYS = {"name", "command", "outputs", "rtol", "atol", "timeout"}
STDOUT = "stdout"
REPRODUCIBILITY_NOTE = (
    "check durations and stderr differ between captures, so a bundle with checks"
    " is not byte-reproducible"
)

# Outcome of a check in a restored folder, beyond the comparison statuses.
FAILED = "failed"
PASSING = (IDENTICAL, WITHIN_TOLERANCE)


@dataclass(frozen=True)
class CheckSpec:
    """One check: its command, output files, tolerance and time limit."""

    name: str
    command: str
    outputs: list[str] = field(default_factory=list)
    rtol: float | None = None
    atol: float | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def tolerance(self) -> Tolerance | None:
        """The numeric tolerance, or None for an exact comparison."""
        if self.rtol is None and self.atol is None:
            return None
        return Tolerance(self.rtol or 0.0, self.atol or 0.0)

    def command_spec(self) -> CheckCommand:
        return CheckCommand(self.name, self.command, list(self.outputs), self.timeout)


# --- check definitions ---------------------------------------------------------------


def check_specs(
    code_dir: Path,
    commands: list[str],
    outputs: list[str],
    rtol: float | None = None,
    atol: float | None = None,
    timeout: float | None = None,
) -> list[CheckSpec]:
    """Return the checks of ``goldmaster.yaml`` in ``code_dir``, then those of
    the command line.

    ``outputs`` belong to the command-line checks. ``rtol``, ``atol`` and
    ``timeout`` apply to every check that does not set its own. Unnamed
    checks are named ``check-N`` after their position. Raises UsageError on
    an invalid entry, a duplicate name or outputs that fit no single check.
    """
    entries = _config_entries(code_dir / CONFIG_FILE)
    if outputs and len(commands) != 1:
        raise UsageError(
            f"--check-output needs exactly one --check, got {len(commands)}",
            f"name the outputs of each check under checks: in {CONFIG_FILE}",
        )
    entries += [{"command": command, "outputs": list(outputs)} for command in commands]
    defaults = {"rtol": rtol, "atol": atol, "timeout": timeout}
    specs = [
        _spec(entry, index, defaults) for index, entry in enumerate(entries, start=1)
    ]
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UsageError(
            f"duplicate check name {duplicates[0]!r}", "give every check its own name"
        )
    return specs


def _config_entries(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(
            f"cannot read {path}: {exc}", "fix the file or remove it"
        ) from exc
    if config is None:
        return []
    if not isinstance(config, dict):
        raise UsageError(
            f"{path} must contain a mapping",
            "for example: checks: [{name: ..., command: ...}]",
        )
    checks = config.get("checks") or []
    if not isinstance(checks, list) or not all(
        isinstance(entry, dict) for entry in checks
    ):
        raise UsageError(
            f"checks in {path} must be a list of mappings",
            "give each check a name, a command and optionally outputs, rtol, atol and timeout",
        )
    for entry in checks:
        unknown = sorted(set(map(str, entry)) - CONFIG_KEYS)
        if unknown:
            raise UsageError(
                f"unknown key {unknown[0]!r} in a check in {path}",
                f"use only {', '.join(sorted(CONFIG_KEYS))}",
            )
    return [dict(entry) for entry in checks]


def _spec(
    entry: dict[str, Any], index: int, defaults: dict[str, float | None]
) -> CheckSpec:
    name = str(entry.get("name") or f"check-{index}")
    if not NAME_PATTERN.match(name):
        raise UsageError(
            f"invalid check name {name!r}",
            "use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise UsageError(
            f"check {name!r} has no command", "set command to a shell command line"
        )
    raw_outputs = entry.get("outputs") or []
    if isinstance(raw_outputs, str):
        raw_outputs = [raw_outputs]
    outputs = [check_output_path(str(path)) for path in raw_outputs]
    if len(set(outputs)) != len(outputs):
        raise UsageError(f"check {name!r} names an output file twice")
    timeout = _number(entry, "timeout", name, defaults)
    if timeout is not None and timeout <= 0:
        raise UsageError(
            f"invalid timeout {timeout:g} for check {name!r}",
            "use a number of seconds above 0",
        )
    return CheckSpec(
        name=name,
        command=command,
        outputs=outputs,
        rtol=_tolerance(entry, "rtol", name, defaults),
        atol=_tolerance(entry, "atol", name, defaults),
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
    )


def _number(
    entry: dict[str, Any], key: str, name: str, defaults: dict[str, float | None]
) -> float | None:
    value = entry.get(key, defaults[key])
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"invalid {key} {value!r} for check {name!r}", "use a number"
        ) from exc
    if not math.isfinite(number):
        raise UsageError(
            f"invalid {key} {value!r} for check {name!r}", "use a finite number"
        )
    return number


def _tolerance(
    entry: dict[str, Any], key: str, name: str, defaults: dict[str, float | None]
) -> float | None:
    value = _number(entry, key, name, defaults)
    if value is not None and value < 0:
        raise UsageError(
            f"invalid {key} {value:g} for check {name!r}", "use a number of 0 or more"
        )
    return value


# --- capture -------------------------------------------------------------------------


def checks_section(options: CaptureOptions) -> Section | None:
    """Run the checks of a capture and return its ``checks`` section, or None
    when neither the command line nor ``goldmaster.yaml`` defines a check."""
    code_dir = (options.code if options.code is not None else Path.cwd()).resolve()
    specs = check_specs(
        code_dir,
        list(options.checks),
        list(options.check_outputs),
        options.check_rtol,
        options.check_atol,
        options.check_timeout,
    )
    if not specs:
        return None
    # --python is the captured interpreter when the environment probe adds it.
    python = getattr(options, "python", None)
    return capture_checks(specs, code_dir, options.model, python)


def capture_checks(
    specs: list[CheckSpec],
    code_dir: Path,
    model: Path,
    python: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Section:
    """Run each check twice in ``code_dir`` and return the ``checks`` section.

    ``python`` is the captured interpreter. Without it, the checks run with
    VIRTUAL_ENV's environment, else with ``python3`` on PATH. Raises
    CheckFailedError when a run times out, cannot start, exits with a
    non-zero status or does not write an output file.
    """
    environ = dict(os.environ if environ is None else environ)
    bin_dir, venv = find_python(python, environ)
    model_dir, model_path = model_folders(model)
    context = RunContext(code_dir.absolute(), model_dir, model_path, bin_dir, venv)
    items: list[dict[str, Any]] = []
    parts: list[Part] = []
    notices: list[str] = []
    for spec in specs:
        runs = [
            _capture_run(spec, context, environ, attempt)
            for attempt in range(RUNS_AT_CAPTURE)
        ]
        comparisons = compare_run(spec, _recording_of(runs[0]), runs[1])
        item, item_parts = _record(spec, runs[0], comparisons)
        items.append(item)
        parts.extend(item_parts)
        if not item["deterministic"]:
            notices.append(_nondeterministic_notice(spec, comparisons))
    data = {
        "runs_at_capture": RUNS_AT_CAPTURE,
        "reproducible": False,
        "reproducible_note": REPRODUCIBILITY_NOTE,
        "items": items,
    }
    return Section(SECTION, data, parts, notices)


def _capture_run(
    spec: CheckSpec, context: RunContext, environ: Mapping[str, str], attempt: int
) -> CheckRun:
    run = run_command(spec.command_spec(), context, environ)
    ordinal = "first" if attempt == 0 else "second"
    hint = f"run the command by hand in {context.workdir} and fix it, or leave the check out"
    if run.status == TIMED_OUT:
        raise CheckFailedError(
            f"check {spec.name!r} {run.reason} in its {ordinal} run at capture", hint
        )
    if run.status == NOT_STARTED:
        raise CheckFailedError(
            f"check {spec.name!r} could not start in its {ordinal} run at capture: {run.reason}",
            hint,
        )
    if run.exit_status != 0:
        detail = f": {run.stderr_tail.splitlines()[-1]}" if run.stderr_tail else ""
        raise CheckFailedError(
            f"check {spec.name!r} failed in its {ordinal} run at capture"
            f" with {describe_exit(run.exit_status)}{detail}",
            hint,
        )
    missing = [path for path, content in run.outputs.items() if content is None]
    if missing:
        raise CheckFailedError(
            f"check {spec.name!r} did not write its output {missing[0]} in its {ordinal} run at capture",
            f"output paths are relative to {context.workdir}; check the path or the command",
        )
    return run


@dataclass
class Recording:
    """The recorded exit status, stdout and output files of a check."""

    exit_status: int
    stdout: bytes
    outputs: dict[str, bytes]


def _recording_of(run: CheckRun) -> Recording:
    outputs = {
        path: content for path, content in run.outputs.items() if content is not None
    }
    return Recording(run.exit_status or 0, run.stdout, outputs)


def _record(
    spec: CheckSpec, run: CheckRun, comparisons: dict[str, Comparison]
) -> tuple[dict[str, Any], list[Part]]:
    folder = f"{SECTION}/{spec.name}"
    parts = [Part(f"{folder}/{STDOUT}", data=run.stdout)]
    files = []
    for path in spec.outputs:
        content = run.outputs[path]
        assert content is not None
        member = f"{folder}/outputs/{path}"
        parts.append(Part(member, data=content))
        files.append({"path": path, **_digest_entry(member, content)})
    differences = [
        {"output": name, **comparison.to_json()}
        for name, comparison in comparisons.items()
        if comparison.status != IDENTICAL
    ]
    item = {
        "name": spec.name,
        "command": spec.command,
        "outputs": list(spec.outputs),
        "rtol": spec.rtol,
        "atol": spec.atol,
        "timeout": spec.timeout,
        "exit_status": run.exit_status,
        "duration": run.duration,
        "stdout": _digest_entry(f"{folder}/{STDOUT}", run.stdout),
        "files": files,
        "stderr_tail": run.stderr_tail,
        "deterministic": not differences,
        "capture_difference": differences or None,
    }
    return item, parts


def _digest_entry(member: str, content: bytes) -> dict[str, Any]:
    return {
        "member": member,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def _nondeterministic_notice(
    spec: CheckSpec, comparisons: dict[str, Comparison]
) -> str:
    name, comparison = next(
        (n, c) for n, c in comparisons.items() if c.status != IDENTICAL
    )
    size = describe_difference(comparison)
    prefix = f"check {spec.name!r} is nondeterministic: its two runs at capture differ in {name}"
    if comparison.status == WITHIN_TOLERANCE:
        return f"{prefix} within the tolerance ({size})"
    if comparison.differing and comparison.max_abs_diff is not None:
        advice = "set --check-rtol or --check-atol to allow such differences"
    else:
        advice = "make the command's output deterministic"
    return (
        f"{prefix} ({size}). goldmaster check will report it as different, so {advice}"
    )


def describe_difference(comparison: Comparison) -> str:
    """Return the size of a difference in words, for notices and reports."""
    if comparison.max_abs_diff is not None and comparison.differing:
        return (
            f"{comparison.differing} of {comparison.compared} values differ, max abs diff"
            f" {comparison.max_abs_diff:.3g}, max rel diff {comparison.max_rel_diff:.3g}"
        )
    if comparison.max_abs_diff is not None:
        return f"max abs diff {comparison.max_abs_diff:.3g}, max rel diff {comparison.max_rel_diff:.3g}"
    return comparison.summary


def compare_run(
    spec: CheckSpec, recording: Recording, run: CheckRun
) -> dict[str, Comparison]:
    """Compare a run's stdout and output files with a recording, by output name."""
    tolerance = spec.tolerance
    results = {STDOUT: compare_outputs(STDOUT, recording.stdout, run.stdout, tolerance)}
    for path in spec.outputs:
        content = run.outputs.get(path)
        if content is None:
            results[path] = Comparison(
                DIFFERENT, "file", "the command did not write this file", differing=1
            )
        else:
            results[path] = compare_outputs(
                path, recording.outputs[path], content, tolerance
            )
    return results


# --- checks in a restored folder ------------------------------------------------------


@dataclass
class CheckOutcome:
    """The result of one check in a restored folder or image."""

    name: str
    command: str
    status: str
    reason: str
    duration: float
    exit_status: int | None
    stderr_tail: str
    deterministic_at_capture: bool
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": self.command,
            "status": self.status,
            "passed": self.passed,
            "reason": self.reason,
            "duration": self.duration,
            "exit_status": self.exit_status,
            "stderr_tail": self.stderr_tail,
            "deterministic_at_capture": self.deterministic_at_capture,
            "outputs": [
                {"output": name, **c.to_json()} for name, c in self.comparisons.items()
            ],
        }


@dataclass
class CheckReport:
    """The outcome of every check of a bundle."""

    dest: Path
    where: dict[str, Any]
    outcomes: list[CheckOutcome]
    bundle: Path | None = None

    @property
    def passed(self) -> bool:
        return all(outcome.passed for outcome in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "goldmaster.check/v1",
            "bundle": str(self.bundle) if self.bundle else None,
            "dest": str(self.dest),
            "where": self.where,
            "passed": self.passed,
            "checks": [outcome.to_json() for outcome in self.outcomes],
        }


def check_target(
    target: Path,
    *,
    image: bool = False,
    tmpdir: Path | None = None,
    reporter: Reporter | None = None,
) -> CheckReport:
    """Run the checks of a bundle file, or of a folder that restore wrote.

    A bundle is first verified and restored into a temporary folder, which is
    removed afterwards. With ``image`` that restore loads the bundle's image
    into the engine, where it stays, and skips the Python environment.
    """
    if target.is_dir():
        return run_checks(target, image=image, reporter=reporter)
    if not target.exists():
        raise InputError(
            f"bundle or folder not found: {target}",
            "pass a bundle file or a folder that goldmaster restore wrote",
        )
    # Imported here because restore runs checks too.
    from .restore import RestoreOptions, restore

    options = RestoreOptions(env=not image, image=image)
    with _work_folder(tmpdir) as folder:
        dest = Path(folder) / "restored"
        result = restore(target, dest, options, reporter)
        image_ref = result.stages["image"]["id"] if image else None
        report = run_checks(
            dest, result.manifest, image=image, image_ref=image_ref, reporter=reporter
        )
    report.bundle = target
    return report


def _work_folder(tmpdir: Path | None) -> tempfile.TemporaryDirectory[str]:
    """Create the temporary folder that a bundle is restored into for checking."""
    if tmpdir is not None and not tmpdir.is_dir():
        kind = "is not a folder" if tmpdir.exists() else "not found"
        raise InputError(
            f"--tmpdir {tmpdir} {kind}", "create the folder first or pass another one"
        )
    try:
        return tempfile.TemporaryDirectory(prefix="goldmaster-check-", dir=tmpdir)
    except OSError as exc:
        where = tmpdir or Path(tempfile.gettempdir())
        raise OutputError(
            f"cannot create a temporary folder in {where}: {exc.strerror or exc}",
            "pass --tmpdir with a folder that you can write to",
        ) from exc


def run_checks(
    dest: Path,
    manifest: dict[str, Any] | None = None,
    *,
    image: bool = False,
    image_ref: str | None = None,
    reporter: Reporter | None = None,
    environ: Mapping[str, str] | None = None,
) -> CheckReport:
    """Run every recorded check in the restored folder ``dest`` and compare.

    The commands run in ``dest/code/SUBDIR`` with ``dest/weights`` as the
    model folder and ``dest/.venv`` as the Python environment when it
    exists, else as for capture. With ``image`` they run in a container of
    ``image_ref``, by default the bundle's image as find_bundle_image finds
    it, with ``dest/weights`` mounted when the image was built without the
    weights. A check that times out, cannot start or exits with another
    status than recorded fails.
    """
    reporter = reporter or Reporter()
    environ = dict(os.environ if environ is None else environ)
    manifest = manifest if manifest is not None else read_restored_manifest(dest)
    items = (manifest.get(SECTION) or {}).get("items") or []
    runner: _LocalRunner | _ImageRunner
    if image or image_ref:
        runner = _image_runner(dest, manifest, image_ref)
        where: dict[str, Any] = runner.describe()
    else:
        context = restored_context(dest, manifest, environ)
        runner = _LocalRunner(context, environ)
        where = context.describe()
    outcomes = []
    for item in items:
        reporter.step(f"running check {item['name']}")
        outcomes.append(_run_recorded(dest, item, runner))
    return CheckReport(dest, where, outcomes)


def read_restored_manifest(dest: Path) -> dict[str, Any]:
    path = dest / "manifest.yaml"
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(
            f"not a restored bundle: {path} not found",
            "pass a bundle, or a folder that goldmaster restore wrote",
        ) from exc
    return manifest_module.load(raw)


def restored_context(
    dest: Path, manifest: dict[str, Any], environ: Mapping[str, str]
) -> RunContext:
    """Return where checks run in a restored folder."""
    dest = dest.absolute()
    subdir = _code_subdir(manifest)
    weights = dest / "weights"
    model = manifest.get("model") or {}
    model_path = (
        weights / model["source_name"] if model.get("kind") == "file" else weights
    )
    venv: Path | None = dest / ".venv"
    bin_dir: Path | None
    if venv is not None and venv.is_dir():
        bin_dir = venv / "bin"
    else:
        bin_dir, venv = find_python(None, environ)
    return RunContext(dest / "code" / subdir, weights, model_path, bin_dir, venv)


class _LocalRunner:
    def __init__(self, context: RunContext, environ: Mapping[str, str]) -> None:
        self.context = context
        self.environ = environ

    def run(self, check: CheckCommand) -> CheckRun:
        return run_command(check, self.context, self.environ)


class _ImageRunner:
    def __init__(
        self, image: str, subdir: str, model_file: str | None, weights: Path | None
    ) -> None:
        self.image = image
        self.subdir = subdir
        self.model_file = model_file
        self.weights = weights

    def run(self, check: CheckCommand) -> CheckRun:
        return run_in_image_command(
            check, self.image, self.subdir, self.model_file, self.weights
        )

    def describe(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "weights_mount": str(self.weights) if self.weights else None,
        }


def _image_runner(
    dest: Path, manifest: dict[str, Any], image_ref: str | None
) -> _ImageRunner:
    section = manifest.get("image") or {}
    if image_ref is None:
        if not section.get("built"):
            raise UsageError(
                "the bundle records no container image",
                "run goldmaster check without --image",
            )
        image_ref = find_bundle_image(dest, manifest)
    model = manifest.get("model") or {}
    model_file = model.get("source_name") if model.get("kind") == "file" else None
    mounted = section.get("weights") == "mounted"
    weights = (dest / "weights").absolute() if mounted else None
    return _ImageRunner(image_ref, _code_subdir(manifest), model_file, weights)


def _code_subdir(manifest: dict[str, Any]) -> str:
    """Return the code folder's path inside ``code/``, rejecting paths that leave it."""
    subdir = str((manifest.get("code") or {}).get("subdir") or "")
    pure = PurePosixPath(subdir)
    if pure.is_absolute() or ".." in pure.parts:
        raise VerificationError(f"invalid code subdir {subdir!r} in manifest.yaml")
    return pure.as_posix() if subdir else ""


def _run_recorded(
    dest: Path, item: dict[str, Any], runner: _LocalRunner | _ImageRunner
) -> CheckOutcome:
    spec = spec_from_manifest(item)
    recording = read_recording(dest, item)
    run = runner.run(spec.command_spec())
    outcome = CheckOutcome(
        name=spec.name,
        command=spec.command,
        status=run.status,
        reason=run.reason,
        duration=run.duration,
        exit_status=run.exit_status,
        stderr_tail=run.stderr_tail,
        deterministic_at_capture=bool(item.get("deterministic", True)),
    )
    if run.status in (TIMED_OUT, NOT_STARTED):
        return outcome
    if run.exit_status != recording.exit_status:
        outcome.status = FAILED
        outcome.reason = f"{describe_exit(run.exit_status)}, recorded {describe_exit(recording.exit_status)}"
        return outcome
    outcome.comparisons = compare_run(spec, recording, run)
    outcome.status, outcome.reason = _overall(outcome.comparisons)
    return outcome


def _overall(comparisons: dict[str, Comparison]) -> tuple[str, str]:
    failing = [(name, c) for name, c in comparisons.items() if not c.passed]
    if failing:
        name, comparison = failing[0]
        return DIFFERENT, f"{name}: {comparison.summary}"
    tolerant = [
        (name, c) for name, c in comparisons.items() if c.status == WITHIN_TOLERANCE
    ]
    if tolerant:
        largest_abs = max(c.max_abs_diff or 0.0 for _, c in tolerant)
        largest_rel = max(c.max_rel_diff or 0.0 for _, c in tolerant)
        return (
            WITHIN_TOLERANCE,
            f"max abs diff {largest_abs:.3g}, max rel diff {largest_rel:.3g}",
        )
    return IDENTICAL, ""


def spec_from_manifest(item: dict[str, Any]) -> CheckSpec:
    """Rebuild a check definition from its manifest entry."""
    return CheckSpec(
        name=str(item["name"]),
        command=str(item["command"]),
        outputs=[check_output_path(str(path)) for path in item.get("outputs") or []],
        rtol=item.get("rtol"),
        atol=item.get("atol"),
        timeout=float(item.get("timeout") or DEFAULT_TIMEOUT),
    )


def read_recording(dest: Path, item: dict[str, Any]) -> Recording:
    """Read a check's recorded stdout and output files from a restored folder,
    checking each against its digest in the manifest."""
    stdout = _read_member(dest, item["stdout"])
    outputs = {
        entry["path"]: _read_member(dest, entry) for entry in item.get("files") or []
    }
    return Recording(int(item.get("exit_status") or 0), stdout, outputs)


def _read_member(dest: Path, entry: dict[str, Any]) -> bytes:
    member = PurePosixPath(str(entry["member"]))
    if member.is_absolute() or ".." in member.parts:
        raise VerificationError(
            f"invalid recorded output path {str(member)!r} in manifest.yaml"
        )
    path = dest / member
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"recorded check output missing: {path}",
            "restore the bundle again into an empty folder",
        ) from exc
    if hashlib.sha256(content).hexdigest() != entry.get("sha256"):
        raise VerificationError(
            f"recorded check output {path} does not match its sha256 in manifest.yaml",
            "restore the bundle again into an empty folder",
        )
    return content
