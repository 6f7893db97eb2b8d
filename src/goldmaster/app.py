"""The goldmaster command group: parses options and calls the library."""

from __future__ import annotations

import click

from . import __version__
from .commands.capture import capture_command
from .commands.check import check_command
from .commands.diff import diff_command
from .commands.doctor import doctor_command
from .commands.inspect import inspect_command
from .commands.keygen import keygen_command
from .commands.list import list_command
from .commands.pull import pull_command
from .commands.push import push_command
from .commands.restore import restore_command
from .commands.sign import sign_command
from .commands.verify import verify_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="goldmaster")
def cli() -> None:
    """Archive a trained model with its code, environment, GPU stack and
    container image as one verifiable, reproducible bundle."""


cli.add_command(capture_command, "capture")
cli.add_command(verify_command, "verify")
cli.add_command(inspect_command, "inspect")
cli.add_command(restore_command, "restore")
cli.add_command(doctor_command, "doctor")
cli.add_command(push_command, "push")
cli.add_command(pull_command, "pull")
cli.add_command(diff_command, "diff")
cli.add_command(list_command, "list")
cli.add_command(check_command, "check")
cli.add_command(sign_command, "sign")
cli.add_command(keygen_command, "keygen")
