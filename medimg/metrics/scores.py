"""Per-class scores of one case on the label's grid: overlap, surface distances in mm, NSD, volumes in mL.

Definitions (Metrics Reloaded naming; ``d_pr`` = distances from the prediction's surface voxels to the
reference's surface, ``d_rp`` the other way, see :mod:`medimg.metrics.surface` for the surface rule):

* ``hd_mm``: Hausdorff distance, ``max(max d_pr, max d_rp)``.
* ``hd95_mm``: ``max(P95(d_pr), P95(d_rp))``, the larger of the two directed 95th percentiles, each with numpy's
  default (linear) interpolation. MedPy's ``hd95`` pools both sets before the percentile instead, and so can be
  smaller.
* ``masd_mm``: mean average surface distance, ``(mean d_pr + mean d_rp) / 2`` (the mean of MedPy's two
  directed ``asd``).
* ``assd_mm``: average symmetric surface distance, the mean over the union of both sets,
  ``(sum d_pr + sum d_rp) / (|d_pr| + |d_rp|)`` (MedPy 0.5's ``assd``, MONAI's ``symmetric=True``).
* ``nsd``: normalised surface distance (surface Dice) at ``nsd_tolerance_mm``: the share of both surfaces' voxels
  within the tolerance of the other surface (distance <= tolerance).
* ``volume_error_ml``: ``V_pred - V_ref`` in mL; ``relative_volume_error``: ``(V_pred - V_ref) / V_ref``.

Empty masks follow :func:`medimg.metrics.policy.empty_mask_scores`; no score is NaN except the relative volume
error of a class absent from the reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medimg.metrics.policy import empty_mask_scores, worst_distance_mm
from medimg.metrics.record import MM3_PER_ML, ClassScores
from medimg.metrics.surface import grow, surface_distances

__all__ = ["DEFAULT_NSD_TOLERANCE_MM", "HD_PERCENTILE", "case_scores", "class_scores", "tolerance_of"]

#: NSD tolerance (mm) when none is given for a class: about one voxel of a typical CT/MR training grid.
DEFAULT_NSD_TOLERANCE_MM = 2.0
#: The percentile of HD95.
HD_PERCENTILE = 95.0


def class_scores(
    pred: npt.ArrayLike,
    ref: npt.ArrayLike,
    spacing: Sequence[float],
    *,
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    worst_mm: float | None = None,
) -> ClassScores:
    """Scores of one binary prediction against one binary reference (non-zero = foreground), same grid.

    Args:
        spacing: voxel size in mm, in the arrays' axis order.
        nsd_tolerance_mm: the NSD tolerance.
        worst_mm: the distance of a missed / false-positive class; default the diagonal of these arrays (pass the
            whole image's diagonal when the arrays are a crop of it).
    """
    p, r = np.asarray(pred) != 0, np.asarray(ref) != 0
    if p.shape != r.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {r.shape}")
    voxel_ml = float(np.prod([float(s) for s in spacing])) / MM3_PER_ML
    n_pred, n_ref = int(p.sum()), int(r.sum())
    worst = worst_distance_mm(p.shape, spacing) if worst_mm is None else float(worst_mm)
    empty = empty_mask_scores(n_pred, n_ref, worst_mm=worst, voxel_ml=voxel_ml, nsd_tolerance_mm=nsd_tolerance_mm)
    if empty is not None:
        return empty
    inter = int(np.count_nonzero(p & r))
    d = surface_distances(p, r, spacing)
    both = np.concatenate([d.pred_to_ref, d.ref_to_pred])
    v_pred, v_ref = n_pred * voxel_ml, n_ref * voxel_ml
    return ClassScores(
        dice=2.0 * inter / (n_pred + n_ref),
        iou=inter / (n_pred + n_ref - inter),
        hd_mm=float(max(d.pred_to_ref.max(), d.ref_to_pred.max())),
        hd95_mm=float(max(np.percentile(d.pred_to_ref, HD_PERCENTILE), np.percentile(d.ref_to_pred, HD_PERCENTILE))),
        masd_mm=float((d.pred_to_ref.mean() + d.ref_to_pred.mean()) / 2.0),
        assd_mm=float(both.mean()),
        nsd=float(np.count_nonzero(both <= nsd_tolerance_mm) / both.size),
        volume_pred_ml=v_pred,
        volume_ref_ml=v_ref,
        volume_error_ml=v_pred - v_ref,
        relative_volume_error=(v_pred - v_ref) / v_ref,
        status="present",
        nsd_tolerance_mm=float(nsd_tolerance_mm),
    )


def tolerance_of(nsd_tolerance_mm: float | Mapping[int, float], label: int) -> float:
    """The NSD tolerance of class ``label``: the mapping's entry, else :data:`DEFAULT_NSD_TOLERANCE_MM`."""
    if isinstance(nsd_tolerance_mm, Mapping):
        return float(nsd_tolerance_mm.get(label, DEFAULT_NSD_TOLERANCE_MM))
    return float(nsd_tolerance_mm)


def case_scores(
    pred: npt.ArrayLike,
    ref: npt.ArrayLike,
    spacing: Sequence[float],
    classes: Iterable[int] | None = None,
    *,
    nsd_tolerance_mm: float | Mapping[int, float] = DEFAULT_NSD_TOLERANCE_MM,
) -> dict[int, ClassScores]:
    """Scores of each class (label value) between two label maps of one grid (voxel size ``spacing`` in mm);
    ``classes`` default: every non-zero value in either map.

    Each class is measured on the bounding box of its voxels in both maps plus one voxel, found for every class
    in one pass (``scipy.ndimage.find_objects``); the worst distance is the whole image's diagonal.
    """
    p, r = np.asarray(pred), np.asarray(ref)
    if p.shape != r.shape:
        raise ValueError(f"label map shapes differ: {p.shape} vs {r.shape}")
    worst = worst_distance_mm(r.shape, spacing)
    boxes_p, boxes_r = _boxes(p), _boxes(r)
    wanted = sorted(set(boxes_p) | set(boxes_r)) if classes is None else [int(c) for c in classes]
    out: dict[int, ClassScores] = {}
    for c in wanted:
        found = [b for b in (boxes_p.get(c), boxes_r.get(c)) if b is not None]
        if found:
            union = [slice(min(b[i].start for b in found), max(b[i].stop for b in found)) for i in range(r.ndim)]
            box = grow(union, r.shape)
            pc, rc = p[box] == c, r[box] == c
        else:
            pc = rc = np.zeros((1,) * r.ndim, dtype=bool)
        out[c] = class_scores(pc, rc, spacing, nsd_tolerance_mm=tolerance_of(nsd_tolerance_mm, c), worst_mm=worst)
    return out


def _boxes(labels: npt.NDArray[Any]) -> dict[int, tuple[slice, ...]]:
    """Bounding box of every positive label value present in ``labels`` (one pass)."""
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int64)
    if labels.min(initial=0) < 0:
        raise ValueError("label maps hold non-negative integers")
    return {i + 1: b for i, b in enumerate(ndimage.find_objects(labels)) if b is not None}
