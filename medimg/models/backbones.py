"""Classification backbones for one-channel medical images, 2D (timm) and 3D (MONAI, or inflated from 2D).

Why timm for 2D: one ``create_model`` call covers every family researchers reach for (ResNet, DenseNet,
EfficientNet, ConvNeXt, ViT, ...), it exposes each model's first convolution and classifier by name
(``pretrained_cfg``), it owns the channel-adaptation rule (``adapt_input_conv``), and it reads torchvision's
ResNet state dicts with the same key names. torchvision would need per-family surgery for all three.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from medimg.errors import ModelError
from medimg.models.channels import adapt_input_channels, single_channel_stats
from medimg.models.weights import check_compatible, load_state_dict

__all__ = ["BACKBONES_2D", "BACKBONES_3D", "Backbone", "create_backbone", "list_backbones", "strip_wrapper_prefix"]

log = logging.getLogger(__name__)

#: medimg name -> timm model name. Any other timm model is reachable as ``"timm:<name>"``.
BACKBONES_2D: dict[str, str] = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "densenet121": "densenet121",
    "efficientnet_b0": "efficientnet_b0",
    "efficientnet_b3": "efficientnet_b3",
    "convnext_atto": "convnext_atto",
    "convnext_tiny": "convnext_tiny",
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
}
#: 3D backbones: MONAI's ResNet family (MedicalNet layout), spatial_dims=3.
BACKBONES_3D: tuple[str, ...] = ("resnet10", "resnet18", "resnet34", "resnet50")
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def list_backbones(spatial_dims: int = 2) -> list[str]:
    """The names :func:`create_backbone` accepts for ``spatial_dims`` (2 also accepts ``timm:<any timm name>``)."""
    return list(BACKBONES_2D) if spatial_dims == 2 else list(BACKBONES_3D)


class Backbone(nn.Module):
    """A network plus the input normalisation that matches its weights.

    ``forward(x)`` expects ``x`` of shape (N, in_channels, H, W[, D]) with intensities already mapped to [0, 1]
    (e.g. a CT window); with ``normalize=True`` it subtracts ``mean`` and divides by ``std`` per channel first.
    The single-channel statistics are derived from the pretrained ones (see :func:`single_channel_stats`).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        name: str,
        spatial_dims: int,
        in_channels: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.normalize = normalize
        shape = (1, in_channels) + (1,) * spatial_dims
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ModelError(
                f"{self.name} expects input (N, {self.in_channels}, {', '.join('HWD'[: self.spatial_dims])}), "
                f"got shape {tuple(x.shape)}"
            )
        if self.normalize:
            mean, std = self.get_buffer("mean"), self.get_buffer("std")
            x = (x - mean) / std
        out: torch.Tensor = self.net(x)
        return out

    @property
    def last_stage(self) -> str:
        """Name, within this module, of the network's last feature stage -- the usual Grad-CAM layer
        (``"net.layer4"`` for a ResNet, ``"net.features.norm5"`` for a DenseNet): timm's ``feature_info``."""
        info = getattr(self.net, "feature_info", None)
        if info:
            return f"net.{info[-1]['module']}"
        if hasattr(self.net, "layer4"):  # MONAI ResNets (and ResNets inflated to 3D)
            return "net.layer4"
        raise ModelError(f"{self.name} does not name its feature stages; pick a layer from candidate_layers()")


def create_backbone(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 1,
    spatial_dims: int = 2,
    weights: str | os.PathLike[str] | None = None,
    inflate_from_2d: bool = False,
    inflate_depth: int = 3,
    normalize: bool = True,
    **kwargs: Any,
) -> Backbone:
    """Build a classification backbone, optionally from a local pretrained weights file.

    Args:
        name: see :func:`list_backbones`; e.g. ``"resnet18"``, ``"densenet121"``, ``"efficientnet_b0"``,
            ``"convnext_tiny"``, ``"vit_small"``, or ``"timm:<name>"``.
        num_classes: outputs of the classifier head. A head in ``weights`` with another size is dropped and
            re-initialised (logged).
        in_channels: channels of *your* images (1 for CT/MR/X-ray). RGB weights are adapted by
            :func:`~medimg.models.channels.adapt_input_channels` (sum of kernels for 1 channel).
        spatial_dims: 2, or 3 for volumes.
        weights: a local ``.pth``/``.safetensors`` state dict (torchvision/timm layout for 2D; MedicalNet/MONAI
            layout for 3D ResNets; a 2D file with ``inflate_from_2d=True``), or medimg's own: the
            ``state_dict()`` of a :class:`Backbone` (keys ``net.*``). Nothing is ever downloaded.
        inflate_from_2d: with ``spatial_dims=3``, build the 2D timm network, load ``weights`` into it, then
            inflate it to 3D (:func:`~medimg.models.inflate.inflate_2d_to_3d`). ResNet family only.
        normalize: apply the pretrained mean/std inside ``forward``. With 1 channel that is the mean of the RGB
            statistics (:func:`~medimg.models.channels.single_channel_stats`), so the output equals the RGB
            net's on the gray image copied to three channels exactly only with ``normalize=False``.
        **kwargs: passed to ``timm.create_model`` (2D) or MONAI's ResNet (3D), e.g. ``img_size`` for ViTs.
    """
    if spatial_dims not in (2, 3):
        raise ModelError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if spatial_dims == 3 and not inflate_from_2d:
        return _monai_resnet(name, num_classes=num_classes, in_channels=in_channels, weights=weights, **kwargs)
    net, mean, std = _timm(name, num_classes=num_classes, in_channels=in_channels, weights=weights, **kwargs)
    if spatial_dims == 3:
        from medimg.models.inflate import inflate_2d_to_3d

        net = inflate_2d_to_3d(net, inflate_depth)
    return Backbone(
        net, name=name, spatial_dims=spatial_dims, in_channels=in_channels, mean=mean, std=std, normalize=normalize
    )


def _timm(
    name: str, *, num_classes: int, in_channels: int, weights: str | os.PathLike[str] | None, **kwargs: Any
) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    import timm

    if name.startswith("timm:"):
        timm_name = name.removeprefix("timm:")
        if timm_name not in timm.list_models():
            raise ModelError(f"unknown timm model {timm_name!r}")
    elif name in BACKBONES_2D:
        timm_name = BACKBONES_2D[name]
    else:
        raise ModelError(f"unknown 2D backbone {name!r}; choose one of {', '.join(BACKBONES_2D)} or 'timm:<name>'")
    net = timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
    cfg = dict(getattr(net, "pretrained_cfg", {}) or {})
    first = cfg.get("first_conv") or "conv1"
    first = first[0] if isinstance(first, (list, tuple)) else first
    head = cfg.get("classifier") or "fc"
    head = head[0] if isinstance(head, (list, tuple)) else head
    if weights is not None:
        _load(net, load_state_dict(weights), first_conv=f"{first}.weight", head=f"{head}.", source=weights)
    mean, std = single_channel_stats(
        tuple(cfg.get("mean", _IMAGENET[0])), tuple(cfg.get("std", _IMAGENET[1])), in_channels
    )
    return net, mean, std


def _load(
    net: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    first_conv: str,
    head: str,
    source: str | os.PathLike[str],
    extra_prefixes: tuple[str, ...] = (),
) -> None:
    """Adapt the first conv, drop a head of the wrong size (and known extras), check, then load."""
    own = net.state_dict()
    state = strip_wrapper_prefix(state, own)
    if first_conv in state and first_conv in own and state[first_conv].shape[1] != own[first_conv].shape[1]:
        state[first_conv] = adapt_input_channels(state[first_conv], int(own[first_conv].shape[1]), name=first_conv)
    dropped = [
        k
        for k in state
        if k.startswith(extra_prefixes or ("\0",))
        or (k.startswith(head) and (k not in own or own[k].shape != state[k].shape))
    ]
    for k in dropped:
        del state[k]
    if any(k.startswith(head) for k in dropped):
        log.info("classifier head %s* re-initialised (the weights file has another number of classes)", head)
    check_compatible(net, state, source, may_miss=(head,))
    net.load_state_dict(state, strict=False)
    log.info("loaded %d tensors from %s", len(state), os.fspath(source))


def strip_wrapper_prefix(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with medimg's wrapper prefixes removed: ``net.`` of a saved :class:`Backbone`
    (``torch.save(model.state_dict())``), ``net.net.`` of a ``ClassificationTask``'s weights.

    Removed only while every key carries the prefix and the bare network's own keys (``own``) do not, so a
    timm / torchvision / MedicalNet state dict passes unchanged.
    """
    while state and all(k.startswith("net.") for k in state) and not any(k.startswith("net.") for k in own):
        state = {k.removeprefix("net."): v for k, v in state.items()}
    return state


def _monai_resnet(
    name: str, *, num_classes: int, in_channels: int, weights: str | os.PathLike[str] | None, **kwargs: Any
) -> Backbone:
    from monai.networks import nets

    if name not in BACKBONES_3D:
        raise ModelError(f"unknown 3D backbone {name!r}; choose one of {', '.join(BACKBONES_3D)}")
    options: dict[str, Any] = {"conv1_t_stride": 2, "shortcut_type": "B", "bias_downsample": False}
    options.update(kwargs)
    net = getattr(nets, name)(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes, **options)
    if weights is not None:
        # MedicalNet checkpoints carry a segmentation head (conv_seg.*) that a classifier does not use
        _load(
            net,
            load_state_dict(weights),
            first_conv="conv1.weight",
            head="fc.",
            source=weights,
            extra_prefixes=("conv_seg.",),
        )
    # MedicalNet normalises each volume to zero mean / unit variance itself: no fixed statistics to apply.
    return Backbone(
        net,
        name=name,
        spatial_dims=3,
        in_channels=in_channels,
        mean=(0.0,) * in_channels,
        std=(1.0,) * in_channels,
        normalize=False,
    )
