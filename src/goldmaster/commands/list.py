"""goldmaster list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ..catalog import Catalog, CatalogEntry, list_folder, list_repository
from ..console import human_bytes, make_console, print_json
from ..errors import EXIT_FAILED
from ..ociref import is_reference
from ..progress import Reporter
from .common import output_options
from .remote import insecure_option

# Line width for a table written to a pipe or file, wide enough for any row.
PIPE_WIDTH = 1000


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
    if not console.is_terminal:
        # Rich assumes 80 columns for a pipe or file and would cut cells, so
        # the table gets the width it needs there.
        console.width = PIPE_WIDTH
    if not catalog.entries:
        console.print(f"no golden masters in {catalog.source}", markup=False)
        return
    table = Table(box=None, pad_edge=False)
    # The file or tag tells apart rows that share a name and version.
    first = "TAG" if catalog.kind == "registry" else "FILE"
    table.add_column(first, no_wrap=True, min_width=_widest_key(catalog))
    for column in ("NAME", "VERSION", "CREATED", "SIZE", "MODEL DIGEST", "SIDECAR"):
        table.add_column(column, justify="right" if column == "SIZE" else "left", no_wrap=True)
    for entry in catalog.entries:
        row = [
            entry.name or "-",
            entry.version or "-",
            entry.created or "-",
            human_bytes(entry.size),
            _short(entry.model_digest),
            entry.sidecar if entry.error is None else f"error: {entry.error}",
        ]
        row.insert(0, _row_key(catalog, entry))
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def _widest_key(catalog: Catalog) -> int:
    """Return the width of the longest tag or file name, so that it is not cut."""
    keys = [_row_key(catalog, entry) for entry in catalog.entries]
    return max(len(key) for key in keys)


def _row_key(catalog: Catalog, entry: CatalogEntry) -> str:
    if catalog.kind == "registry":
        return entry.tag or "-"
    return Path(entry.location).name


def _short(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "-"
