"""goldmaster doctor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import manifest as manifest_mod
from ..console import make_console, print_json, render_findings, render_system
from ..doctor import ERROR, WARNING, compare_host, enforce
from ..errors import InputError, UsageError
from ..gpu import probe_system
from ..progress import Reporter
from ..verify import read_manifest
from .common import output_options


@click.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option(
    "--strict",
    is_flag=True,
    help="Exit with status 1 when a finding has severity error; by default findings only warn.",
)
@click.option(
    "--python",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Interpreter whose CUDA libraries and Python version to report; default: goldmaster's own.",
)
@output_options
def doctor_command(
    bundle: Path | None,
    strict: bool,
    python: Path | None,
    as_json: bool,
    reporter: Reporter,
    **_: Any,
) -> None:
    """Show this host's system and GPU stack. With BUNDLE, compare it with
    the stack recorded at capture.

    BUNDLE is a bundle file, a folder it was restored into, or its manifest.yaml.
    """
    reporter.step("probing this host")
    # An absolute path, so that a name without a slash is not looked up on PATH.
    host = probe_system(python.absolute() if python else None).data
    if python is not None and host["python"].get("status") == "failed":
        raise UsageError(
            f"cannot run --python {python}: {host['python'].get('reason')}",
            "pass a Python interpreter, for example .venv/bin/python",
        )
    captured = None
    findings = []
    if bundle is not None:
        captured = load_manifest(bundle).get("system")
        if captured is None:
            reporter.notice(
                f"{bundle} records no system section, so there is nothing to compare"
            )
        else:
            findings = compare_host(captured, host)

    if as_json:
        print_json(
            {
                "schema": "goldmaster.doctor/v1",
                "bundle": str(bundle) if bundle is not None else None,
                "host": host,
                "findings": [finding.to_dict() for finding in findings],
                "errors": sum(finding.severity == ERROR for finding in findings),
                "warnings": sum(finding.severity == WARNING for finding in findings),
            }
        )
    else:
        console = make_console(sys.stdout)
        render_system(console, host, "This host")
        if captured is not None:
            render_findings(console, findings)
    enforce(findings, strict)


def load_manifest(path: Path) -> dict[str, Any]:
    """Read the manifest of a bundle file, a restored folder or a manifest.yaml."""
    if path.is_dir():
        path = path / "manifest.yaml"
    if path.name == "manifest.yaml":
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise InputError(
                f"manifest not found: {path}",
                "pass a bundle file, or a folder that goldmaster restore wrote",
            ) from exc
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from exc
        return manifest_mod.load(raw)
    return read_manifest(path)
