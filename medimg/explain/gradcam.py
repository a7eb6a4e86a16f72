"""Grad-CAM and Grad-CAM++ for 2D/3D classifiers and 3D segmentation nets, as a context manager.

Laid out as pytorch-grad-cam's ``base_cam.py``: :class:`GradCAM` runs the model and combines weights with
activations, one :class:`ActivationsAndGradients` owns the hook (registered on ``__enter__``, removed on
``__exit__``), and each method is a small class that only computes its weights. Every module's train/eval
flag is restored on exit (:func:`medimg.models.eval_mode`).

Maps are non-negative and normalised by their maximum only (``cam / cam.max()``), never min-max: min-max
rescaling can turn a nearly flat map into a high-contrast one, or invert a map whose values are all negative
before the ReLU (the MONAI tutorials issue 1796 failure).

Hand-written rather than taken from ``monai.visualize.GradCAM`` because that one targets classifier logits
only; here the target is any scalar score of the output -- a class logit, or the mean logit of a class over a
*region* of a segmentation -- which is what "why did the model call this the spleen?" needs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medimg.errors import ModelError
from medimg.models.modes import eval_mode

__all__ = [
    "CAM_METHODS",
    "ActivationsAndGradients",
    "CamWeights",
    "GradCAM",
    "GradCAMPlusPlusWeights",
    "GradCAMWeights",
    "HiResCAMWeights",
    "Method",
    "candidate_layers",
    "class_score",
    "normalise_cam",
    "region_score",
]

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


class CamWeights:
    """One CAM method: how much each activation counts. Subclasses implement :meth:`weights` only."""

    name: ClassVar[str]

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Weights broadcastable to ``acts`` (N, C, *layer_spatial), from the score's gradient ``grads`` (same)."""
        raise NotImplementedError


class GradCAMWeights(CamWeights):
    """Grad-CAM (Selvaraju et al. 2017): one weight per channel, the mean gradient. Shape (N, C, 1, ...)."""

    name = "gradcam"

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=tuple(range(2, acts.ndim)), keepdim=True)


class GradCAMPlusPlusWeights(CamWeights):
    """Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients weighted by the closed-form alphas of the
    paper's eq. 19 (exponential score). Shape (N, C, 1, ...)."""

    name = "gradcampp"

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, acts.ndim))
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + acts.sum(dim=dims, keepdim=True) * g3
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        return (alpha * F.relu(grads)).sum(dim=dims, keepdim=True)


class HiResCAMWeights(CamWeights):
    """HiResCAM (Draelos & Carin 2020): the gradient itself, per voxel, so the map keeps *where* the evidence
    is. Shape (N, C, *layer_spatial)."""

    name = "hirescam"

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads


#: The methods by name (the ``method`` argument of :class:`GradCAM`).
CAM_METHODS: dict[str, type[CamWeights]] = {
    m.name: m for m in (GradCAMWeights, GradCAMPlusPlusWeights, HiResCAMWeights)
}


class ActivationsAndGradients:
    """Owns the one forward hook on ``layer``: keeps its output and the gradient that flows back into it.

    A context manager: the hook exists only inside ``with``, and what it kept is dropped on exit.
    """

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.activations: torch.Tensor | None = None
        self.gradients: torch.Tensor | None = None
        self._handle: Any = None

    @property
    def active(self) -> bool:
        return self._handle is not None

    def _forward_hook(self, _m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        self.activations = out
        if out.requires_grad:
            out.register_hook(self._save_grad)

    def _save_grad(self, grad: torch.Tensor) -> None:
        self.gradients = grad

    def __enter__(self) -> ActivationsAndGradients:
        self._handle = self.layer.register_forward_hook(self._forward_hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
        self.activations = self.gradients = None


class GradCAM:
    """Class-activation maps from one layer of ``model``.

    Example::

        with GradCAM(model, "net.layer4") as cam:
            heat = cam(x, class_score(1))          # (N, 1, *x.spatial), in [0, 1]

    Args:
        model: any network; it is put in eval mode inside the context and restored afterwards.
        layer: a name from :func:`candidate_layers` (or any module name).
        method: a name in :data:`CAM_METHODS`: ``"gradcam"`` (channel weights = mean gradient),
            ``"gradcampp"`` (Grad-CAM++), or ``"hirescam"`` (gradient x activation per voxel) -- the faithful
            choice for a *region* of a segmentation, because averaging the gradient over the whole window
            (Grad-CAM) throws away where in the window the evidence was.
    """

    def __init__(self, model: nn.Module, layer: str, method: Method = "gradcam") -> None:
        modules = dict(model.named_modules())
        if layer not in modules:
            known = ", ".join(candidate_layers(model)[-8:])
            raise ModelError(f"no layer {layer!r} in the model; last candidate layers: {known}")
        if method not in CAM_METHODS:
            raise ModelError(f"method must be gradcam, gradcampp or hirescam, got {method!r}")
        self.model, self.layer, self.method = model, modules[layer], method
        self.layer_name = layer
        self.weights = CAM_METHODS[method]()
        self.hooks = ActivationsAndGradients(self.layer)
        self._stack: ExitStack | None = None

    def __enter__(self) -> GradCAM:
        with ExitStack() as stack:
            stack.enter_context(eval_mode(self.model))
            stack.enter_context(self.hooks)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = None

    def raw(self, x: torch.Tensor, score: ScoreFn) -> torch.Tensor:
        """The un-normalised map at the target layer's resolution, (N, 1, *layer_spatial), >= 0."""
        if not self.hooks.active:
            raise ModelError("use GradCAM as a context manager: `with GradCAM(model, layer) as cam: ...`")
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            s = score(self.model(x))
            torch.autograd.backward((s.unsqueeze(0) if s.ndim == 0 else s).sum())
        acts, grads = self.hooks.activations, self.hooks.gradients
        if acts is None or grads is None:
            raise ModelError(f"layer {self.layer_name!r} did not take part in the forward pass with gradients")
        acts, grads = acts.detach().float(), grads.detach().float()
        weights = self.weights.weights(acts, grads)
        self.model.zero_grad(set_to_none=True)
        return F.relu((weights * acts).sum(1, keepdim=True))

    def __call__(self, x: torch.Tensor, score: ScoreFn, normalise: bool = True) -> torch.Tensor:
        """The map upsampled to ``x``'s spatial size, (N, 1, *x.shape[2:]); in [0, 1] when ``normalise``."""
        cam = self.raw(x, score)
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=False).clamp_min(0)
        return normalise_cam(cam) if normalise else cam
