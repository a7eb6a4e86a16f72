"""Lazy public names for a package's ``__init__`` (PEP 562): ``import medimg`` and its sub-packages stay light,
and each name imports its module on first access.

Written here rather than taken from scientific-python's ``lazy_loader`` because that package is not a runtime
dependency and this is the whole of what medimg needs: a name -> module table, one ``__getattr__`` and one
``__dir__`` per package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(
    package: str, table: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps each lazy name to the module that defines it;
    ``public`` is the package's ``__all__``."""
    names = sorted(public)

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
