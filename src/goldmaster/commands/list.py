"""goldmaster list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ..catalog import Catalog, list_folder, list_repository
from ..console import human_bytes, make_console, print_json
from ..errors import EXIT_FAILED
from ..ociref import is_reference
from ..progress import Reporter
from .common import output_options
from .remote import insecure_option


@click.command()
@click.argument("source", metavar="DIR|REGISTRY/REPOSITORY")
@click.option(
    "--no-hash",
    is_flag=True,
    help="Do not hash local bundles to check their .sha256 files (faster for large ones).",
)
@insecure_option
@output_options
def list_command(source: str, as_json: bool, reporter: Reporter, **kwargs: Any) -> None:
    """List the golden masters in a folder or a registry repository.

    Shows name, version, creation time, size, model digest (sha256 over the
    weights' checksums) and whether each .sha256 file matches. Exit status 1
    when a sidecar does not match or a bundle cannot be read.
    """
    if is_reference(source):
        catalog = list_repository(
            source, insecure=kwargs["insecure"], reporter=reporter
        )
    else:
        catalog = list_folder(Path(source), check_sidecar=not kwargs["no_hash"])
    if as_json:
        print_json(catalog.to_json())
    else:
        _render(catalog)
    if not catalog.ok:
        sys.exit(EXIT_FAILED)


def _render(catalog: Catalog) -> None:
    console = make_console(sys.stdout)
    if not catalog.entries:
        console.print(f"no golden masters in {catalog.source}", markup=False)
        return
    table = Table(box=None, pad_edge=False)
    if catalog.kind == "registry":
        table.add_column("TAG")
    for column in ("NAME", "VERSION", "CREATED", "SIZE", "MODEL DIGEST", "SIDECAR"):
        table.add_column(column, justify="right" if column == "SIZE" else "left")
    for entry in catalog.entries:
        row = [
            entry.name or "-",
            entry.version or "-",
            entry.created or "-",
            human_bytes(entry.size),
            _short(entry.model_digest),
            entry.sidecar if entry.error is None else f"error: {entry.error}",
        ]
        if catalog.kind == "registry":
            row.insert(0, entry.tag or "-")
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def _short(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "-"
