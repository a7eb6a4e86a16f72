"""Occlusion sensitivity (2D/3D): the model-agnostic cross-check of a gradient map.

Uses ``monai.visualize.OcclusionSensitivity``; the network is wrapped so that its output is the same scalar
score Grad-CAM explains (a class logit, or a class's mean logit over a region), which MONAI's class-based API
then treats as a one-class classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from medimg.explain.gradcam import ScoreFn, normalise_cam
from medimg.models.modes import eval_mode

__all__ = ["occlusion_map"]


class _Scored(nn.Module):
    def __init__(self, model: nn.Module, score: ScoreFn) -> None:
        super().__init__()
        self.model, self.score = model, score

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.model(x)).reshape(-1, 1)


def occlusion_map(
    model: nn.Module, x: torch.Tensor, score: ScoreFn, mask_size: int = 8, overlap: float = 0.5, n_batch: int = 8
) -> torch.Tensor:
    """How much the score drops when a ``mask_size`` cube (square in 2D) around each voxel is blanked out.

    Returns (N, 1, *x.spatial) in [0, 1] (drops only; a rise is clipped to 0, as in Grad-CAM's ReLU).
    The caller's train/eval state is restored.
    """
    from monai.visualize import OcclusionSensitivity

    occ = OcclusionSensitivity(_Scored(model, score), mask_size=mask_size, overlap=overlap, n_batch=n_batch)
    with eval_mode(model), torch.no_grad():
        base = score(model(x)).reshape(-1)
        occ_map, _ = occ(x)
    drop = base.view(-1, *([1] * (x.ndim - 1))) - occ_map[:, :1]
    return normalise_cam(drop.clamp_min(0))
