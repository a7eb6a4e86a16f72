"""The record of one class in one case: every score medimg reports, in the units its field names say."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["MM3_PER_ML", "ClassScores", "Status"]

MM3_PER_ML = 1000.0
#: ``present``: both masks hold voxels; ``both_empty``, ``missed`` (reference only), ``false_positive``
#: (prediction only): see :mod:`medimg.metrics.policy`.
Status = Literal["present", "both_empty", "missed", "false_positive"]


@dataclass(frozen=True)
class ClassScores:
    """The scores of one class in one case; definitions in :mod:`medimg.metrics.scores`, empty masks in
    :mod:`medimg.metrics.policy`. Distances in mm, volumes in mL, ratios in [0, 1] (the relative volume error
    unbounded above)."""

    dice: float
    iou: float
    hd_mm: float
    hd95_mm: float
    masd_mm: float
    assd_mm: float
    nsd: float
    volume_pred_ml: float
    volume_ref_ml: float
    volume_error_ml: float
    relative_volume_error: float
    status: Status
    nsd_tolerance_mm: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
