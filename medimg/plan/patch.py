"""The patch: nnU-Net's start (the data's aspect, as many voxels as 256^3, clipped to the median case), shrunk
one divisor at a time along the axis largest relative to the median shape until a training step fits the memory
budget."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg.errors import ConfigError
from medimg.plan.budget import Budget
from medimg.plan.measure import Measurement, measure_step
from medimg.plan.network import network
from medimg.plan.topology import MIN_FEATURE_EDGE, Topology, fit_patch

__all__ = ["INITIAL_PATCH_VOXELS", "MIN_BATCH", "Sized", "fit_memory", "initial_patch", "shrink_patch"]

#: the first patch tried holds as many voxels as 256^3 (nnU-Net's start), then shrinks to fit
INITIAL_PATCH_VOXELS = 256**3
#: nnU-Net's minimum batch; batch norm statistics and a Dice over a batch need two patches
MIN_BATCH = 2


@dataclass(frozen=True)
class Sized:
    """A patch, its topology and network, and the measured step of :data:`MIN_BATCH` patches; ``tried``: the patch
    sizes measured on the way."""

    patch: tuple[int, ...]
    topo: Topology
    net: str
    net_kwargs: dict[str, Any]
    net_reason: str
    measurement: Measurement
    tried: int


def initial_patch(spacing: Sequence[float], median_shape: Sequence[int]) -> tuple[int, ...]:
    """Aspect 1 / spacing, :data:`INITIAL_PATCH_VOXELS` voxels, clipped to the median shape (voxels)."""
    aspect = 1.0 / np.asarray(spacing, dtype=np.float64)
    scaled = aspect * (INITIAL_PATCH_VOXELS / float(np.prod(aspect))) ** (1 / len(spacing))
    return tuple(min(round(float(s)), int(m)) for s, m in zip(scaled, median_shape, strict=True))


def _reduce(patch: tuple[int, ...], median: Sequence[int], topo: Topology) -> tuple[int, ...] | None:
    """One divisor smaller along the axis largest relative to the median shape (nnU-Net; ties: the longest
    axis), or None when no axis can shrink without dropping below two bottleneck edges."""
    order = sorted(range(len(patch)), key=lambda a: (patch[a] / median[a], patch[a]), reverse=True)
    for a in order:
        if patch[a] - topo.divisor[a] >= 2 * MIN_FEATURE_EDGE:
            return tuple(p - topo.divisor[a] if i == a else p for i, p in enumerate(patch))
    return None


def shrink_patch(
    spacing: Sequence[float], patch: tuple[int, ...], median: Sequence[int], topo: Topology
) -> tuple[tuple[int, ...], Topology] | None:
    """The next smaller patch and its topology, or None below a U-Net of three stages."""
    smaller = _reduce(patch, median, topo)
    if smaller is None:
        return None
    shrunk = fit_patch(spacing, smaller)
    return shrunk if shrunk[1].num_stages >= 3 else None


def fit_memory(
    spacing: Sequence[float],
    median: Sequence[int],
    channels: tuple[int, int],
    budget: Budget,
    dataset_dir: str | os.PathLike[str],
) -> Sized:
    """Step 1 of a plan: shrink from :func:`initial_patch` until a step of :data:`MIN_BATCH` fits the memory
    budget (counted on the meta device, or measured on cuda); ``channels``: (in, out)."""
    patch, topo = fit_patch(spacing, initial_patch(spacing, median))
    if topo.num_stages < 3:
        raise ConfigError(
            f"the median case is only {tuple(median)} voxels at {tuple(spacing)} mm: too small for a 3D U-Net with "
            "two poolings; use finer spacing or larger images",
            dataset_dir,
        )
    tried = 0
    while True:
        name, kwargs, net_reason = network(budget.device, topo)
        m = measure_step(name, kwargs, *channels, patch, MIN_BATCH, budget.measure_on, timed=False)
        tried += 1
        if m.memory_bytes <= budget.memory_bytes:
            return Sized(patch, topo, name, kwargs, net_reason, m, tried)
        shrunk = shrink_patch(spacing, patch, median, topo)
        if shrunk is None:
            raise ConfigError(
                f"even a {patch} patch needs {m.memory_bytes / 2**30:.2f} GiB for a step of {MIN_BATCH}; "
                "give more memory",
                dataset_dir,
            )
        patch, topo = shrunk
