"""How long-running library calls report progress without printing."""

from __future__ import annotations


class Reporter:
    """Receives progress from the library. This base class ignores everything;
    the CLI passes one that draws a progress bar or writes step lines."""

    def step(self, message: str) -> None:
        """Start a named step, such as hashing or building an image."""

    def notice(self, message: str) -> None:
        """Report something the user should know that is not an error."""

    def start(self, total: int, label: str) -> None:
        """Begin counting ``total`` bytes."""

    def advance(self, count: int) -> None:
        """Count ``count`` more bytes done."""

    def finish(self) -> None:
        """End the byte count begun by :meth:`start`."""
