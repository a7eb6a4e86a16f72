"""Segmentation metrics a reviewer can trust: distances in mm on the label's grid, one empty-mask policy, and
``evaluate`` over folders of predictions and labels.

* :mod:`~medimg.metrics.surface`: the surface rule (foreground voxels with a 6-connected background neighbour)
  and the directed surface distances in mm.
* :mod:`~medimg.metrics.scores`: Dice, IoU, HD, HD95 (max of the two directed 95th percentiles), MASD, ASSD,
  NSD at a tolerance in mm, volume errors in mL, per class and case.
* :mod:`~medimg.metrics.policy`: what each score is when a mask is empty (never NaN in a mean).
* :mod:`~medimg.metrics.record`: :class:`ClassScores`, the scores of one class in one case.
* :mod:`~medimg.metrics.lesions`: lesion-wise sensitivity / precision / F1 from connected components.
* :mod:`~medimg.metrics.catalog`: the list of reported metrics (:data:`METRICS`).
* :mod:`~medimg.metrics.summary` / :mod:`~medimg.metrics.evaluate`: bootstrap summaries, folders, CSV.
"""

from __future__ import annotations

from medimg.metrics.catalog import METRICS, VALIDATION_METRICS, MetricSpec, metric
from medimg.metrics.lesions import LesionScores, lesion_scores
from medimg.metrics.policy import empty_mask_scores, worst_distance_mm
from medimg.metrics.record import ClassScores, Status
from medimg.metrics.scores import DEFAULT_NSD_TOLERANCE_MM, case_scores, class_scores
from medimg.metrics.summary import bootstrap_ci, status_counts, summarize, summary_text
from medimg.metrics.surface import SurfaceDistances, surface_distances, surface_voxels

__all__ = [
    "DEFAULT_NSD_TOLERANCE_MM",
    "METRICS",
    "VALIDATION_METRICS",
    "ClassScores",
    "LesionScores",
    "MetricSpec",
    "Status",
    "SurfaceDistances",
    "bootstrap_ci",
    "case_scores",
    "class_scores",
    "empty_mask_scores",
    "lesion_scores",
    "metric",
    "status_counts",
    "summarize",
    "summary_text",
    "surface_distances",
    "surface_voxels",
    "worst_distance_mm",
]
