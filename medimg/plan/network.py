"""The segmentation network for a topology: DynUNet with nnU-Net's features on a GPU, the small UNet on a CPU."""

from __future__ import annotations

from typing import Any

from medimg.plan.topology import Topology

__all__ = ["network", "pools_early"]

#: DynUNet features per stage on a GPU (nnU-Net: 32, doubling, capped at 320)
GPU_BASE_FEATURES, GPU_MAX_FEATURES = 32, 320
#: UNet channels per stage on a CPU (medimg's default UNet: 16, doubling, capped at 256)
CPU_BASE_FEATURES, CPU_MAX_FEATURES = 16, 256


def _features(stages: int, base: int, cap: int) -> list[int]:
    return [min(base * 2**i, cap) for i in range(stages)]


def pools_early(strides: list[list[int]]) -> list[list[int]]:
    """The same pools per axis as ``strides`` (so the same patch divisor and bottleneck), each axis' pools taken
    at the first stages instead of the last: ``[[2, 2, 1], [2, 2, 1], [2, 2, 2]]`` -> ``[[2, 2, 2], [2, 2, 1],
    [2, 2, 1]]``.

    nnU-Net delays pooling a coarse axis until the fine ones have caught up with its spacing, which keeps every
    slice through the first stages, the stages with the largest feature maps: on a GPU that buys accuracy
    cheaply, on a CPU under a time budget it buys it with steps. Issue 32's task (0.9 x 0.9 x 4 mm, patch
    96 x 96 x 16, UNet 16..256, a training step of 2 patches on 2 threads): 0.33-0.37 s in nnU-Net's order,
    0.23-0.25 s pooled early (the plain loop's 16..128 with isotropic strides: 0.19 s); 80 x 64 x 32 CT at
    1.5 x 1.5 x 3 mm: 0.28-0.33 s against 0.21-0.25 s (BENCHMARKS.md, issue 32).
    """
    pools = [sum(s[a] == 2 for s in strides) for a in range(len(strides[0]))] if strides else []
    return [[2 if pools[a] > i else 1 for a in range(len(pools))] for i in range(len(strides))]


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
        "strides": pools_early(strides[1:]),
        "num_res_units": 2,
        "norm": "instance",
    }
    reason = (
        "CPU: the small option, MONAI UNet 16..256 with nnU-Net's pools per axis, each axis pooled at the first "
        "stages (a strided first convolution and small early feature maps: far fewer operations than DynUNet "
        "in nnU-Net's order, more steps in the time budget)"
    )
    return "unet", kwargs, reason
