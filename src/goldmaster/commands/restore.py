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
@click.option("--check", is_flag=True, help="Re-run the golden-output checks after restoring; exit status 1 when one fails.")
@output_options
def restore_command(bundle: Path, dest: Path, as_json: bool, reporter: Reporter, **kwargs: Any) -> None:
    """Verify BUNDLE while extracting it into DEST, then rebuild what it records."""
    options = RestoreOptions(
        force=kwargs["force"], keep_partial=kwargs["keep_partial"], check=kwargs["check"]
    )
    result = restore(bundle, dest, options, reporter)
    checks = result.stages.get("checks")
    if as_json:
        print_json(result.to_json())
    else:
        click.echo(f"restored {result.files} files, {human_bytes(result.bytes)}, into {result.dest}")
        if checks is not None:
            echo_check_report(checks)
    if checks is not None and not checks["passed"]:
        sys.exit(EXIT_FAILED)
