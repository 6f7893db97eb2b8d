"""goldmaster verify."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..console import human_bytes, print_json
from ..errors import EXIT_FAILED
from ..ociref import is_reference
from ..progress import Reporter
from ..registry import verify_remote
from ..verify import verify
from .common import output_options
from .remote import insecure_option


@click.command()
@click.argument("bundle", metavar="BUNDLE|REGISTRY/REPOSITORY:TAG")
@insecure_option
@output_options
def verify_command(
    bundle: str, as_json: bool, reporter: Reporter, **kwargs: Any
) -> None:
    """Re-hash every file of BUNDLE and compare with its manifest, SHA256SUMS
    and .sha256 file. A registry reference is pulled into a temporary folder,
    checked against its digests and verified. Exit status 1 on any mismatch."""
    if is_reference(bundle):
        report = verify_remote(bundle, insecure=kwargs["insecure"], reporter=reporter)
    else:
        reporter.step(f"verifying {Path(bundle).name}")
        report = verify(Path(bundle))
    if as_json:
        print_json(report.to_json())
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
            click.echo(f"SIDECAR   {Path(bundle).name}.sha256 does not match the bundle")
        status = "OK" if report.ok else "FAILED"
        click.echo(
            f"{status}  {bundle}  {report.files} files, {human_bytes(report.bytes)}, "
            f"sidecar {report.sidecar}"
        )
    if not report.ok:
        sys.exit(EXIT_FAILED)
