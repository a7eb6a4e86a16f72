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
    # Tried and measured (issue 32, BENCHMARKS.md): the same pools per axis taken at the first stages (an
    # anisotropic task's coarse axis pooled early, as a plain loop's isotropic strides do) makes the step of
    # 96 x 96 x 16 at 0.9 x 0.9 x 4 mm ~1.4x faster (0.24 vs 0.35 s), but the finest features then have half the
    # slices and the small lesion of that task fell from 0.919 (2 seeds) to 0.65 / 0.82 / 0.19 (3 seeds) at 300 s:
    # nnU-Net's order is kept.
    reason = (
        "CPU: the small option, MONAI UNet 16..256 with nnU-Net's strides (a strided first convolution: far "
        "fewer full-resolution operations than DynUNet, more steps in the time budget)"
    )
    return "unet", kwargs, reason
