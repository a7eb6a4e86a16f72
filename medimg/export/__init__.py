"""Exported models: ``medimg export`` (ONNX, ``torch.export`` ``.pt2``) and running them without Lightning.

``medimg.export`` itself imports nothing heavy; :mod:`~medimg.inference.runtime` and
:mod:`~medimg.inference.pipeline` need torch and MONAI but never Lightning, :mod:`~medimg.export.exporter` loads
checkpoints and so does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medimg._lazy import attach
from medimg.inference.recipe import RECIPE_KEY, Recipe

__all__ = ["RECIPE_KEY", "ExportReport", "Recipe", "export_checkpoint", "export_network", "load_exported"]

_LAZY = {
    "ExportReport": "medimg.export.exporter",
    "export_checkpoint": "medimg.export.exporter",
    "export_network": "medimg.export.exporter",
    "load_exported": "medimg.inference.runtime",
}

if TYPE_CHECKING:  # pragma: no cover
    from medimg.export.exporter import ExportReport, export_checkpoint, export_network
    from medimg.inference.runtime import load_exported

__getattr__, __dir__ = attach(__name__, _LAZY, __all__)
