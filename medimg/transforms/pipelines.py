"""MONAI pipelines for 3D segmentation: one deterministic preprocessing (cached) and one random augmentation.

The preprocessing is described by a small dataclass, :class:`Preprocessing`, that is saved with every
checkpoint, so ``medimg segment`` applies exactly what training applied.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["LoadVolumed", "Preprocessing", "augmentation", "preprocessing"]


@dataclass(frozen=True)
class Preprocessing:
    """Deterministic preprocessing of a segmentation case.

    Attributes:
        spacing: target voxel size in mm (RAS axis order), e.g. the MONAI spleen tutorial's (1.5, 1.5, 2.0).
        intensity: ``"ct"`` clips to ``ct_window`` (Hounsfield units) and scales it to [0, 1];
            ``"mr"`` z-scores the non-zero voxels; ``"none"`` leaves values alone.
        ct_window: (lower, upper) HU of the CT window.
        crop_foreground: crop to the bounding box of voxels above the window's lower bound (CT) / non-zero.
        patch_size: volumes smaller than this are padded to it, so random patches always fit.
    """

    spacing: tuple[float, float, float] = (1.5, 1.5, 2.0)
    intensity: Literal["ct", "mr", "none"] = "ct"
    ct_window: tuple[float, float] = (-57.0, 164.0)
    crop_foreground: bool = False
    patch_size: tuple[int, int, int] = (96, 96, 96)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`as_dict` (lists from YAML/JSON become tuples)."""
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)


class LoadVolumed:
    """Load ``keys`` with :func:`medimg.io.load` (DICOM folder, DICOM file or NIfTI) into channel-first MetaTensors.

    Hand-written rather than MONAI's ``LoadImaged`` so that DICOM goes through medimg's checked geometry
    (slice order, gaps, tilt) instead of MONAI's reader, which sorts by InstanceNumber.
    """

    def __init__(self, keys: Sequence[str], allow_missing_keys: bool = False) -> None:
        self.keys = tuple(keys)
        self.allow_missing_keys = allow_missing_keys

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai.data import MetaTensor

        from medimg.io import load

        d = dict(data)
        for key in self.keys:
            if key not in d:
                if self.allow_missing_keys:
                    continue
                raise KeyError(key)
            vol = load(d[key])
            array = np.asarray(vol.array)
            if array.ndim == 3:
                array = array[np.newaxis]
            else:  # (i, j, k, c) -> (c, i, j, k)
                array = np.moveaxis(array, -1, 0)
            meta = {"filename_or_obj": str(d[key]), "original_affine": vol.affine, "spatial_shape": vol.shape[:3]}
            d[key] = MetaTensor(
                torch.as_tensor(array.astype(np.float32)), affine=torch.as_tensor(vol.affine), meta=meta
            )
        return d


def preprocessing(p: Preprocessing, keys: Sequence[str] = ("image", "label"), *, load: bool = True) -> Any:
    """The deterministic part: load, RAS orientation, resample to ``p.spacing``, intensity, pad to patch size.

    Images are resampled with trilinear interpolation, labels with nearest neighbour.
    """
    from monai import transforms as T

    keys = list(keys)
    has_label = "label" in keys
    modes = ["bilinear", "nearest"] if has_label else ["bilinear"]
    steps: list[Any] = [LoadVolumed(keys)] if load else []
    steps += [
        T.EnsureTyped(keys=keys, dtype=torch.float32),
        T.Orientationd(keys=keys, axcodes="RAS", labels=None),
        T.Spacingd(keys=keys, pixdim=p.spacing, mode=modes),
    ]
    if p.intensity == "ct":
        lo, hi = p.ct_window
        steps.append(T.ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    elif p.intensity == "mr":
        steps.append(T.NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True))
    if p.crop_foreground:
        steps.append(T.CropForegroundd(keys=keys, source_key="image", allow_smaller=True))
    if has_label:
        steps.append(T.SpatialPadd(keys=keys, spatial_size=p.patch_size))
    return T.Compose(steps)


def augmentation(patch_size: Sequence[int], samples_per_volume: int = 4, pos: float = 1.0, neg: float = 1.0) -> Any:
    """The random part, per step: label-balanced patches (RandCropByPosNegLabeld), flips, 90-degree rotations,
    intensity scale/shift -- the MONAI spleen tutorial's recipe."""
    from monai import transforms as T

    keys = ["image", "label"]
    return T.Compose(
        [
            T.RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=tuple(patch_size),
                pos=pos,
                neg=neg,
                num_samples=samples_per_volume,
                image_key="image",
                image_threshold=0,
            ),
            T.RandFlipd(keys=keys, prob=0.1, spatial_axis=0),
            T.RandFlipd(keys=keys, prob=0.1, spatial_axis=1),
            T.RandFlipd(keys=keys, prob=0.1, spatial_axis=2),
            T.RandRotate90d(keys=keys, prob=0.1, max_k=3),
            T.RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            T.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        ]
    )
