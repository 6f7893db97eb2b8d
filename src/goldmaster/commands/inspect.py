"""goldmaster inspect."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..console import make_console, print_json, render_manifest
from ..ociref import is_reference
from ..progress import Reporter
from ..verify import read_manifest
from .common import output_options
from .remote import insecure_option


@click.command()
@click.argument("bundle", metavar="BUNDLE|REGISTRY/REPOSITORY:TAG")
@insecure_option
@output_options
def inspect_command(
    bundle: str, as_json: bool, reporter: Reporter, **kwargs: Any
) -> None:
    """Show the manifest of BUNDLE, reading only its first member. For a
    registry reference only the small manifest blob is downloaded."""
    digest = None
    if is_reference(bundle):
        # Imported here: the registry client takes longer to import than a
        # local inspect takes to run.
        from ..registry import fetch_remote

        remote = fetch_remote(bundle, insecure=kwargs["insecure"], reporter=reporter)
        manifest, digest = remote.manifest, remote.digest
    else:
        manifest = read_manifest(Path(bundle))
    if as_json:
        print_json(
            {
                "schema": "goldmaster.inspect/v1",
                "bundle": bundle,
                "source": "registry" if digest else "file",
                "digest": digest,
                "manifest": manifest,
            }
        )
        return
    render_manifest(make_console(sys.stdout), manifest)
