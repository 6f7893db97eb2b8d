"""goldmaster keygen."""

from __future__ import annotations

from typing import Any

import click

from ..console import print_json
from ..progress import Reporter
from ..signing import generate_key_pair, load_verifier
from .common import output_options


@click.command()
@click.option(
    "--out",
    "prefix",
    type=click.Path(),
    required=True,
    help=(
        "Path prefix: writes PREFIX.key (private, mode 0600) and PREFIX.pub. "
        "An existing folder, or a path ending in '/', gets goldmaster.key and "
        "goldmaster.pub inside it."
    ),
)
@click.option("--force", is_flag=True, help="Replace existing key files.")
@output_options
def keygen_command(
    prefix: str, force: bool, as_json: bool, reporter: Reporter, **_: Any
) -> None:
    """Make an Ed25519 key pair for signing bundles. Set GOLDMASTER_KEY_PASSWORD
    to encrypt the private key with a passphrase; setting it to an empty
    value is an error."""
    private_path, public_path = generate_key_pair(prefix, force)
    hint = load_verifier(public_path).hint
    if as_json:
        print_json(
            {
                "schema": "goldmaster.keygen/v1",
                "private_key": str(private_path),
                "public_key": str(public_path),
                "key_hint": hint,
            }
        )
        return
    click.echo(f"private key  {private_path}  (keep it secret)")
    click.echo(f"public key   {public_path}  (hint {hint[:16]})")
