"""The inference pipeline around a network, without Lightning: load, preprocess, windows, blend, back to the
input grid, write. Shared by ``medimg segment`` with a checkpoint (:mod:`medimg.inference.model`) and with an
exported model (:mod:`medimg.inference.runtime`), so both give the same masks.

Nothing here imports Lightning (``medimg.tasks`` does, on import of the package): an edge install that runs
exported models needs torch, MONAI, onnxruntime and medimg's readers only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medimg.errors import MedimgError, ModelError
from medimg.inference.blending import HandedOver, Predictor, sliding_window_labels
from medimg.inference.recipe import Recipe
from medimg.inference.timings import Timings
from medimg.io.volume import Volume

if TYPE_CHECKING:
    from medimg.io.derived import AlgorithmInfo

__all__ = [
    "CPU_WINDOWS",
    "classification_input",
    "load_image",
    "on_grid",
    "preprocess",
    "refuse_channels",
    "resample_to",
    "seg_algorithm",
    "segment_with",
    "to_input_grid",
]


#: windows per network call on the CPU. The recipe's ``sw_batch_size`` (4) is a GPU setting; on the CPU one
#: window per call ran as fast (2 threads, UNet 16..256, ROI 96^3) and lowered the peak memory by about 1 GB
#: (activations of four 96^3 windows, and ONNX Runtime's arena sized for them).
CPU_WINDOWS = 1


def refuse_channels(expected: int, got: int, image: str | os.PathLike[str]) -> None:
    """Refuse an image whose channel / volume count is not the model's ``in_channels`` -- in one line, before the
    network sees it (a 4D diffusion or fMRI series loads as (i, j, k, t) and would reach the net as t channels)."""
    if got != expected:
        raise ModelError(
            f"the image has {got} channels or volumes (a 4D series?) but the model takes {expected}; pass "
            f"{'one volume (medimg convert --split-4d)' if expected == 1 else f'{expected}-channel input'}",
            image,
        )


def load_image(image: str | os.PathLike[str], in_channels: int, volume: Volume | None = None) -> Any:
    """The image as a channel-first MetaTensor (medimg's checked DICOM/NIfTI reader), channels checked.

    ``volume``: the image already loaded (from a series scanned for another purpose: the folder is not read twice).
    """
    from medimg.transforms.pipelines import LoadVolumed, channels_first, channels_metatensor

    if volume is None:
        original = LoadVolumed(["image"])({"image": image})["image"]
    else:  # the same MetaTensor LoadVolumed makes, from the Volume in hand
        original = channels_metatensor(channels_first(volume).astype(np.float32), volume, image)
    refuse_channels(in_channels, int(original.shape[0]), image)
    return original


def preprocess(original: Any, prep: dict[str, Any], *, copy: bool = True) -> Any:
    """Apply a checkpoint's :class:`~medimg.transforms.Preprocessing` (as a dict) to a loaded image (to a copy
    unless ``copy=False``, when the caller no longer needs ``original``)."""
    from medimg.transforms.pipelines import Preprocessing, preprocessing

    p = Preprocessing.from_dict(prep)
    steps = preprocessing(p, keys=["image"], load=False, in_place=True)  # the image is ours: a clone or handed over
    return steps({"image": original.clone() if copy else original})["image"]


def to_input_grid(values: torch.Tensor, data: Any, original: Any, mode: str = "nearest") -> np.ndarray[Any, Any]:
    """Resample (1, X', Y', Z') ``values`` on the preprocessed grid of ``data`` back onto ``original``'s grid."""
    return resample_to(values, data, np.asarray(original.affine), tuple(original.shape[1:]), mode)


def resample_to(
    values: torch.Tensor, data: Any, affine: np.ndarray[Any, Any], shape: tuple[int, ...], mode: str = "nearest"
) -> np.ndarray[Any, Any]:
    """Resample (1, X', Y', Z') ``values`` on the preprocessed grid of ``data`` onto the grid ``(affine, shape)``
    (MONAI's ``ResampleToMatch`` without keeping the whole destination image in memory)."""
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    meta_dict = {k: v for k, v in dict(data.meta).items() if k != "affine"}
    meta = MetaTensor(values.float().cpu(), affine=data.affine, meta=meta_dict)
    back = SpatialResample(mode=mode)(meta, dst_affine=torch.as_tensor(affine), spatial_size=shape)
    out = np.asarray(back[0].detach().cpu().numpy())
    if out.shape != tuple(shape):
        raise MedimgError(f"internal: resampled shape {out.shape} != input shape {tuple(shape)}")
    return out


def on_grid(data: Any, affine: np.ndarray[Any, Any], shape: tuple[int, ...]) -> bool:
    """Whether the preprocessed ``data`` already lies on the grid ``(affine, shape)`` by MONAI's rule
    (``SpatialResample`` then hands the values back unchanged, as float32): nothing to resample."""
    from monai.data.utils import AFFINE_TOL

    same_shape = tuple(int(n) for n in data.shape[1:]) == tuple(shape)
    return same_shape and bool(np.allclose(np.asarray(data.affine, dtype=np.float64), affine, atol=AFFINE_TOL))


def seg_algorithm(net: str, medimg_version: str, checkpoint_sha256: str) -> AlgorithmInfo:
    """The :class:`~medimg.io.derived.AlgorithmInfo` every DICOM SEG medimg writes carries: ``medimg <net>``, the
    version, and the net and checkpoint SHA-256 as provenance (one format, whichever path wrote the SEG)."""
    from medimg.io.derived import AlgorithmInfo as Info

    return Info(f"medimg {net}", medimg_version, {"net": net, "checkpoint_sha256": checkpoint_sha256})


def segment_with(
    predictor: Predictor,
    recipe: Recipe,
    image: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | None = None,
    windows_per_call: int | None = None,
    progress: bool = False,
    timings: Timings | None = None,
) -> Volume:
    """Segment ``image`` with a network call and its recipe; the mask is on the input's voxel grid.

    ``output`` ``.nii.gz`` is written atomically; ``.dcm`` writes a DICOM SEG referencing the DICOM input
    (refused before inference for a NIfTI input). The predictor runs under ``torch.no_grad``, on
    ``windows_per_call`` windows at a time (default: the recipe's ``sw_batch_size``; see :data:`CPU_WINDOWS`).
    Each stage's time goes into ``timings`` (see :mod:`medimg.inference.timings`).
    """
    t = timings if timings is not None else Timings(device=str(device or "cpu"))
    if recipe.task != "segmentation" or recipe.preprocessing is None:
        raise MedimgError(f"the model is a {recipe.task} model; use medimg classify", image)
    source, loaded = None, None
    with t.stage("load"):
        if output is not None and Path(output).name.lower().endswith(".dcm"):
            from medimg.io.derived import source_slices
            from medimg.io.load import load_series

            source = source_slices(image)  # fail before inference: NIfTI input, resampled or mixed series
            loaded = load_series(source.series)  # the series just scanned: the folder is scanned once
        original = load_image(image, recipe.in_channels, loaded)
        del loaded
    affine, shape = np.asarray(original.affine, dtype=np.float64), tuple(int(s) for s in original.shape[1:])
    from monai.data import MetaTensor

    with t.stage("preprocess"):
        data = preprocess(original, recipe.preprocessing, copy=False)
        del original  # only its grid is needed from here on: one volume less at the peak
        meta = {k: v for k, v in dict(data.meta).items() if k != "affine"}
        grid = MetaTensor(torch.zeros(1), affine=data.affine, meta=meta)  # the grid, not its voxels
        unmoved = on_grid(data, affine, shape)  # the model's grid is the input's: no resampling back
        # handed over: the blending drops the input's planes as its sweep passes them (no reference kept here)
        x = data.as_tensor() if hasattr(data, "as_tensor") else torch.as_tensor(data)
        image_in = HandedOver(x.to(device or torch.device("cpu")))
        del x, data
    with t.stage("blending"), torch.no_grad():  # the network's share is counted apart and taken out below
        network_before = t.seconds["network"]
        pred = sliding_window_labels(
            image_in,
            t.timed(predictor),
            recipe.roi_size,
            sw_batch_size=windows_per_call or recipe.sw_batch_size,
            overlap=recipe.overlap,
            progress=progress,
        )
    t.seconds["blending"] -= t.seconds["network"] - network_before
    with t.stage("back"):
        # Fortran order: slice k is one contiguous block, so a DICOM SEG is written without a transposed copy
        if unmoved:  # the labels as they are, not via a float32 copy of the whole volume (issue 33)
            mask = np.asfortranarray(pred.numpy())
        else:
            mask = resample_to(pred[None], grid, affine, shape, mode="nearest").astype(np.uint8, order="F")
        volume = Volume(mask, affine, {"modality": "SEG", "source": str(image)})
    with t.stage("write"):
        if source is not None and output is not None:
            from medimg.io.derived import write_seg

            algorithm = seg_algorithm(recipe.net, recipe.medimg_version, recipe.checkpoint_sha256)
            names = {0: "background", **{k: f"class {k}" for k in range(1, recipe.num_classes)}, **recipe.class_names}
            write_seg(volume, source, output, labels=names, algorithm=algorithm)
        elif output is not None:
            volume.save(output)
    t.finish()
    return Volume(volume.array, volume.affine, {**volume.meta, "timings": t.as_dict()})


def classification_input(recipe: Recipe, image: str | os.PathLike[str]) -> torch.Tensor:
    """(1, C, H, W[, D]) network input of an image for a classifier: the evaluation transform of
    :class:`~medimg.data.classification.ClassificationDataModule`
    (:func:`medimg.transforms.pipelines.classification_input_steps`)."""
    from monai import transforms as T

    from medimg.transforms.pipelines import classification_input_steps

    original = load_image(image, recipe.in_channels)
    if recipe.spatial_dims == 2 and original.shape[-1] != 1:
        raise MedimgError(f"the model classifies 2D images but this image has {original.shape[-1]} slices", image)
    steps = classification_input_steps(recipe.spatial_dims, recipe.image_size, recipe.intensity, recipe.ct_window)
    out: torch.Tensor = T.Compose(steps)({"image": original})["image"]
    return out[None]
