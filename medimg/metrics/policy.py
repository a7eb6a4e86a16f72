"""The empty-mask policy: what every score is when the prediction or the reference of a class is empty.

One function owns it (:func:`empty_mask_scores`), so that no mean ever loses a case to a NaN:

==========================  =====  ===  ==========================================  ===  ===================
prediction / reference      Dice   IoU  HD, HD95, MASD, ASSD (mm)                   NSD  status
==========================  =====  ===  ==========================================  ===  ===================
both empty                  1      1    0                                           1    ``both_empty``
reference only              0      0    the image diagonal (worst possible)         0    ``missed``
prediction only             0      0    the image diagonal (worst possible)         0    ``false_positive``
==========================  =====  ===  ==========================================  ===  ===================

The image diagonal is ``sqrt(sum((n_i * s_i)^2))`` over the label's shape ``n`` and voxel size ``s`` (mm): no two
voxels of the image are further apart, so a missed class scores worse than any prediction that found it.
Volumes are in mL; the relative volume error of a class absent from the reference is undefined (NaN), which the
summary counts openly (its ``n`` column) instead of averaging it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from medimg.metrics.record import ClassScores, Status

__all__ = ["empty_mask_scores", "worst_distance_mm"]


def worst_distance_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The image diagonal in mm: the distance given to a class missed or predicted where there is none."""
    return math.sqrt(sum((int(n) * float(s)) ** 2 for n, s in zip(shape, spacing, strict=True)))


def empty_mask_scores(
    pred_voxels: int,
    ref_voxels: int,
    *,
    worst_mm: float,
    voxel_ml: float,
    nsd_tolerance_mm: float,
) -> ClassScores | None:
    """The scores of a class whose prediction or reference is empty (see the module's table), or ``None`` when
    both hold voxels and the surfaces must be measured."""
    if pred_voxels and ref_voxels:
        return None
    both = not pred_voxels and not ref_voxels
    status: Status = "both_empty" if both else ("missed" if ref_voxels else "false_positive")
    overlap, distance = (1.0, 0.0) if both else (0.0, worst_mm)
    v_pred, v_ref = pred_voxels * voxel_ml, ref_voxels * voxel_ml
    return ClassScores(
        dice=overlap,
        iou=overlap,
        hd_mm=distance,
        hd95_mm=distance,
        masd_mm=distance,
        assd_mm=distance,
        nsd=overlap,
        volume_pred_ml=v_pred,
        volume_ref_ml=v_ref,
        volume_error_ml=v_pred - v_ref,
        relative_volume_error=0.0 if both else (-1.0 if ref_voxels else math.nan),
        status=status,
        nsd_tolerance_mm=nsd_tolerance_mm,
    )
