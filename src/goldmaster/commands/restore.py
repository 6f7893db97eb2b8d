"""goldmaster restore."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..console import human_bytes, print_json
from ..errors import EXIT_FAILED
from ..progress import Reporter
from ..restore import RestoreOptions, restore
from .check import echo_check_report
from .common import output_options


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Restore into a folder that is not empty, replacing what the bundle contains.")
@click.option("--keep-partial", is_flag=True, help="On failure, keep what was extracted in a marked folder.")
@click.option("--strict-host", is_flag=True, help="Exit with status 1 when this host cannot run what the bundle captured (a host finding of severity error).")
@click.option("--env/--no-env", default=True, show_default=True, help="Rebuild the Python environment at DEST/.venv.")
@click.option("--python", help="Interpreter for DEST/.venv; default: one of the captured major.minor version.")
@click.option("--no-index", "no_index", is_flag=True, help="Install only from the bundle's vendored wheels, with no network.")
@click.option("--image", is_flag=True, help="Load the bundle's container image into the engine (or build it from its Dockerfile), tag it and smoke-test it.")
@click.option("--check", is_flag=True, help="Re-run the golden-output checks after restoring, in the restored image with --image, else in DEST/.venv; exit status 1 when one fails.")
@output_options
def restore_command(bundle: Path, dest: Path, as_json: bool, reporter: Reporter, **kwargs: Any) -> None:
    """Verify BUNDLE while extracting it into DEST, then rebuild what it records.

    Exit status 1 when a member's size or sha256 differs from the manifest (as
    in verify) or a check fails. Exit status 2 for an unsafe member (a path
    outside the bundle, a link, a device), unreadable input (not zstd,
    truncated, a corrupt stream, not a bundle) or an unusable DEST."""
    options = RestoreOptions(
        force=kwargs["force"],
        keep_partial=kwargs["keep_partial"],
        strict_host=kwargs["strict_host"],
        env=kwargs["env"],
        python=kwargs["python"],
        offline=True if kwargs["no_index"] else None,
        image=kwargs["image"],
        check=kwargs["check"],
    )
    result = restore(bundle, dest, options, reporter)
    checks = result.stages.get("checks")
    if as_json:
        print_json(result.to_json())
    else:
        click.echo(f"restored {result.files} files, {human_bytes(result.bytes)}, into {result.dest}")
        environment = result.stages.get("environment")
        if environment:
            click.echo(environment_summary(environment))
        if checks is not None:
            echo_check_report(checks)
    if checks is not None and not checks["passed"]:
        sys.exit(EXIT_FAILED)

    image = result.stages.get("image")
    # The JSON object above already contains the image stage.
    if image and not as_json:
        click.echo(
            f"image {image['tags'][0]} {image['origin']} ({image['id'][:19]}), "
            f"imports checked with Python {image['smoke_test']['python']}"
        )
        click.echo(f"run it with: {image['run_command']}")


def environment_summary(stage: dict[str, Any]) -> str:
    """Describe the rebuilt environment and each difference from the capture."""
    if stage.get("python") is None:
        return f"environment not rebuilt; run {stage['conda']['script']} to create it"
    differences = stage["differences"]
    header = (
        f"environment: {stage['python']} (Python {stage['python_version']}, "
        f"installed {stage['mode']}), {len(differences)} differences from the capture"
    )
    lines = [header]
    for item in differences:
        note = f" ({item['note']})" if item.get("note") else ""
        lines.append(
            f"  {item['name']}: {item['field']} {item['captured']} -> {item['restored']}{note}"
        )
    return "\n".join(lines)
