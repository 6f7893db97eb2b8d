"""The goldmaster command group: parses options and calls the library.

Each command's module is imported when that command runs, not before: the
modules behind capture, push and check pull in the Docker SDK and the
registry client, which ``inspect`` and ``verify`` do not need.
"""

from __future__ import annotations

import importlib

import click

from . import __version__

# Command name -> module under goldmaster.commands that defines
# ``<module>_command``, in the order that ``--help`` lists them.
COMMANDS = {
    "capture": "capture",
    "verify": "verify",
    "inspect": "inspect",
    "restore": "restore",
    "doctor": "doctor",
    "push": "push",
    "pull": "pull",
    "diff": "diff",
    "list": "list",
    "check": "check",
    "sign": "sign",
    "keygen": "keygen",
}


class _LazyGroup(click.Group):
    """A group that imports a command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module_name = COMMANDS[cmd_name]
            module = importlib.import_module(f".commands.{module_name}", __package__)
            self.add_command(getattr(module, f"{module_name}_command"), cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="goldmaster")
def cli() -> None:
    """Archive a trained model with its code, environment, GPU stack and
    container image as one verifiable, reproducible bundle."""
