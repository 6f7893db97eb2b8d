"""goldmaster verify."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..console import human_bytes, print_json
from ..errors import EXIT_FAILED
from ..progress import Reporter
from ..signing import SignatureCheck, check_signature, load_verifier
from ..verify import verify
from .common import output_options


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--key", "key_path", type=click.Path(path_type=Path), help="Ed25519 public key (PEM): also check the bundle's signature.")
@click.option("--signature", type=click.Path(path_type=Path), help="Signature file; default: BUNDLE.sig.json.")
@output_options
def verify_command(bundle: Path, as_json: bool, reporter: Reporter, **kwargs: Any) -> None:
    """Re-hash every file of BUNDLE and compare with its manifest, SHA256SUMS
    and .sha256 file, and with --key its signature. Exit status 1 on any mismatch."""
    verifier = load_verifier(kwargs["key_path"]) if kwargs["key_path"] else None
    reporter.step(f"verifying {bundle.name}")
    report = verify(bundle)
    signature = None
    if verifier is not None:
        signature = check_signature(bundle, report, verifier, kwargs["signature"])
    if as_json:
        extra = {"signature": signature.to_json()} if signature else {}
        print_json(report.to_json() | extra)
    else:
        for item in report.mismatched:
            click.echo(f"MISMATCH  {item.path}  expected {item.expected}, got {item.actual}")
        for path in report.missing:
            click.echo(f"MISSING   {path}")
        for path in report.extra:
            click.echo(f"EXTRA     {path}")
        for path in report.sums_mismatched:
            click.echo(f"SHA256SUMS disagrees on {path}")
        if report.sidecar == "mismatch":
            click.echo(f"SIDECAR   {bundle.name}.sha256 does not match the bundle")
        if signature is not None:
            _echo_signature(signature)
        status = "OK" if report.ok and (signature is None or signature.ok) else "FAILED"
        click.echo(
            f"{status}  {bundle}  {report.files} files, {human_bytes(report.bytes)}, "
            f"sidecar {report.sidecar}"
        )
    if not report.ok or (signature is not None and not signature.ok):
        sys.exit(EXIT_FAILED)


def _echo_signature(signature: SignatureCheck) -> None:
    for problem in signature.problems:
        click.echo(f"SIGNATURE {problem}")
    if signature.ok:
        click.echo(f"SIGNED    by {signature.signer}, {signature.subjects} subjects match")
