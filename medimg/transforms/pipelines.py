"""MONAI pipelines for 3D segmentation: one deterministic preprocessing (cached) and one random augmentation.

The preprocessing is described by a small dataclass, :class:`Preprocessing`, that is saved with every
checkpoint, so ``medimg segment`` applies exactly what training applied.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medimg.io.volume import GRID_TOLERANCE_MM

__all__ = [
    "AUGMENTATION_PRESETS",
    "FOREGROUND_SAMPLING",
    "SCANNER_SHIFT_RANGES",
    "LoadVolumed",
    "Preprocessing",
    "ScaleIntensityRangeInPlaced",
    "augmentation",
    "check_same_grid",
    "classification_input_steps",
    "patch_sampler",
    "preprocessing",
    "scanner_shift",
    "stack_channels",
]

#: the training augmentation presets (``--data.augment``); the first is the default
AUGMENTATION_PRESETS = ("default", "scanner_shift")
#: ``--data.foreground_sampling``: ``"any"`` foreground voxel centres a foreground patch (MONAI's
#: ``RandCropByPosNegLabeld``, the default), or a voxel of a class drawn among those present (``"classes"``,
#: nnU-Net's rule: :class:`medimg.transforms.sampling.RandCropByClassesd`)
FOREGROUND_SAMPLING = ("any", "classes")


@dataclass(frozen=True)
class Preprocessing:
    """Deterministic preprocessing of a segmentation case.

    Attributes:
        spacing: target voxel size in mm (RAS axis order), e.g. the MONAI spleen tutorial's (1.5, 1.5, 2.0).
        intensity: ``"ct"`` clips to ``ct_window`` (Hounsfield units) and scales it to [0, 1];
            ``"ct_zscore"`` clips to ``ct_window`` and z-scores with the dataset's ``ct_stats`` (nnU-Net's CT
            scheme: window = the 0.5 / 99.5 percentiles of the foreground HU over the whole dataset, mean and
            standard deviation of the foreground); ``"mr"`` z-scores the non-zero voxels of each image and
            channel; ``"none"`` leaves values alone.
        ct_window: (lower, upper) HU of the CT window.
        ct_stats: (mean, standard deviation) in HU for ``"ct_zscore"``.
        crop_foreground: crop to the bounding box of voxels above the window's lower bound (CT) / non-zero.
        patch_size: volumes smaller than this are padded to it, so random patches always fit.
    """

    spacing: tuple[float, float, float] = (1.5, 1.5, 2.0)
    intensity: Literal["ct", "ct_zscore", "mr", "none"] = "ct"
    ct_window: tuple[float, float] = (-57.0, 164.0)
    crop_foreground: bool = False
    patch_size: tuple[int, int, int] = (96, 96, 96)
    ct_stats: tuple[float, float] = (0.0, 1.0)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.intensity != "ct_zscore":  # keeps the cache keys (and checkpoints) of the older modes unchanged
            d.pop("ct_stats")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`as_dict` (lists from YAML/JSON become tuples)."""
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)

    @property
    def modality(self) -> Literal["CT", "MR"]:
        """The modality the intensity mode implies: ``"CT"`` for the HU windows, ``"MR"`` otherwise."""
        return "CT" if self.intensity in ("ct", "ct_zscore") else "MR"

    @property
    def background_threshold(self) -> float:
        """Negative patches are centred on background voxels brighter than this: 0 in ``"ct"`` mode (above the
        window's lower bound, inside the body); anywhere for ``"ct_zscore"``, whose narrow foreground window
        would otherwise leave only foreground look-alikes (nnU-Net samples background patches uniformly)."""
        return float("-inf") if self.intensity == "ct_zscore" else 0.0


class LoadVolumed:
    """Load ``keys`` with :func:`medimg.io.load` (DICOM folder, DICOM file or NIfTI) into channel-first MetaTensors.

    Hand-written rather than MONAI's ``LoadImaged`` so that DICOM goes through medimg's checked geometry
    (slice order, gaps, tilt) instead of MONAI's reader, which sorts by InstanceNumber.

    A list of paths under a key is a multi-channel image (nnU-Net v2's ``case_0000``, ``case_0001``, ...): the
    files are stacked as channels and must share one voxel grid. Every key after the first must lie on the first
    key's grid (a label on another grid than its image is refused with :class:`~medimg.errors.ConfigError`).
    """

    def __init__(self, keys: Sequence[str], allow_missing_keys: bool = False) -> None:
        self.keys = tuple(keys)
        self.allow_missing_keys = allow_missing_keys

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:

        d = dict(data)
        grid: tuple[str, Any] | None = None
        for key in self.keys:
            if key not in d:
                if self.allow_missing_keys:
                    continue
                raise KeyError(key)
            paths = [d[key]] if isinstance(d[key], (str, os.PathLike)) else list(d[key])
            stacked, first = stack_channels(paths, grid)
            if grid is None:
                grid = (str(paths[0]), first)
            d[key] = channels_metatensor(stacked, first, paths[0])
        return d


def channels_metatensor(stacked: np.ndarray[Any, Any], first: Any, source: str | os.PathLike[str]) -> Any:
    """A (c, i, j, k) array on the grid of the Volume ``first`` as MONAI's MetaTensor (affine, original affine,
    spatial shape and the file it came from): what :class:`LoadVolumed` gives for ``source``."""
    from monai.data import MetaTensor

    meta = {"filename_or_obj": str(source), "original_affine": first.affine, "spatial_shape": first.shape[:3]}
    return MetaTensor(torch.as_tensor(stacked), affine=torch.as_tensor(first.affine), meta=meta)


def channels_first(volume: Any) -> np.ndarray[Any, Any]:
    """A Volume's voxels as (c, i, j, k): a 3D image is one channel, a 4D one gives its t volumes as channels."""
    array = np.asarray(volume.array)
    return array[np.newaxis] if array.ndim == 3 else np.moveaxis(array, -1, 0)


def stack_channels(
    paths: Sequence[str | os.PathLike[str]], grid: tuple[str, Any] | None = None
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], Any]:
    """The files at ``paths`` loaded with :func:`medimg.io.load` and stacked as channels: a (c, i, j, k) float32
    array (a 4D file gives its t volumes as channels) and the first file's Volume (its geometry). Every file must
    lie on the grid of ``grid`` = (path, Volume), or of the first file when ``grid`` is None."""
    from medimg.io import load

    arrays, first = [], None
    for path in paths:
        vol = load(path)
        if grid is None:
            grid = (str(path), vol)
        else:
            check_same_grid(grid[1], vol, grid[0], str(path))
        if first is None:
            first = vol
        arrays.append(channels_first(vol))
    return np.concatenate(arrays, axis=0).astype(np.float32), first


def check_same_grid(reference: Any, other: Any, reference_path: str, other_path: str) -> None:
    """Raise :class:`~medimg.errors.ConfigError` unless two :class:`~medimg.io.Volume` share one voxel grid
    (same (i, j, k) shape, affines equal to :data:`GRID_TOLERANCE_MM`)."""
    from medimg.errors import ConfigError

    same_shape = tuple(reference.shape[:3]) == tuple(other.shape[:3])
    if not same_shape or not np.allclose(reference.affine, other.affine, atol=GRID_TOLERANCE_MM):
        raise ConfigError(
            f"voxel grid {tuple(other.shape[:3])} (spacing {tuple(round(s, 4) for s in other.spacing)} mm) differs "
            f"from {Path(reference_path).name}'s {tuple(reference.shape[:3])} "
            f"(spacing {tuple(round(s, 4) for s in reference.spacing)} mm); resample it onto the image's grid",
            other_path,
        )


def classification_input_steps(
    spatial_dims: int, image_size: Sequence[int], intensity: str, ct_window: Sequence[float], key: str = "image"
) -> list[Any]:
    """The deterministic part of a classifier's input, after loading: 2D -> the single slice; resize to
    ``image_size``; CT window (HU) or the 0.5-99.5 percentiles -> [0, 1]; float32. Shared by the classification
    data module (training, validation) and an exported classifier (``medimg classify``)."""
    from monai import transforms as T

    steps: list[Any] = []
    if spatial_dims == 2:
        steps.append(T.SqueezeDimd(keys=key, dim=-1, update_meta=False))
    steps.append(T.Resized(keys=key, spatial_size=tuple(image_size)))
    if intensity == "ct":
        lo, hi = ct_window
        steps.append(T.ScaleIntensityRanged(keys=key, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    else:
        steps.append(
            T.ScaleIntensityRangePercentilesd(keys=key, lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
        )
    steps.append(T.EnsureTyped(keys=key, dtype=torch.float32, track_meta=False))
    return steps


def preprocessing(
    p: Preprocessing, keys: Sequence[str] = ("image", "label"), *, load: bool = True, in_place: bool = False
) -> Any:
    """The deterministic part: load, RAS orientation, resample to ``p.spacing``, intensity, pad to patch size.

    Images are resampled with trilinear interpolation, labels with nearest neighbour. ``in_place``: the CT
    intensity map overwrites the image it is given (:class:`ScaleIntensityRangeInPlaced`; inference, where the
    caller hands over its image), for the same values without MONAI's full-size temporaries.
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
    scale = ScaleIntensityRangeInPlaced if in_place else T.ScaleIntensityRanged
    if p.intensity == "ct":
        lo, hi = p.ct_window
        steps.append(scale(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    elif p.intensity == "ct_zscore":
        # clip to the window, then (HU - mean) / std: one linear map of [lo, hi] onto [z(lo), z(hi)], clipped
        lo, hi = p.ct_window
        mean, std = p.ct_stats
        z_lo, z_hi = (lo - mean) / std, (hi - mean) / std
        steps.append(scale(keys="image", a_min=lo, a_max=hi, b_min=z_lo, b_max=z_hi, clip=True))
    elif p.intensity == "mr":
        steps.append(T.NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True))
    if p.crop_foreground:
        steps.append(T.CropForegroundd(keys=keys, source_key="image", allow_smaller=True))
    if has_label:
        steps.append(T.SpatialPadd(keys=keys, spatial_size=p.patch_size))
    return T.Compose(steps)


class ScaleIntensityRangeInPlaced:
    """MONAI's ``ScaleIntensityRanged`` (``clip=True``, float32) computed in place on the image of ``keys``.

    Hand-written because MONAI's transform evaluates ``(img - a_min) / (a_max - a_min) * (b_max - b_min) +
    b_min`` and the clip out of place: up to three full-size float32 temporaries at once (0.9 GB on a
    512 x 512 x 300 CT, the peak of a 2-class ``medimg segment``). The same float32 operations in the same
    order, in place, give the same values bit for bit (tests/test_inference_memory.py checks it against MONAI).
    """

    def __init__(self, keys: str, a_min: float, a_max: float, b_min: float, b_max: float, clip: bool = True) -> None:
        if a_max == a_min or not clip:
            raise ValueError("ScaleIntensityRangeInPlaced needs a_max != a_min and clip=True")
        self.key, self.a_min, self.a_max, self.b_min, self.b_max = keys, a_min, a_max, b_min, b_max

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        img = d[self.key]
        if not (isinstance(img, torch.Tensor) and img.dtype == torch.float32):
            img = torch.as_tensor(img, dtype=torch.float32).clone()  # never write into the caller's array
        img.sub_(self.a_min).div_(self.a_max - self.a_min).mul_(self.b_max - self.b_min).add_(self.b_min)
        d[self.key] = img.clamp_(self.b_min, self.b_max)
        return d


#: Ranges of the ``scanner_shift`` preset per modality, on the *preprocessed* intensities (CT: the HU window
#: scaled to [0, 1] or z-scored; MR: z-scored per image), with the probability each is drawn per patch:
#: (MONAI transform, its range argument(s), probability). What each stands for:
#:
#: * bias field (``RandBiasFieldd`` coefficients): MR coil sensitivity / B1 inhomogeneity across vendors and
#:   field strengths; barely present in CT (cupping after beam-hardening correction), hence the small range.
#: * gamma (``RandAdjustContrastd``): a contrast curve that differs between sequences / reconstruction settings.
#: * histogram shift (``RandHistogramShiftd`` control points): a non-linear intensity mapping (MR scanners have
#:   no absolute scale); off for CT, whose HU are calibrated.
#: * Gibbs ringing (``RandGibbsNoised`` alpha): k-space truncation of lower-resolution MR protocols; not CT.
#: * blur (``RandGaussianSmoothd`` sigma in voxels) and low resolution (``RandSimulateLowResolutiond`` zoom):
#:   a softer reconstruction kernel (CT) or thicker slices / lower matrix.
#: * noise (``RandGaussianNoised`` std): dose / field strength / coil.
SCANNER_SHIFT_RANGES: dict[str, dict[str, tuple[tuple[float, float], float]]] = {
    "CT": {
        "bias_field": ((0.0, 0.05), 0.2),
        "gamma": ((0.85, 1.2), 0.3),
        "blur_sigma": ((0.25, 1.0), 0.2),
        "low_resolution_zoom": ((0.6, 1.0), 0.15),
        "noise_std": ((0.0, 0.05), 0.3),
    },
    "MR": {
        "bias_field": ((0.0, 0.3), 0.4),
        "gamma": ((0.7, 1.5), 0.3),
        "histogram_shift_points": ((5.0, 12.0), 0.2),
        "gibbs_alpha": ((0.0, 0.5), 0.1),
        "blur_sigma": ((0.25, 1.0), 0.2),
        "low_resolution_zoom": ((0.6, 1.0), 0.15),
        "noise_std": ((0.0, 0.3), 0.4),
    },
}


def scanner_shift(modality: str = "MR", key: str = "image") -> list[Any]:
    """MONAI random transforms that imitate another scanner / centre: the ``scanner_shift`` preset.

    ``modality`` picks the ranges of :data:`SCANNER_SHIFT_RANGES` (``"CT"``; anything else gets the MR
    ranges). Intensity-curve changes come first, then resolution, then noise (the order of acquisition).
    Applied to ``key`` only; labels are untouched (none of these moves a voxel).
    """
    from monai import transforms as T

    r = SCANNER_SHIFT_RANGES["CT" if modality == "CT" else "MR"]
    out: list[Any] = []
    if "bias_field" in r:
        (lo, hi), prob = r["bias_field"]
        out.append(T.RandBiasFieldd(keys=key, coeff_range=(lo, hi), prob=prob))
    if "gamma" in r:
        gamma, prob = r["gamma"]
        out.append(T.RandAdjustContrastd(keys=key, gamma=gamma, prob=prob))
    if "histogram_shift_points" in r:
        (lo, hi), prob = r["histogram_shift_points"]
        out.append(T.RandHistogramShiftd(keys=key, num_control_points=(int(lo), int(hi)), prob=prob))
    if "gibbs_alpha" in r:
        alpha, prob = r["gibbs_alpha"]
        out.append(T.RandGibbsNoised(keys=key, alpha=alpha, prob=prob))
    (s_lo, s_hi), prob = r["blur_sigma"]
    out.append(
        T.RandGaussianSmoothd(keys=key, sigma_x=(s_lo, s_hi), sigma_y=(s_lo, s_hi), sigma_z=(s_lo, s_hi), prob=prob)
    )
    zoom, prob = r["low_resolution_zoom"]
    out.append(T.RandSimulateLowResolutiond(keys=key, zoom_range=zoom, prob=prob))
    (_, std), prob = r["noise_std"]
    out.append(T.RandGaussianNoised(keys=key, std=std, prob=prob, sample_std=True))
    return out


def augmentation(
    patch_size: Sequence[int],
    samples_per_volume: int = 4,
    pos: float = 1.0,
    neg: float = 1.0,
    image_threshold: float = 0.0,
    preset: str = "default",
    modality: str = "CT",
    foreground_sampling: str = "any",
    num_classes: int = 2,
) -> Any:
    """The random part, per step: label-balanced patches, flips, 90-degree rotations, intensity scale/shift -- the
    MONAI spleen tutorial's recipe; ``preset="scanner_shift"`` adds :func:`scanner_shift` with ``modality``'s ranges.

    ``pos / (pos + neg)`` of the patches are centred on a foreground voxel; the others on a background voxel whose
    (preprocessed) intensity is above ``image_threshold`` (0 = above the CT window's lower bound in ``"ct"`` mode).
    ``foreground_sampling="any"`` centres them on any foreground voxel (MONAI's ``RandCropByPosNegLabeld``);
    ``"classes"`` splits them equally among the foreground classes of ``num_classes`` present in the case
    (nnU-Net's rule, :class:`medimg.transforms.sampling.RandCropByClassesd`).
    """
    from medimg.errors import ConfigError

    if preset not in AUGMENTATION_PRESETS:
        raise ConfigError(f"augmentation preset must be one of {', '.join(AUGMENTATION_PRESETS)}, got {preset!r}")
    if foreground_sampling not in FOREGROUND_SAMPLING:
        raise ConfigError(
            f"foreground_sampling must be one of {', '.join(FOREGROUND_SAMPLING)}, got {foreground_sampling!r}"
        )
    shift = scanner_shift(modality) if preset == "scanner_shift" else []
    from monai import transforms as T

    keys = ["image", "label"]
    return T.Compose(
        [
            patch_sampler(patch_size, samples_per_volume, pos, neg, image_threshold, foreground_sampling, num_classes),
            T.RandFlipd(keys=keys, prob=0.1, spatial_axis=0),
            T.RandFlipd(keys=keys, prob=0.1, spatial_axis=1),
            T.RandFlipd(keys=keys, prob=0.1, spatial_axis=2),
            # quarter turns in the first two axes only keep the batch's shape when the patch is square there
            *([T.RandRotate90d(keys=keys, prob=0.1, max_k=3)] if patch_size[0] == patch_size[1] else []),
            T.RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            T.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            *shift,
        ]
    )


def patch_sampler(
    patch_size: Sequence[int],
    samples_per_volume: int,
    pos: float,
    neg: float,
    image_threshold: float,
    foreground_sampling: str = "any",
    num_classes: int = 2,
) -> Any:
    """The patch-centring transform of :func:`augmentation` (``keys`` image and label)."""
    from monai import transforms as T

    from medimg.transforms.sampling import RandCropByClassesd

    keys = ["image", "label"]
    if foreground_sampling == "classes":
        return RandCropByClassesd(
            keys, "label", tuple(patch_size), num_classes, pos / (pos + neg), samples_per_volume, "image",
            image_threshold,
        )  # fmt: skip
    return T.RandCropByPosNegLabeld(
        keys=keys, label_key="label", spatial_size=tuple(patch_size), pos=pos, neg=neg,
        num_samples=samples_per_volume, image_key="image", image_threshold=image_threshold,
    )  # fmt: skip
