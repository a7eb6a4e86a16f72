"""Lesion-wise detection scores: connected components of a prediction matched one-to-one to the reference's.

**Components**: 26-connected foreground regions (``scipy.ndimage.label`` with a full 3x3x3 structure), as
panoptica's default connected-component step.

**Matching rule**: a predicted and a reference component match when their IoU is strictly above
``iou_threshold`` (default 0.1, lenient enough for small lesions whose borders disagree by a voxel); pairs are
taken greedily by decreasing IoU and each component matches at most once. This is the scheme of panoptica's
``NaiveThresholdMatching`` (greedy over IoU-sorted pairs, ``allow_many_to_one=False``); pass ``iou_threshold=0.5``
for its default threshold (a pair at exactly the threshold is where the two may differ).

Sensitivity = matched / reference components, precision = matched / predicted components,
F1 = 2 matched / (reference + predicted). A ratio with nothing to count is 1 (no lesion to miss, or no
prediction to be wrong), so a case with no lesion in either scores 1 everywhere and a case with predictions but
no reference lesion scores precision 0, F1 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = ["DEFAULT_LESION_IOU", "LesionScores", "lesion_scores"]

DEFAULT_LESION_IOU = 0.1


@dataclass(frozen=True)
class LesionScores:
    """Counts and ratios of one class in one case (see the module docstring)."""

    ref_lesions: int
    pred_lesions: int
    matched: int
    sensitivity: float
    precision: float
    f1: float


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


def lesion_scores(pred: npt.ArrayLike, ref: npt.ArrayLike, iou_threshold: float = DEFAULT_LESION_IOU) -> LesionScores:
    """Lesion-wise sensitivity, precision and F1 of two binary masks (non-zero = lesion) of one grid."""
    p, r = np.asarray(pred) != 0, np.asarray(ref) != 0
    if p.shape != r.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {r.shape}")
    structure = np.ones((3,) * p.ndim, dtype=bool)
    lp, n_pred = ndimage.label(p, structure=structure)
    lr, n_ref = ndimage.label(r, structure=structure)
    size_p = np.bincount(lp.ravel(), minlength=n_pred + 1)
    size_r = np.bincount(lr.ravel(), minlength=n_ref + 1)
    both = (lp > 0) & (lr > 0)
    pairs, inter = np.unique(np.stack([lr[both], lp[both]]), axis=1, return_counts=True)
    candidates = []
    for (ir, ip), n in zip(pairs.T.tolist(), inter.tolist(), strict=True):
        iou = n / (size_r[ir] + size_p[ip] - n)
        if iou > iou_threshold:
            candidates.append((iou, ir, ip))
    used_r: set[int] = set()
    used_p: set[int] = set()
    for _, ir, ip in sorted(candidates, reverse=True):
        if ir not in used_r and ip not in used_p:
            used_r.add(ir)
            used_p.add(ip)
    m = len(used_r)
    return LesionScores(
        ref_lesions=int(n_ref),
        pred_lesions=int(n_pred),
        matched=m,
        sensitivity=_ratio(m, n_ref),
        precision=_ratio(m, n_pred),
        f1=_ratio(2 * m, n_ref + n_pred),
    )
