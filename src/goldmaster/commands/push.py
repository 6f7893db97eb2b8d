"""goldmaster push."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..console import human_bytes, print_json
from ..progress import Reporter
from ..registry import push
from ..registry_client import DEFAULT_CHUNK_SIZE
from .common import output_options
from .remote import insecure_option


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("reference", metavar="REGISTRY/REPOSITORY[:TAG]")
@insecure_option
@click.option(
    "--image-tag", metavar="TAG", help="Tag for the saved image; default: TAG-image."
)
@click.option(
    "--no-image", is_flag=True, help="Push only the bundle, not its saved image."
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK_SIZE >> 20,
    show_default=True,
    help="Upload chunk size in MiB.",
)
@output_options
def push_command(
    bundle: Path, reference: str, as_json: bool, reporter: Reporter, **kwargs: Any
) -> None:
    """Upload BUNDLE and its .sha256 file to an OCI registry as one artifact.

    TAG defaults to the bundle's version. Credentials come from
    GOLDMASTER_REGISTRY_USERNAME and GOLDMASTER_REGISTRY_PASSWORD, or from the
    Docker config file and its credential helpers.
    """
    result = push(
        bundle,
        reference,
        insecure=kwargs["insecure"],
        image_tag=kwargs["image_tag"],
        push_image=not kwargs["no_image"],
        chunk_size=kwargs["chunk_size"] << 20,
        reporter=reporter,
    )
    if as_json:
        print_json(result.to_json())
        return
    click.echo(
        f"{result.reference}@{result.digest}  {human_bytes(result.size)}  sha256 {result.sha256}"
    )
    if result.image and result.image.get("pushed"):
        click.echo(f"image {result.image['reference']}")
