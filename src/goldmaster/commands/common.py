"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
import signal
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import click

from ..console import ConsoleReporter, make_console
from ..errors import EXIT_USAGE, GoldmasterError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives, so cleanup code runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def output_options(func: F) -> F:
    """Add --json, --quiet and --verbose, and turn library errors into one
    ``Error:`` line and an exit status."""

    @click.option("--json", "as_json", is_flag=True, help="Print the result as a JSON object on stdout.")
    @click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors and the result.")
    @click.option("-v", "--verbose", is_flag=True, help="Show tracebacks for errors.")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = kwargs.get("verbose", False)
        console = make_console()
        kwargs["reporter"] = ConsoleReporter(console, quiet=kwargs.get("quiet", False), verbose=verbose)
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return func(*args, **kwargs)
        except GoldmasterError as exc:
            _report(console, exc, verbose)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI edge turns any bug into one line
            if verbose:
                console.print("".join(traceback.format_exception(exc)), markup=False, end="")
            console.print(f"Error: unexpected failure: {exc!r}", markup=False)
            if not verbose:
                console.print("Tip: rerun with --verbose to see where it happened", markup=False)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            console.print("Error: interrupted; nothing was left half-written", markup=False)
            sys.exit(EXIT_INTERRUPTED)
        except Terminated:
            console.print("Error: terminated; nothing was left half-written", markup=False)
            sys.exit(EXIT_TERMINATED)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def _report(console: Any, exc: GoldmasterError, verbose: bool) -> None:
    if verbose:
        console.print("".join(traceback.format_exception(exc)), markup=False, end="")
    console.print(f"Error: {exc.message}", markup=False)
    if exc.hint:
        console.print(f"Tip: {exc.hint}", markup=False)
