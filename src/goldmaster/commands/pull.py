"""goldmaster pull."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..console import human_bytes, print_json
from ..progress import Reporter
from ..registry import pull
from .common import output_options
from .remote import insecure_option


@click.command()
@click.argument("reference", metavar="REGISTRY/REPOSITORY:TAG")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the bundle and its .sha256 file.",
)
@click.option(
    "--force", is_flag=True, help="Replace a bundle of the same name and version."
)
@click.option(
    "--image",
    is_flag=True,
    help="Also pull the bundle's container image through the engine: the one "
    "push recorded, else TAG-image. Its id must match the bundle's manifest.",
)
@insecure_option
@output_options
def pull_command(
    reference: str, as_json: bool, reporter: Reporter, **kwargs: Any
) -> None:
    """Download a bundle from a registry, check every digest and verify it.

    The bundle appears under its final name only after it passed; the
    reference may name a tag or a digest (@sha256:...).
    """
    result = pull(
        reference,
        kwargs["output"],
        insecure=kwargs["insecure"],
        force=kwargs["force"],
        image=kwargs["image"],
        reporter=reporter,
    )
    if as_json:
        print_json(result.to_json())
        return
    click.echo(
        f"{result.bundle}  {result.report.files} files, {human_bytes(result.size)}, "
        f"sha256 {result.sha256}"
    )
    if result.image:
        click.echo(f"image {result.image['reference']} ({result.image['id'][:19]})")
