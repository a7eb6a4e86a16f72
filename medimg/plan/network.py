"""The segmentation network for a topology: DynUNet with nnU-Net's features on a GPU, the small UNet on a CPU."""

from __future__ import annotations

from typing import Any

from medimg.plan.topology import Topology

__all__ = ["network"]

#: DynUNet features per stage on a GPU (nnU-Net: 32, doubling, capped at 320)
GPU_BASE_FEATURES, GPU_MAX_FEATURES = 32, 320
#: UNet channels per stage on a CPU (medimg's default UNet: 16, doubling, capped at 256)
CPU_BASE_FEATURES, CPU_MAX_FEATURES = 16, 256


def _features(stages: int, base: int, cap: int) -> list[int]:
    return [min(base * 2**i, cap) for i in range(stages)]


def network(device: str, topo: Topology) -> tuple[str, dict[str, Any], str]:
    """(net name, net_kwargs, reason) for the topology: DynUNet on a GPU, the small UNet on a CPU."""
    strides = [list(s) for s in topo.strides]
    if device == "cuda":
        kwargs = {
            "kernel_size": [list(k) for k in topo.kernels],
            "strides": strides,
            "filters": _features(topo.num_stages, GPU_BASE_FEATURES, GPU_MAX_FEATURES),
            "norm_name": "instance",
        }
        return "dynunet", kwargs, "MONAI DynUNet with nnU-Net's topology and 32..320 features"
    kwargs = {
        "channels": _features(topo.num_stages, CPU_BASE_FEATURES, CPU_MAX_FEATURES),
        "strides": strides[1:],
        "num_res_units": 2,
        "norm": "instance",
    }
    reason = (
        "CPU: the small option, MONAI UNet 16..256 with nnU-Net's strides (a strided first convolution: far "
        "fewer full-resolution operations than DynUNet, more steps in the time budget)"
    )
    return "unet", kwargs, reason
