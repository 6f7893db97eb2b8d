"""What a probe hands to capture: manifest data and files for the bundle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Part:
    """A file to write into a bundle, from disk or from memory.

    ``arcname`` is relative to the bundle's top folder and uses forward
    slashes, for example ``system/nvidia-smi.xml``. Exactly one of
    ``source`` and ``data`` is set: large files stream from ``source``,
    small generated text comes as ``data``.
    """

    arcname: str
    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o644

    def __post_init__(self) -> None:
        if (self.source is None) == (self.data is None):
            raise ValueError(f"part {self.arcname}: set exactly one of source and data")


@dataclass
class Section:
    """One probe's contribution to a capture.

    ``data`` goes into the manifest under the key ``name``; ``parts`` go into
    the bundle; ``notices`` are one-line remarks shown to the user.
    """

    name: str
    data: dict[str, Any]
    parts: list[Part] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
