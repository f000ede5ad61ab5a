"""Optional features and the extra that installs each: a missing one is a one-line hint, not a traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtra", "require"]


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``import module``, or :class:`MissingExtra` naming the ``pip install "dinomed[extra]"`` that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f'{feature} needs the {extra} extra: pip install "dinomed[{extra}]" ({module} is not '
                           "installed)") from None
