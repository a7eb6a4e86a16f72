"""Overlap scores of label maps held as arrays: the one `dice` the demo, the notebooks, the benchmarks and the
tests share. Validation and ``medimg evaluate`` score with :mod:`medimg.metrics` (distances in mm, the empty-mask
policy); these are quick checks of finished masks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt


def dice(pred: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Dice of two masks of the same shape (any non-zero voxel is foreground); 1.0 when both are empty."""
    p, t = np.asarray(pred) != 0, np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * float((p & t).sum()) / total


def dice_per_class(pred: npt.ArrayLike, truth: npt.ArrayLike, classes: Iterable[int]) -> dict[int, float]:
    """Dice of each label value in `classes` between two label maps (class c = voxels equal to c)."""
    p, t = np.asarray(pred), np.asarray(truth)
    return {int(c): dice(p == c, t == c) for c in classes}
