"""The metrics medimg reports, as entries: the one list that validation, ``medimg evaluate`` and the summaries
iterate, so that adding a metric is one entry here (plus its field in :class:`~medimg.metrics.ClassScores`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METRICS", "VALIDATION_METRICS", "MetricSpec", "metric"]


@dataclass(frozen=True)
class MetricSpec:
    """One reported metric.

    Attributes:
        name: the :class:`~medimg.metrics.ClassScores` field, also the CSV column and the logged name
            (``val/<name>_class<c>``).
        unit: ``""`` for a ratio, ``"mm"``, ``"mL"``.
        higher_is_better: the direction (Dice: higher; distances: lower).
        description: one line for tables and help texts.
    """

    name: str
    unit: str
    higher_is_better: bool
    description: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("dice", "", True, "Dice similarity coefficient"),
    MetricSpec("iou", "", True, "intersection over union (Jaccard)"),
    MetricSpec("hd_mm", "mm", False, "Hausdorff distance (maximum)"),
    MetricSpec("hd95_mm", "mm", False, "95th-percentile Hausdorff distance, max of the two directed P95"),
    MetricSpec("masd_mm", "mm", False, "mean of the two directed mean surface distances"),
    MetricSpec("assd_mm", "mm", False, "mean surface distance over both surfaces' voxels"),
    MetricSpec("nsd", "", True, "normalised surface distance (surface Dice) at the class's tolerance"),
    MetricSpec("volume_error_ml", "mL", False, "predicted minus reference volume"),
    MetricSpec("relative_volume_error", "", False, "(predicted - reference) / reference volume"),
)


def metric(name: str) -> MetricSpec:
    """The entry of :data:`METRICS` called ``name``."""
    for spec in METRICS:
        if spec.name == name:
            return spec
    raise KeyError(f"no metric {name!r}; known: {', '.join(s.name for s in METRICS)}")


#: What validation and test log per class (``val/<name>_class<c>``), per site and as the best-worst site gap, on
#: the preprocessed grid in mm (:class:`medimg.tasks.segmentation.SegmentationTask`): one entry per metric.
VALIDATION_METRICS: tuple[MetricSpec, ...] = (metric("dice"), metric("hd95_mm"), metric("nsd"))
