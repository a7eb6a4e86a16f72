"""Where training patches are centred: nnU-Net's class-balanced foreground sampling, as a MONAI dict transform.

MONAI's ``RandCropByPosNegLabeld`` centres a foreground patch on any foreground voxel, so in a case with a large
organ and a small lesion inside it nearly every foreground patch lands in the organ (a lesion of 1 % of the
foreground voxels gets ~1 % of them). nnU-Net (``nnUNetDataLoader.get_bbox`` with
``class_locations``) instead draws a class uniformly among the foreground classes present in the case, then a voxel
of that class. :class:`RandCropByClassesd` does the same: a share ``foreground_share`` of the patches is split
equally among the foreground classes the case holds (absent classes get none, so the foreground share does not
shrink when a case lacks a class), the rest is centred on background voxels brighter than ``image_threshold``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import RandCropByLabelClassesd
from monai.transforms.utils import generate_label_classes_crop_centers

__all__ = ["RandCropByClassesd", "class_indices", "class_ratios"]


def class_ratios(present: Sequence[bool], foreground_share: float) -> list[float]:
    """Crop-centre ratios per class (background first) for a case: ``foreground_share`` split equally among the
    present foreground classes (``present[1:]``), ``1 - foreground_share`` for background; a side with nothing to
    sample from passes its share to the other.

    >>> class_ratios([True, True, True], 1 / 3)  # background, organ, lesion
    [0.6666666666666667, 0.16666666666666666, 0.16666666666666666]
    """
    if not 0.0 <= foreground_share <= 1.0:
        raise ValueError(f"foreground_share must be in [0, 1], got {foreground_share}")
    n_fg = sum(bool(p) for p in present[1:])
    fg = foreground_share if present[0] else 1.0
    fg = fg if n_fg else 0.0
    return [1.0 - fg if present[0] else 0.0, *((fg / n_fg if p else 0.0) for p in present[1:])]


def class_indices(
    label: torch.Tensor, num_classes: int, image: torch.Tensor | None, image_threshold: float
) -> list[np.ndarray[Any, np.dtype[np.int64]]]:
    """Flat voxel indices of each class of a (1, x, y, z) label, background first. Foreground classes keep all
    their voxels; background only those where ``image`` (any channel) is above ``image_threshold`` (as
    ``RandCropByPosNegLabeld`` restricts its negative samples)."""
    lab = np.asarray(label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else label)[0].ravel()
    out = [np.flatnonzero(lab == c) for c in range(num_classes)]
    if image is not None:
        img = np.asarray(image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image)
        valid = (img > image_threshold).any(0).ravel()
        out[0] = np.flatnonzero((lab == 0) & valid)
    return out


class RandCropByClassesd(RandCropByLabelClassesd):
    """``num_samples`` patches of ``spatial_size`` from ``keys``, centred by :func:`class_ratios`'s rule (see the
    module docstring). MONAI's ``RandCropByLabelClassesd`` does the cropping (and its metadata); only the choice
    of centres differs: MONAI's ratios are fixed at construction and an absent class's share goes to every other
    class, background included, while here they are computed per case."""

    def __init__(
        self,
        keys: Sequence[Hashable],
        label_key: str,
        spatial_size: Sequence[int],
        num_classes: int,
        foreground_share: float = 1 / 3,
        num_samples: int = 1,
        image_key: str | None = None,
        image_threshold: float = 0.0,
    ) -> None:
        super().__init__(
            keys, label_key, spatial_size, num_classes=num_classes, num_samples=num_samples, image_key=image_key,
            image_threshold=image_threshold, warn=False,
        )  # fmt: skip
        self.num_classes, self.foreground_share, self.threshold = num_classes, foreground_share, image_threshold

    def randomize(
        self, label: torch.Tensor | None = None, indices: Any = None, image: torch.Tensor | None = None
    ) -> None:
        if label is None:
            raise ValueError(f"RandCropByClassesd needs the label under {self.label_key!r}")
        idx = class_indices(label, self.num_classes, image, self.threshold)
        if not any(len(i) for i in idx):
            raise ValueError("no voxel to centre a patch on: the label is empty and no image voxel is above threshold")
        ratios = class_ratios([len(i) > 0 for i in idx], self.foreground_share)
        self.cropper.centers = generate_label_classes_crop_centers(
            self.cropper.spatial_size, self.cropper.num_samples, label.shape[1:], idx, ratios, self.cropper.R,
            allow_smaller=False, warn=False,
        )  # fmt: skip
