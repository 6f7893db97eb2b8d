"""The goldmaster command line: parses options and calls the library."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

import click

from . import __version__

# Command name -> "module:attribute" under goldmaster.commands.
COMMANDS = {
    "capture": "capture:capture_command",
    "verify": "verify:verify_command",
    "inspect": "inspect:inspect_command",
    "restore": "restore:restore_command",
    "doctor": "doctor:doctor_command",
    "push": "push:push_command",
    "pull": "pull:pull_command",
    "diff": "diff:diff_command",
    "list": "list:list_command",
    "sign": "sign:sign_command",
    "keygen": "keygen:keygen_command",
}


class _LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands, each imported when it is first looked up.

    Importing every command pulls in the Docker SDK, the registry client and
    cryptography, which costs about 0.3 s, so that a quick command such as
    inspect imports only what it uses.
    """

    def __init__(self, lazy: dict[str, str]) -> None:
        self._lazy = dict(lazy)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module, attribute = self._lazy[name].split(":")
            package = importlib.import_module(f"{__package__}.commands.{module}")
            self._loaded[name] = getattr(package, attribute)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._lazy.pop(name, None)
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._lazy, *self._loaded]))

    def __len__(self) -> int:
        return len(set(self._lazy) | set(self._loaded))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="goldmaster")
def cli() -> None:
    """Archive a trained model with its code, environment, GPU stack and
    container image as one verifiable, reproducible bundle."""


cli.commands = _LazyCommands(COMMANDS)


def main() -> None:
    cli()
