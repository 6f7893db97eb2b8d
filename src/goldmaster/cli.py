"""The goldmaster entry point.

This module imports nothing heavy at load time, so that ``main`` can handle
SIGTERM before click, rich and the command modules are imported, which takes
most of a second. The command group lives in ``goldmaster.app``; ``cli`` here
is the same object, imported on first use.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

# Same exit status and message as a SIGTERM inside a command (commands/common.py).
EXIT_TERMINATED = 143
TERMINATED_MESSAGE = "Error: terminated; nothing was left half-written\n"


def _terminated_at_startup(signum: int, frame: FrameType | None) -> None:
    # Nothing has been written yet, so the message holds.
    sys.stderr.write(TERMINATED_MESSAGE)
    sys.stderr.flush()
    raise SystemExit(EXIT_TERMINATED)


def main() -> None:
    """Run the goldmaster command line, exiting with 143 on SIGTERM at any point."""
    signal.signal(signal.SIGTERM, _terminated_at_startup)
    from .app import cli

    cli()


def __getattr__(name: str) -> Any:
    if name == "cli":
        from .app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
