"""The input-channel policy: how RGB-pretrained first-layer kernels become k-channel kernels. One place only."""

from __future__ import annotations

import logging

import torch

from medimg.errors import ModelError

__all__ = ["adapt_input_channels", "single_channel_stats"]

log = logging.getLogger(__name__)


def adapt_input_channels(weight: torch.Tensor, in_channels: int, *, name: str = "first conv") -> torch.Tensor:
    """Turn a first-layer kernel trained on ``weight.shape[1]`` channels into one for ``in_channels``.

    The rule is timm's ``adapt_input_conv`` (used as is, not rewritten):

    * RGB -> 1 channel: **sum** the three kernels. A gray image ``g`` then gives exactly what the RGB network
      gives for ``g`` copied into three channels (the convolution is linear in its input channels).
    * RGB -> 2 channels: keep the first two kernels, scaled by 3/2.
    * RGB -> k > 3 channels: repeat the RGB kernels cyclically (R, G, B, R, ...) and scale by 3/k, which
      keeps the first layer's activation magnitude when the k channels have similar statistics (multi-sequence
      MR, multi-window CT). Not an exact equivalence: only the 1-channel rule is.

    Works for 2D (O, I, H, W) and 3D (O, I, D, H, W) kernels: timm's function takes 2D kernels only, and since
    the rule acts on the channel axis alone, a 3D kernel goes through it with its depth folded into its height.
    Logs what it did.
    """
    from timm.models import adapt_input_conv

    have = int(weight.shape[1])
    if have == in_channels:
        return weight
    if weight.ndim not in (4, 5):
        raise ModelError(f"{name}: cannot adapt a kernel of shape {tuple(weight.shape)} (expected 2D or 3D)")
    o, _, *spatial = weight.shape
    folded = weight.float().reshape(o, have, -1, spatial[-1])  # (O, I, [D x] H, W)
    out = adapt_input_conv(in_channels, folded, base_chans=have).reshape(o, -1, *spatial).to(weight.dtype)
    rule = "summed" if in_channels == 1 else f"repeated and scaled by {have}/{in_channels}"
    log.info("%s: %d -> %d input channels (%s kernels)", name, have, in_channels, rule)
    return out


def single_channel_stats(
    mean: tuple[float, ...], std: tuple[float, ...], in_channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel normalisation for ``in_channels`` from the pretrained RGB statistics.

    One channel gets the mean of the RGB means and of the RGB stds (ImageNet: 0.449 / 0.226), as timm does for
    ``in_chans=1``; k channels get that value k times. Never ImageNet's three values on a one-channel image.
    """
    if len(mean) == in_channels:
        return tuple(mean), tuple(std)
    m = sum(mean) / len(mean)
    s = sum(std) / len(std)
    return (m,) * in_channels, (s,) * in_channels
