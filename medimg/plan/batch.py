"""Patches per training step: as many as the budget allows, within nnU-Net's caps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medimg.plan.budget import Budget
from medimg.plan.fingerprint import DatasetFingerprint
from medimg.plan.measure import Measurement, measure_step
from medimg.plan.patch import MIN_BATCH, Sized

__all__ = ["MAX_DATASET_COVERED", "Batch", "plan_batch"]

#: at most this fraction of the dataset's voxels in one step (nnU-Net's ``max_dataset_covered``)
MAX_DATASET_COVERED = 0.05


@dataclass(frozen=True)
class Batch:
    """Patches per step, the measured step of that batch, and why."""

    size: int
    measurement: Measurement
    reason: str


def plan_batch(sized: Sized, fp: DatasetFingerprint, median: Sequence[int], budget: Budget,
               limit_s: float | None) -> Batch:  # fmt: skip
    """Patches per step: linear in patches from the measurements at MIN_BATCH and at 1; capped by the memory
    budget, 5 % of the dataset's voxels and (CPU, ``limit_s``) the step time the time rule allows."""
    m, channels = sized.measurement, (fp.in_channels, max(fp.labels) + 1)
    one = measure_step(sized.net, sized.net_kwargs, *channels, sized.patch, 1, budget.measure_on,
                       timed=budget.measure_on == "cuda")  # fmt: skip
    per_patch_mem = max(m.memory_bytes - one.memory_bytes, 1.0)
    by_memory = MIN_BATCH + int((budget.memory_bytes - m.memory_bytes) // per_patch_mem)
    n_voxels = float(np.prod(median)) * len(fp.cases)
    by_coverage = max(round(n_voxels * MAX_DATASET_COVERED / float(np.prod(sized.patch))), MIN_BATCH)
    batch = max(min(by_memory, by_coverage), MIN_BATCH)
    reason = (
        f"{batch} patches per step: the memory budget allows {by_memory}, 5 % of the dataset's voxels "
        f"{by_coverage} (nnU-Net's caps); at least {MIN_BATCH}"
    )
    if limit_s is not None:
        per_patch_s = m.step_s / MIN_BATCH  # a CPU step's time grows linearly with its patches
        by_time = MIN_BATCH + int((limit_s - m.step_s) // per_patch_s)
        if by_time < batch:
            batch = max(by_time, MIN_BATCH)
            reason = (
                f"{batch} patches per step: on this CPU a step of more would be slower than the time rule's "
                f"{limit_s:.2f} s (memory would allow {by_memory}, 5 % of the dataset {by_coverage})"
            )
    timed = budget.measure_on != "meta"
    final = (
        m
        if batch == MIN_BATCH and (m.step_s > 0 or not timed)
        else measure_step(sized.net, sized.net_kwargs, *channels, sized.patch, batch, budget.measure_on, timed=timed)
    )
    return Batch(batch, final, reason)
