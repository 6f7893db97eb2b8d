"""goldmaster check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..checks import check_target
from ..console import print_json
from ..errors import EXIT_FAILED
from ..progress import Reporter
from .common import output_options

LABELS = {
    "identical": "IDENTICAL",
    "within_tolerance": "WITHIN TOLERANCE",
    "different": "DIFFERENT",
    "failed": "FAILED",
    "timed_out": "TIMED OUT",
    "not_started": "NOT STARTED",
}
LABEL_WIDTH = max(len(label) for label in LABELS.values())


@click.command()
@click.argument("target", metavar="BUNDLE|DEST", type=click.Path(path_type=Path))
@click.option(
    "--image",
    is_flag=True,
    help="Run the checks in the bundle's container image instead of the restored "
    "virtual environment; the image is loaded into the engine when it is missing.",
)
@click.option(
    "--tmpdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the temporary restore of a bundle; default: the system's "
    "temporary folder.",
)
@output_options
def check_command(
    target: Path,
    image: bool,
    tmpdir: Path | None,
    as_json: bool,
    reporter: Reporter,
    **_: Any,
) -> None:
    """Re-run the golden-output checks of BUNDLE, or of DEST, a folder that
    goldmaster restore wrote, and compare each output with its recording.
    Exit status 1 when any check does not reproduce."""
    report = check_target(target, image=image, tmpdir=tmpdir, reporter=reporter)
    data = report.to_json()
    if as_json:
        print_json(data)
    else:
        echo_check_report(data)
    if not report.passed:
        sys.exit(EXIT_FAILED)


def echo_check_report(report: dict[str, Any]) -> None:
    """Print a check report, as ``CheckReport.to_json`` returns it, on stdout."""
    checks = report["checks"]
    if not checks:
        click.echo("no golden-output checks recorded; capture with --check to add some")
        return
    width = max(len(check["name"]) for check in checks)
    for check in checks:
        _echo_check(check, width)
    passed = sum(1 for check in checks if check["passed"])
    status = "OK" if passed == len(checks) else "FAILED"
    click.echo(f"{status}  {passed} of {len(checks)} checks passed")


def _echo_check(check: dict[str, Any], width: int) -> None:
    label = LABELS.get(check["status"], check["status"].upper())
    line = (
        f"{label:<{LABEL_WIDTH}}  {check['name']:<{width}}  {check['duration']:.1f} s"
    )
    # A differing output's summary is printed under the check, so the
    # headline leaves it out instead of printing it twice.
    listed = any(output["status"] == "different" for output in check["outputs"])
    if check["reason"] and not (check["status"] == "different" and listed):
        line += f"  {check['reason']}"
    if not check["deterministic_at_capture"]:
        line += "  (nondeterministic at capture)"
    click.echo(line)
    for output in check["outputs"]:
        if output["status"] == "different":
            click.echo(f"    {output['output']}: {output['summary']}")
            for diff_line in output["diff"]:
                click.echo(f"      {diff_line}")
    if (
        check["status"] in ("failed", "timed_out", "not_started")
        and check["stderr_tail"]
    ):
        for stderr_line in check["stderr_tail"].splitlines()[-5:]:
            click.echo(f"    stderr: {stderr_line}")
