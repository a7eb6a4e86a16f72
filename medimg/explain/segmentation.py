"""Explaining a 3D segmentation of a whole volume: CAMs aggregated through MONAI's sliding windows.

The target region travels through ``sliding_window_inference`` as a second input channel, so each window
knows which of its voxels belong to the region -- MONAI cuts and stitches (Gaussian-weighted) exactly as it
does for predictions, and nothing about window placement is re-implemented here.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from medimg.explain.gradcam import Method, normalise_cam
from medimg.explain.methods import window_maps
from medimg.models.modes import eval_mode

__all__ = ["Predictor", "component_at", "predicted_region", "segmentation_cam"]

#: Whole-volume logits (N, C, X, Y, Z) from an image (N, 1, X, Y, Z), e.g. ``SegmentationTask.infer``.
Predictor = Callable[[torch.Tensor], torch.Tensor]


def component_at(prediction: np.ndarray[Any, Any], voxel: tuple[int, ...], label: int) -> np.ndarray[Any, Any]:
    """The connected component of ``prediction == label`` that contains ``voxel`` (a "clicked" structure)."""
    from scipy.ndimage import label as connected

    from medimg.errors import ConfigError

    mask = prediction == label
    if not mask[voxel]:
        raise ConfigError(f"voxel {voxel} is not labelled {label} in the prediction")
    comps, _ = connected(mask)
    return np.asarray(comps == comps[voxel])


def segmentation_cam(
    net: nn.Module,
    image: torch.Tensor,
    layer: str,
    label: int,
    region: torch.Tensor | None = None,
    *,
    method: Method | str = "gradcam",
    roi_size: tuple[int, ...] = (96, 96, 96),
    sw_batch_size: int = 1,
    overlap: float = 0.25,
    predictor: Predictor | None = None,
) -> torch.Tensor:
    """Map of what drove class ``label`` inside ``region`` for a whole (1, 1, X, Y, Z) volume.

    ``region`` (same spatial shape, 0/1) defaults to the voxels labelled ``label`` by ``predictor`` -- the
    task's own whole-volume inference (e.g. ``task.infer``), or, when None, ``net`` through the same sliding
    windows as the map. ``method`` is a name in :data:`medimg.explain.methods.EXPLAIN_METHODS`.
    Returns (1, 1, X, Y, Z) in [0, 1].
    """
    if region is None:
        region = predicted_region(predictor or _windowed(net, roi_size, 4, overlap), image, label)
    stacked = torch.cat([image, region.to(image.dtype)], dim=1)  # (1, 2, X, Y, Z): image and target region
    with window_maps(method, net, layer, label, roi_size) as window_map:
        out = _windowed(window_map, roi_size, sw_batch_size, overlap)(stacked).detach()
    return normalise_cam(out)


def predicted_region(predictor: Predictor, image: torch.Tensor, label: int) -> torch.Tensor:
    """The voxels ``predictor`` labels ``label`` (argmax over classes): (1, 1, X, Y, Z) float 0/1."""
    with torch.no_grad():
        logits = predictor(image)
    return (torch.as_tensor(logits).argmax(1, keepdim=True) == label).float()


def _windowed(fn: Predictor | nn.Module, roi_size: tuple[int, ...], sw_batch_size: int, overlap: float) -> Predictor:
    """``fn`` applied through MONAI's Gaussian-weighted sliding windows (``net`` in eval mode if a module)."""
    from monai.inferers import sliding_window_inference

    def run(x: torch.Tensor) -> torch.Tensor:
        with eval_mode(fn) if isinstance(fn, nn.Module) else nullcontext():
            out = sliding_window_inference(x, roi_size, sw_batch_size, fn, overlap=overlap, mode="gaussian")
        return torch.as_tensor(out)

    return run
