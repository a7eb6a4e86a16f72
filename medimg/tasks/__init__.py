"""LightningModules: one task per file."""

from medimg.tasks.classification import ClassificationTask
from medimg.tasks.segmentation import SegmentationTask

__all__ = ["ClassificationTask", "SegmentationTask"]
