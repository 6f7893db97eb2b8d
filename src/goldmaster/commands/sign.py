"""goldmaster sign."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..console import print_json
from ..progress import Reporter
from ..signing import load_signer, sign_bundle
from .common import output_options


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "key_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Ed25519 private key (PEM) from goldmaster keygen.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Where to write the signature; default: BUNDLE.sig.json.",
)
@output_options
def sign_command(
    bundle: Path,
    key_path: Path,
    output: Path | None,
    as_json: bool,
    reporter: Reporter,
    **_: Any,
) -> None:
    """Verify BUNDLE, then sign it: write a DSSE envelope over an in-toto
    statement of the bundle's, the manifest's and every file's sha256."""
    signer = load_signer(key_path)
    reporter.step(f"verifying {bundle.name}")
    result = sign_bundle(bundle, signer, output)
    if as_json:
        print_json(result.to_json())
        return
    click.echo(
        f"{result.signature}  signed by {result.signer}, {result.subjects} subjects"
    )
