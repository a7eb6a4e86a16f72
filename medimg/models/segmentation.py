"""3D segmentation networks from plain keyword arguments (so LightningCLI can build them from YAML)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from medimg.errors import ModelError

__all__ = ["SEGMENTATION_NETS", "segmentation_net"]


def _unet(in_channels: int, out_channels: int, spatial_dims: int, **kw: Any) -> nn.Module:
    from monai.networks.nets import UNet

    opts: dict[str, Any] = {"channels": (16, 32, 64, 128, 256), "strides": (2, 2, 2, 2), "num_res_units": 2}
    opts.update(kw)
    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **opts)


def _dynunet(in_channels: int, out_channels: int, spatial_dims: int, **kw: Any) -> nn.Module:
    from monai.networks.nets import DynUNet

    # nnU-Net-style 3D full-resolution defaults for ~1 mm isotropic patches of 96^3 or 128^3
    opts: dict[str, Any] = {
        "kernel_size": [[3] * spatial_dims] * 5,
        "strides": [[1] * spatial_dims] + [[2] * spatial_dims] * 4,
        "filters": (32, 64, 128, 256, 320),
        "norm_name": "instance",
        "deep_supervision": False,
        "deep_supr_num": 2,
        "res_block": False,
    }
    opts.update(kw)
    opts["upsample_kernel_size"] = opts.get("upsample_kernel_size", opts["strides"][1:])
    return DynUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **opts)


def _segresnet(in_channels: int, out_channels: int, spatial_dims: int, **kw: Any) -> nn.Module:
    from monai.networks.nets import SegResNet

    opts: dict[str, Any] = {"init_filters": 16, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1)}
    opts.update(kw)
    return SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **opts)


def _swinunetr(in_channels: int, out_channels: int, spatial_dims: int, **kw: Any) -> nn.Module:
    from monai.networks.nets.swin_unetr import SwinUNETR

    opts: dict[str, Any] = {"feature_size": 24}
    opts.update(kw)
    return SwinUNETR(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **opts)


SEGMENTATION_NETS: dict[str, Callable[..., nn.Module]] = {
    "unet": _unet,
    "dynunet": _dynunet,
    "segresnet": _segresnet,
    "swinunetr": _swinunetr,
}


def segmentation_net(
    name: str = "unet", *, in_channels: int = 1, out_channels: int = 2, spatial_dims: int = 3, **kwargs: Any
) -> nn.Module:
    """A MONAI segmentation network by name: ``unet``, ``dynunet``, ``segresnet`` or ``swinunetr``.

    ``out_channels`` counts the background. Keyword arguments override medimg's defaults and go to the MONAI
    class unchanged (e.g. ``channels=(8, 16, 32, 64)`` for a small UNet, ``deep_supervision=True`` for DynUNet,
    whose training-mode output then stacks the deep-supervision heads on dim 1).
    """
    if name not in SEGMENTATION_NETS:
        raise ModelError(f"unknown segmentation net {name!r}; choose one of {', '.join(SEGMENTATION_NETS)}")
    try:
        return SEGMENTATION_NETS[name](in_channels, out_channels, spatial_dims, **kwargs)
    except TypeError as exc:
        raise ModelError(f"bad arguments for {name}: {exc}") from exc
