"""Named MONAI pipelines (deterministic preprocessing, training augmentation) built from small pieces."""

from medimg.transforms.pipelines import LoadVolumed, Preprocessing, augmentation, preprocessing

__all__ = ["LoadVolumed", "Preprocessing", "augmentation", "preprocessing"]
