"""goldmaster verify."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..console import human_bytes, plural, print_json
from ..errors import EXIT_FAILED
from ..ociref import is_reference
from ..progress import Reporter
from ..verify import read_manifest, verify
from .common import output_options
from .remote import insecure_option

if TYPE_CHECKING:
    from ..signing import SignatureCheck


@click.command()
@click.argument("bundle", metavar="BUNDLE|REGISTRY/REPOSITORY:TAG")
@click.option("--key", "key_path", type=click.Path(path_type=Path), help="Ed25519 public key (PEM): also check the bundle's signature.")
@click.option("--signature", type=click.Path(path_type=Path), help="Signature file; default: BUNDLE.sig.json.")
@insecure_option
@output_options
def verify_command(bundle: str, as_json: bool, reporter: Reporter, **kwargs: Any) -> None:
    """Re-hash every file of BUNDLE and compare with its manifest, SHA256SUMS
    and .sha256 file, and with --key its signature. A registry reference is
    pulled into a temporary folder, checked against its digests and verified.

    Exit status 1 when a member's size or sha256 differs from the manifest, a
    member is missing or unlisted, SHA256SUMS or the .sha256 file does not
    match, or the .sha256 file exists but is unreadable or contains no sha256. Exit status 2 for an unsafe member (a path
    outside the bundle, a link, a device) or unreadable input (not zstd,
    truncated, a corrupt stream, not a bundle)."""
    # The registry client and the cryptography package are imported only
    # when needed: importing them takes longer than reading a manifest.
    verifier = None
    if kwargs["key_path"]:
        from ..signing import load_verifier

        verifier = load_verifier(kwargs["key_path"])
    signature = None
    if is_reference(bundle):
        if verifier is not None:
            raise click.UsageError("--key works on a local bundle; pull it first")
        from ..registry import verify_remote

        report = verify_remote(bundle, insecure=kwargs["insecure"], reporter=reporter)
    else:
        path = Path(bundle)
        reporter.step(f"verifying {path.name}")
        total = sum(entry["size"] for entry in read_manifest(path)["files"])
        reporter.start(total, "verifying")
        try:
            report = verify(path, reporter.advance)
        finally:
            reporter.finish()
        if verifier is not None:
            from ..signing import check_signature

            signature = check_signature(path, report, verifier, kwargs["signature"])
    if as_json:
        extra = {"signature": signature.to_json()} if signature else {}
        print_json(report.to_json() | extra)
    else:
        for item in report.mismatched:
            click.echo(f"MISMATCH  {item.path}  expected {item.expected}, got {item.actual}")
        for member in report.missing:
            click.echo(f"MISSING   {member}")
        for member in report.extra:
            click.echo(f"EXTRA     {member}")
        for member in report.sums_mismatched:
            # The walk lists SHA256SUMS itself when the bundle has no such member.
            if member == "SHA256SUMS":
                click.echo("SHA256SUMS is missing")
            else:
                click.echo(f"SHA256SUMS disagrees on {member}")
        if report.sidecar == "mismatch":
            click.echo(f"SIDECAR   {Path(bundle).name}.sha256 does not match the bundle")
        if report.sidecar == "invalid":
            click.echo(
                f"SIDECAR   {Path(bundle).name}.sha256 is invalid: {report.sidecar_problem}; "
                "rewrite it with `sha256sum BUNDLE > BUNDLE.sha256` once the bundle verifies"
            )
        if signature is not None:
            _echo_signature(signature)
        status = "OK" if report.ok and (signature is None or signature.ok) else "FAILED"
        click.echo(
            f"{status}  {bundle}  {plural(report.files, 'file')}, {human_bytes(report.bytes)}, "
            f"sidecar {report.sidecar}"
        )
    if not report.ok or (signature is not None and not signature.ok):
        sys.exit(EXIT_FAILED)


def _echo_signature(signature: SignatureCheck) -> None:
    for problem in signature.problems:
        click.echo(f"SIGNATURE {problem}")
    if signature.ok:
        click.echo(f"SIGNED    by {signature.signer}, {signature.subjects} subjects match")
