"""Grad-CAM and Grad-CAM++ for 2D/3D classifiers and 3D segmentation nets, as a context manager.

Hooks are registered on ``__enter__`` and removed on ``__exit__``; every module's train/eval flag is restored
on exit. Maps are non-negative and normalised by their maximum only (``cam / cam.max()``), never min-max:
min-max rescaling can turn a nearly flat map into a high-contrast one, or invert a map whose values are all
negative before the ReLU (the MONAI tutorials issue 1796 failure).

Hand-written rather than taken from ``monai.visualize.GradCAM`` because that one targets classifier logits
only; here the target is any scalar score of the output -- a class logit, or the mean logit of a class over a
*region* of a segmentation -- which is what "why did the model call this the spleen?" needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medimg.errors import ModelError

__all__ = ["GradCAM", "Method", "candidate_layers", "class_score", "normalise_cam", "region_score"]

Method = Literal["gradcam", "gradcampp", "hirescam"]
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def candidate_layers(model: nn.Module) -> list[str]:
    """Names of the convolution layers (2D/3D), in registration order; the last ones are the usual targets."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and name]


def class_score(k: int) -> ScoreFn:
    """Score for a classifier: the logit of class ``k`` (one value per sample)."""
    return lambda out: out[:, k]


def region_score(k: int, region: torch.Tensor | None = None) -> ScoreFn:
    """Score for a segmentation output (N, C, *spatial): the mean class-``k`` logit over ``region``.

    ``region`` is a (N, 1, *spatial) or broadcastable 0/1 mask; ``None`` means the voxels the model itself
    labels ``k`` (argmax). An empty region scores 0 (its window contributes no gradient).
    """

    def score(out: torch.Tensor) -> torch.Tensor:
        mask = (out.argmax(1, keepdim=True) == k).float() if region is None else region.to(out.dtype)
        num = (out[:, k : k + 1] * mask).flatten(1).sum(1)
        den = mask.flatten(1).sum(1).clamp_min(1.0)
        return num / den

    return score


def normalise_cam(cam: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each sample's non-negative map by its maximum (a zero map stays zero). Never inverts."""
    peak = cam.flatten(1).amax(1).clamp_min(eps).view(-1, *([1] * (cam.ndim - 1)))
    return cam / peak


class GradCAM:
    """Class-activation maps from one layer of ``model``.

    Example::

        with GradCAM(model, "net.layer4") as cam:
            heat = cam(x, class_score(1))          # (N, 1, *x.spatial), in [0, 1]

    Args:
        model: any network; it is put in eval mode inside the context and restored afterwards.
        layer: a name from :func:`candidate_layers` (or any module name).
        method: ``"gradcam"`` (channel weights = mean gradient, Selvaraju et al. 2017), ``"gradcampp"``
            (Chattopadhyay et al. 2018), or ``"hirescam"`` (gradient x activation per voxel, Draelos & Carin
            2020) -- the faithful choice for a *region* of a segmentation, because averaging the gradient over
            the whole window (Grad-CAM) throws away where in the window the evidence was.
    """

    def __init__(self, model: nn.Module, layer: str, method: Method = "gradcam") -> None:
        modules = dict(model.named_modules())
        if layer not in modules:
            known = ", ".join(candidate_layers(model)[-8:])
            raise ModelError(f"no layer {layer!r} in the model; last candidate layers: {known}")
        if method not in ("gradcam", "gradcampp", "hirescam"):
            raise ModelError(f"method must be gradcam, gradcampp or hirescam, got {method!r}")
        self.model, self.layer, self.method = model, modules[layer], method
        self.layer_name = layer
        self._handles: list[Any] = []
        self._modes: dict[nn.Module, bool] = {}
        self._acts: torch.Tensor | None = None
        self._grads: torch.Tensor | None = None

    def __enter__(self) -> GradCAM:
        self._modes = {m: m.training for m in self.model.modules()}
        self.model.eval()

        def forward_hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            self._acts = out
            if out.requires_grad:
                out.register_hook(self._save_grad)

        self._handles.append(self.layer.register_forward_hook(forward_hook))
        return self

    def _save_grad(self, grad: torch.Tensor) -> None:
        self._grads = grad

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for m, mode in self._modes.items():
            m.train(mode)
        self._acts = self._grads = None

    def raw(self, x: torch.Tensor, score: ScoreFn) -> torch.Tensor:
        """The un-normalised map at the target layer's resolution, (N, 1, *layer_spatial), >= 0."""
        if not self._handles:
            raise ModelError("use GradCAM as a context manager: `with GradCAM(model, layer) as cam: ...`")
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            out = self.model(x)
            s = score(out)
            if s.ndim == 0:
                s = s.unsqueeze(0)
            torch.autograd.backward(s.sum())
        acts, grads = self._acts, self._grads
        if acts is None or grads is None:
            raise ModelError(f"layer {self.layer_name!r} did not take part in the forward pass with gradients")
        acts, grads = acts.detach().float(), grads.detach().float()
        dims = tuple(range(2, acts.ndim))
        if self.method == "hirescam":  # element-wise gradient x activation: keeps where the evidence is
            self.model.zero_grad(set_to_none=True)
            return F.relu((grads * acts).sum(1, keepdim=True))
        if self.method == "gradcam":
            weights = grads.mean(dim=dims, keepdim=True)
        else:
            g2, g3 = grads.pow(2), grads.pow(3)
            denom = 2 * g2 + acts.sum(dim=dims, keepdim=True) * g3
            alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
            weights = (alpha * F.relu(grads)).sum(dim=dims, keepdim=True)
        self.model.zero_grad(set_to_none=True)
        return F.relu((weights * acts).sum(1, keepdim=True))

    def __call__(self, x: torch.Tensor, score: ScoreFn, normalise: bool = True) -> torch.Tensor:
        """The map upsampled to ``x``'s spatial size, (N, 1, *x.shape[2:]); in [0, 1] when ``normalise``."""
        cam = self.raw(x, score)
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=False).clamp_min(0)
        return normalise_cam(cam) if normalise else cam
