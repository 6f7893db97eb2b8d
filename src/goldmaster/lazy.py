"""Modules imported on first attribute access.

The Docker SDK and requests take about 70 ms to import here (measured with
``python -X importtime``), and commands such as ``capture --no-image`` and
``restore --no-image`` never use them. Code names them through a
LazyModule, and type checkers see the real module through an
``if TYPE_CHECKING`` import beside it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A stand-in for the module ``name`` that imports it when an attribute is read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)
