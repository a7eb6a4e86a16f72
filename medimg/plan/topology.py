"""U-Net topology for a patch and a voxel spacing: pooling strides and kernel sizes per stage (nnU-Net's rule).

The rule is nnU-Net v2's ``get_pool_and_conv_props`` (``experiment_planning/experiment_planners/network_topology.py``),
which MONAI's DynUNet tutorial uses too: at each stage, pool (stride 2) every axis whose current spacing is
within a factor 2 of the finest one and whose feature map is still at least ``2 * min_edge`` voxels long; an
axis' kernel becomes 3 once its spacing is within a factor 2 of the finest (1 before: no in-plane mixing across
thick slices at full resolution). The difference from nnU-Net: the patch is then shrunk, never padded, to a
multiple of ``2 ** pools`` per axis, so it never exceeds the data's median shape (nnU-Net pads it up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIN_FEATURE_EDGE", "Topology", "fit_patch", "topology"]

#: the shortest edge (voxels) of the bottleneck feature map, nnU-Net's ``UNet_featuremap_min_edge_length``
MIN_FEATURE_EDGE = 4
#: spacing ratio below which two axes count as "the same resolution" (pooled together, both with kernel 3)
SPACING_RATIO = 2.0


@dataclass(frozen=True)
class Topology:
    """``strides[0]`` is the input stage's (all 1); ``kernels`` has one entry per stage (the bottleneck last)."""

    kernels: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    pools_per_axis: tuple[int, ...]

    @property
    def divisor(self) -> tuple[int, ...]:
        """What each patch axis must be a multiple of: ``2 ** pools`` on that axis."""
        return tuple(2**p for p in self.pools_per_axis)

    @property
    def num_stages(self) -> int:
        return len(self.strides)


def topology(spacing: Sequence[float], patch: Sequence[int], min_edge: int = MIN_FEATURE_EDGE) -> Topology:
    """Strides and kernels for ``patch`` (voxels) at ``spacing`` (mm), nnU-Net's algorithm (see module doc)."""
    dim = len(spacing)
    cur_spacing, cur_size = [float(s) for s in spacing], [float(p) for p in patch]
    kernel = [1] * dim
    pools = [0] * dim
    strides: list[tuple[int, ...]] = [(1,) * dim]
    kernels: list[tuple[int, ...]] = []
    while True:
        valid = [a for a in range(dim) if cur_size[a] >= 2 * min_edge]
        if not valid:
            break
        finest = min(cur_spacing[a] for a in valid)
        valid = [a for a in valid if cur_spacing[a] / finest < SPACING_RATIO]
        if len(valid) == 1 and cur_size[valid[0]] < 3 * min_edge:
            break  # pooling a single axis only pays while it is still long
        if not valid:
            break
        for a in range(dim):
            if kernel[a] != 3 and cur_spacing[a] / min(cur_spacing) < SPACING_RATIO:
                kernel[a] = 3
        stride = tuple(2 if a in valid else 1 for a in range(dim))
        for a in valid:
            pools[a] += 1
            cur_spacing[a] *= 2
            cur_size[a] = -(-cur_size[a] // 2)
        strides.append(stride)
        kernels.append(tuple(kernel))
    kernels.append((3,) * dim)  # the bottleneck always mixes every axis
    return Topology(tuple(kernels), tuple(strides), tuple(pools))


def fit_patch(
    spacing: Sequence[float], patch: Sequence[int], min_edge: int = MIN_FEATURE_EDGE
) -> tuple[tuple[int, ...], Topology]:
    """Shrink ``patch`` to multiples of its topology's divisor (recomputing the topology until it is stable)."""
    size = tuple(int(p) for p in patch)
    while True:
        topo = topology(spacing, size, min_edge)
        fitted = tuple(max(d, (s // d) * d) for s, d in zip(size, topo.divisor, strict=True))
        if fitted == size:
            return size, topo
        size = fitted
