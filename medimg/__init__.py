"""medimg: a Jupyter-first medical imaging research workspace.

Importing medimg is cheap and has no side effects: no logging configuration, no downloads, no environment
changes, and neither torch nor MONAI is imported until a function needs them. The public names below are
resolved lazily on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medimg._lazy import attach
from medimg._version import __version__
from medimg.errors import MedimgError

__all__ = ["MedimgError", "Volume", "__version__", "load", "scan"]

# public name -> module that defines it; imported on first attribute access (PEP 562)
_LAZY = {
    "Volume": "medimg.io.volume",
    "load": "medimg.io.load",
    "scan": "medimg.io.dicom.scan",
}

if TYPE_CHECKING:  # pragma: no cover
    from medimg.io.dicom.scan import scan
    from medimg.io.load import load
    from medimg.io.volume import Volume

__getattr__, __dir__ = attach(__name__, _LAZY, __all__)
