"""goldmaster inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..console import make_console, print_json, render_manifest
from ..progress import Reporter
from ..verify import read_manifest
from .common import output_options


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@output_options
def inspect_command(bundle: Path, as_json: bool, reporter: Reporter, **_: Any) -> None:
    """Show the manifest of BUNDLE, reading only its first member."""
    manifest = read_manifest(bundle)
    if as_json:
        print_json({"schema": "goldmaster.inspect/v1", "bundle": str(bundle), "manifest": manifest})
        return
    import sys

    render_manifest(make_console(sys.stdout), manifest)
