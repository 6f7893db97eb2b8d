"""The --insecure option shared by the commands that reach a registry."""

from __future__ import annotations

import click

insecure_option = click.option(
    "--insecure",
    is_flag=True,
    help=(
        "Talk to the registry over plain HTTP instead of HTTPS. Allowed only for "
        "loopback addresses (127.0.0.0/8, ::1, localhost) unless the host is listed "
        "in GOLDMASTER_INSECURE_REGISTRIES."
    ),
)
