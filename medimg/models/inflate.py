"""Inflating a 2D ImageNet network into 3D (I3D-style), so a 3D CT/MR classifier can start from ImageNet.

Each k x k convolution kernel is repeated ``depth`` times along a new depth axis and divided by ``depth``; 1 x 1
kernels stay 1 deep. Depth padding is *replicate* (in-plane padding stays zeros, as in 2D training), so a volume
that is constant along depth gives exactly the 2D network's output on its slice -- the property the tests check.
Hand-written because neither timm, torchvision nor MONAI inflate 2D weights; supported: the ResNet family
(modules Conv2d, BatchNorm2d, MaxPool2d/AvgPool2d, global pooling, Linear, activations).
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

from medimg.errors import ModelError

__all__ = ["DepthReplicateConv3d", "inflate_2d_to_3d"]

log = logging.getLogger(__name__)


class DepthReplicateConv3d(nn.Conv3d):
    """A Conv3d that pads depth by replication and height/width with zeros (like the 2D conv it came from)."""

    def __init__(self, *args: object, depth_pad: int = 0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.depth_pad = depth_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depth_pad:
            x = F.pad(x, (0, 0, 0, 0, self.depth_pad, self.depth_pad), mode="replicate")
        return super().forward(x)


def _conv(conv: nn.Conv2d, depth: int) -> DepthReplicateConv3d:
    kh, kw = conv.kernel_size
    kd = depth if max(kh, kw) > 1 else 1
    sh, sw = conv.stride
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    if isinstance(conv.padding, str):
        raise ModelError(f"cannot inflate a convolution with padding={conv.padding!r}")
    dh, dw = conv.dilation
    out = DepthReplicateConv3d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=(kd, kh, kw),
        stride=(sh, sh, sw),
        padding=(0, ph, pw),
        dilation=(dh, dh, dw),
        groups=conv.groups,
        bias=conv.bias is not None,
        depth_pad=(kd - 1) // 2 * dh,
    )
    with torch.no_grad():
        out.weight.copy_(conv.weight.unsqueeze(2).repeat(1, 1, kd, 1, 1) / kd)
        if conv.bias is not None and out.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def _bn(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    out = nn.BatchNorm3d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    out.load_state_dict(bn.state_dict())
    return out


def _global_pool(module: nn.Module) -> nn.Module:
    flatten = getattr(module, "flatten", None)
    return nn.Sequential(nn.AdaptiveAvgPool3d(1), flatten if isinstance(flatten, nn.Module) else nn.Identity())


def _replace(module: nn.Module, depth: int) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        return _conv(module, depth)
    if isinstance(module, nn.BatchNorm2d) and type(module) is nn.BatchNorm2d:
        return _bn(module)
    if isinstance(module, nn.MaxPool2d):
        k, s, p = (module.kernel_size, module.stride, module.padding)
        k, s, p = (v if isinstance(v, int) else v[0] for v in (k, s, p))
        return nn.MaxPool3d(k, s, p, ceil_mode=module.ceil_mode)
    if isinstance(module, nn.AvgPool2d):
        k, s, p = (v if isinstance(v, int) else v[0] for v in (module.kernel_size, module.stride, module.padding))
        return nn.AvgPool3d(k, s, p, ceil_mode=module.ceil_mode, count_include_pad=module.count_include_pad)
    if type(module).__name__ in {"SelectAdaptivePool2d", "AdaptiveAvgPool2d"}:
        return _global_pool(module)
    if "2d" in type(module).__name__.lower():
        raise ModelError(
            f"cannot inflate {type(module).__name__}: inflation supports the ResNet family "
            "(Conv2d, BatchNorm2d, pooling, Linear)"
        )
    for name, child in list(module.named_children()):
        setattr(module, name, _replace(child, depth))
    return module


def inflate_2d_to_3d(model: nn.Module, depth: int = 3) -> nn.Module:
    """A 3D copy of a 2D network with I3D-inflated weights (the 2D model is left untouched).

    Args:
        model: a 2D network of the ResNet family (timm or torchvision layout), weights loaded.
        depth: kernel depth for k x k kernels (k > 1); 3 is usual.
    """
    if depth < 1:
        raise ModelError(f"inflation depth must be >= 1, got {depth}")
    out = _replace(copy.deepcopy(model), depth)
    log.info("inflated %s to 3D (kernel depth %d, depth padding replicate)", type(model).__name__, depth)
    return out
