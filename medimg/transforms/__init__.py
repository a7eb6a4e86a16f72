"""Named MONAI pipelines (deterministic preprocessing, training augmentation) built from small pieces."""

from medimg.transforms.pipelines import Preprocessing, augmentation, load_transform, preprocessing

__all__ = ["Preprocessing", "augmentation", "load_transform", "preprocessing"]
