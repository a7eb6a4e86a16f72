"""Explaining a 3D segmentation of a whole volume: CAMs aggregated through MONAI's sliding windows.

The target region travels through ``sliding_window_inference`` as a second input channel, so each window
knows which of its voxels belong to the region -- MONAI cuts and stitches (Gaussian-weighted) exactly as it
does for predictions, and nothing about window placement is re-implemented here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medimg.explain.gradcam import GradCAM, Method, normalise_cam, region_score
from medimg.explain.occlusion import occlusion_map

__all__ = ["component_at", "segmentation_cam"]


def component_at(prediction: np.ndarray[Any, Any], voxel: tuple[int, ...], label: int) -> np.ndarray[Any, Any]:
    """The connected component of ``prediction == label`` that contains ``voxel`` (a "clicked" structure)."""
    from scipy.ndimage import label as connected

    from medimg.errors import MedimgError

    mask = prediction == label
    if not mask[voxel]:
        raise MedimgError(f"voxel {voxel} is not labelled {label} in the prediction")
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
) -> torch.Tensor:
    """Map of what drove class ``label`` inside ``region`` for a whole (1, 1, X, Y, Z) volume.

    ``region`` (same spatial shape, 0/1) defaults to the voxels the network labels ``label``. ``method`` is
    ``gradcam``, ``gradcampp`` or ``occlusion``. Returns (1, 1, X, Y, Z) in [0, 1].
    """
    from monai.inferers import sliding_window_inference

    if region is None:
        with torch.no_grad():
            was = net.training
            net.eval()
            logits = sliding_window_inference(image, roi_size, 4, net, overlap=overlap, mode="gaussian")
            net.train(was)
        region = (torch.as_tensor(logits).argmax(1, keepdim=True) == label).float()
    stacked = torch.cat([image, region.to(image.dtype)], dim=1)

    if method == "occlusion":

        def predictor(window: torch.Tensor) -> torch.Tensor:
            x, r = window[:, :1], window[:, 1:2]
            return occlusion_map(net, x, region_score(label, r), mask_size=max(4, roi_size[0] // 6))

        with torch.no_grad():
            out = sliding_window_inference(
                stacked, roi_size, sw_batch_size, predictor, overlap=overlap, mode="gaussian"
            )
        return normalise_cam(torch.as_tensor(out))

    with GradCAM(net, layer, method) as cam:  # type: ignore[arg-type]

        def cam_predictor(window: torch.Tensor) -> torch.Tensor:
            x, r = window[:, :1], window[:, 1:2]
            if not torch.any(r > 0):
                return torch.zeros_like(x)
            return cam(x, region_score(label, r), normalise=False)

        out = sliding_window_inference(
            stacked, roi_size, sw_batch_size, cam_predictor, overlap=overlap, mode="gaussian"
        )
    return normalise_cam(torch.as_tensor(out).detach())
