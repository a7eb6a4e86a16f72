"""Inference: a trained model as one object (:func:`open_model` -> :class:`Model`) and the pipeline it runs --
load, preprocess, sliding windows, Gaussian blending, back to the input's geometry, write.

``medimg segment``, ``explain``, the reading session, ``adapt``, ``export`` and the demo all run this room; it
imports torch and MONAI but never Lightning. ``import medimg.inference`` itself is light: the names below load
their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medimg._lazy import attach

__all__ = ["RECIPE_KEY", "Ensemble", "Model", "Recipe", "file_sha256", "open_ensemble", "open_model", "segment"]

_LAZY = {
    "RECIPE_KEY": "medimg.inference.recipe",
    "Recipe": "medimg.inference.recipe",
    "Model": "medimg.inference.model",
    "file_sha256": "medimg.inference.model",
    "open_model": "medimg.inference.model",
    "segment": "medimg.inference.model",
    "Ensemble": "medimg.inference.ensemble",
    "open_ensemble": "medimg.inference.ensemble",
}

if TYPE_CHECKING:  # pragma: no cover
    from medimg.inference.ensemble import Ensemble, open_ensemble
    from medimg.inference.model import Model, file_sha256, open_model, segment
    from medimg.inference.recipe import RECIPE_KEY, Recipe

__getattr__, __dir__ = attach(__name__, _LAZY, __all__)
