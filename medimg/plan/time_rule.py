"""The CPU plan's time rule: a few candidate patches timed, the largest that leaves enough steps chosen.

Under a short CPU budget nnU-Net's GPU rule (the largest patch the memory allows) buys context with steps: in
issue 32's MR-like task (0.9 x 0.9 x 4 mm, 128 x 128 x 24 voxels, 12 cases) the whole-image patch ran ~178 steps of
1.39 s in 300 s and reached mean Dice 0.871, where a hand-sized 96 x 96 x 16 patch (37.5 % of the voxels) ran 607
steps and reached 0.938. Both saw about as many voxels (178 x 2 x 1.0 vs 607 x 2 x 0.375 image-equivalents: a
convolution's time is linear in voxels, so "samples per training voxel" cannot tell them apart); the number of
optimiser steps can. So the rule counts steps:

* the candidates are the memory rule's patch and the smaller patches nnU-Net's shrinking passes through
  (:func:`medimg.plan.patch.shrink_patch`), down to :data:`MIN_PATCH_SHARE_CPU` of the median case's voxels;
  at most :data:`MAX_TIMED_CANDIDATES` of them, spread evenly in log-voxels, are timed, each with its own network
  (the topology of its patch; :data:`CANDIDATE_TIMED_STEPS` steps after a warm-up,
  :func:`medimg.plan.measure.measure_step`), smallest first, skipping those that would be far too slow;
* :func:`choose_by_time` (a pure function of those measurements, each no slower than a larger candidate's:
  :func:`monotone`) takes the largest whose step of
  :data:`~medimg.plan.patch.MIN_BATCH` leaves at least :data:`MIN_STEPS_CPU` steps in
  :data:`TRAIN_TIME_SHARE` of the budget; if none does, the smallest (too little context is worse than too few
  steps below that floor, the floor's own reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medimg.plan.budget import Budget
from medimg.plan.measure import Measurement, measure_step
from medimg.plan.network import network
from medimg.plan.patch import MIN_BATCH, Sized, shrink_patch
from medimg.plan.topology import Topology

__all__ = ["Candidate", "TimeChoice", "choose_by_time", "fit_time", "monotone", "step_limit"]

#: the time rule keeps at least this many training steps in the budget: issue 32's 178 steps fell 0.067 Dice
#: short of 607 at equal wall-clock; 500 sits below 607 (the step count that worked) with room for the data
#: pipeline, which the measured step does not include
MIN_STEPS_CPU = 500
#: ... but never a patch below this share of the median case's voxels: a patch of under half the median shape
#: per axis sees too little context (benchmarks/plan_bench.py: a 48^3 x 4 plain loop beat 40^3 x 2 planned
#: patches at 100 s on a 56^3 task)
MIN_PATCH_SHARE_CPU = 1 / 8
#: the share of the time budget the steps are planned for (validations and overheads take the rest)
TRAIN_TIME_SHARE = 0.8
#: candidates timed at most: with a warm-up and CANDIDATE_TIMED_STEPS steps each, a few seconds on a CPU
MAX_TIMED_CANDIDATES = 4
#: a candidate is not timed when its step, extrapolated linearly in voxels from the smaller ones, would exceed this
#: many times the step limit (it cannot be chosen unless the smaller ones read over 2x slow; the whole image of
#: issue 32 would take ~6 s to time)
SKIP_FACTOR = 2.0
#: a candidate reading over the step limit is timed again when it is also this many times slower than the smaller
#: candidates' seconds per voxel predict (a load spike, not the patch)
RETIME_FACTOR = 1.5
#: timed steps per candidate after the warm-up, the fastest kept (one alone read 1.9 s for a 0.13 s step on this
#: shared machine); the chosen one is then measured in full
CANDIDATE_TIMED_STEPS = 2


@dataclass(frozen=True)
class Candidate:
    """A candidate patch and its measured seconds per step of MIN_BATCH patches (None: not timed)."""

    patch: tuple[int, ...]
    step_s: float | None


@dataclass(frozen=True)
class TimeChoice:
    """Which candidate the time rule took (an index into the candidates), the step limit, and why."""

    index: int
    step_limit_s: float
    reason: str


def step_limit(time_s: float, min_steps: int = MIN_STEPS_CPU) -> float:
    """The slowest step (seconds) that leaves ``min_steps`` steps in :data:`TRAIN_TIME_SHARE` of ``time_s``."""
    return time_s * TRAIN_TIME_SHARE / min_steps


def monotone(candidates: Sequence[Candidate]) -> list[float | None]:
    """Each candidate's step time, no slower than any larger candidate's measured step (``candidates`` largest
    first): a smaller patch that read slower was timed while other processes took the cores."""
    out: list[float | None] = []
    best: float | None = None
    for c in candidates:
        if c.step_s is not None:
            best = c.step_s if best is None else min(best, c.step_s)
        out.append(best if c.step_s is not None else None)
    return out


def choose_by_time(candidates: Sequence[Candidate], time_s: float, min_steps: int = MIN_STEPS_CPU) -> TimeChoice:
    """The largest of ``candidates`` (ordered largest first) whose step (measured, :func:`monotone`) leaves
    ``min_steps`` steps in :data:`TRAIN_TIME_SHARE` of ``time_s`` seconds; the smallest when none does."""
    if not candidates:
        raise ValueError("no candidate patch to choose from")
    limit = step_limit(time_s, min_steps)
    steps_s = monotone(candidates)
    fits = [i for i, t in enumerate(steps_s) if t is not None and t <= limit]
    index = fits[0] if fits else len(candidates) - 1

    def line(i: int, c: Candidate) -> str:
        t = steps_s[i]
        if t is None:
            return f"{list(c.patch)} not timed"
        steps = int(time_s * TRAIN_TIME_SHARE / max(t, 1e-9))
        read = f" (read {c.step_s:.2f} s)" if c.step_s is not None and c.step_s > t else ""
        return f"{list(c.patch)} {t:.2f} s{read} ({steps} steps)" + (" <- chosen" if i == index else "")

    verdict = "" if fits else f"; none leaves {min_steps} steps: the smallest, fewer steps rather than less context"
    reason = (
        f"CPU time rule: the largest candidate whose measured step of {MIN_BATCH} leaves >= {min_steps} steps "
        f"(MIN_STEPS_CPU) in {TRAIN_TIME_SHARE:.0%} of the {time_s:.0f} s budget, i.e. a step <= {limit:.2f} s; "
        f"candidates down to {MIN_PATCH_SHARE_CPU:.3g} of the median case's voxels: "
        + ", ".join(line(i, c) for i, c in enumerate(candidates))
        + verdict
    )
    chosen = TimeChoice(index, limit, reason)
    return chosen


def ladder(
    spacing: Sequence[float], start: tuple[int, ...], topo: Topology, median: Sequence[int]
) -> list[tuple[tuple[int, ...], Topology]]:
    """``start`` and the smaller patches nnU-Net's shrinking passes through, down to :data:`MIN_PATCH_SHARE_CPU`
    of the median shape's voxels, thinned to :data:`MAX_TIMED_CANDIDATES` spread evenly in log-voxels."""
    floor = MIN_PATCH_SHARE_CPU * float(np.prod(median))
    rungs = [(start, topo)]
    while (shrunk := shrink_patch(spacing, rungs[-1][0], median, rungs[-1][1])) is not None:
        if float(np.prod(shrunk[0])) < floor:
            break
        rungs.append(shrunk)
    if len(rungs) <= MAX_TIMED_CANDIDATES:
        return rungs
    logs = np.log([float(np.prod(p)) for p, _ in rungs])
    targets = np.linspace(logs[0], logs[-1], MAX_TIMED_CANDIDATES)
    picks = sorted({int(np.argmin(np.abs(logs - t))) for t in targets})
    return [rungs[i] for i in picks]


def _time_candidate(
    rung: tuple[tuple[int, ...], Topology], channels: tuple[int, int], budget: Budget, limit: float, per_voxel: float
) -> float:
    """Seconds of a step of MIN_BATCH ``rung`` patches with its network. A reading over ``limit`` that is also
    over :data:`RETIME_FACTOR` x what ``per_voxel`` (the fastest seconds per voxel so far; 0: none yet) predicts is
    taken again, the faster kept: on a shared machine one reading can be several times the step."""
    name, kwargs, _ = network(budget.device, rung[1])
    voxels, best = float(np.prod(rung[0])), float("inf")
    for _ in range(2):
        m = measure_step(name, kwargs, *channels, rung[0], MIN_BATCH, budget.measure_on,
                         repeats=CANDIDATE_TIMED_STEPS, time_inference=False)  # fmt: skip
        best = min(best, m.step_s)
        if best <= limit or (per_voxel and best <= RETIME_FACTOR * per_voxel * voxels):
            break
    return best


def fit_time(spacing: Sequence[float], median: Sequence[int], channels: tuple[int, int], sized: Sized,
             budget: Budget) -> tuple[Sized, TimeChoice]:  # fmt: skip
    """Step 2 of a CPU plan: time the candidates below the memory rule's patch (smallest first; one whose step,
    extrapolated linearly in voxels from the fastest per-voxel time so far, would exceed :data:`SKIP_FACTOR` x
    :func:`step_limit` is not timed, nor any larger), choose with :func:`choose_by_time`, measure the choice in
    full."""
    rungs = ladder(spacing, sized.patch, sized.topo, median)
    limit = step_limit(budget.time_s)
    times: list[float | None] = [None] * len(rungs)
    per_voxel = 0.0  # seconds per voxel: the smallest candidate is always timed
    for i in reversed(range(len(rungs))):
        voxels = float(np.prod(rungs[i][0]))
        if per_voxel * voxels > SKIP_FACTOR * limit:
            break  # a convolution's time is linear in voxels: this one and the larger ones are too slow
        step_s = _time_candidate(rungs[i], channels, budget, limit, per_voxel)
        times[i], per_voxel = step_s, min(per_voxel or step_s / voxels, step_s / voxels)
    choice = choose_by_time([Candidate(p, t) for (p, _), t in zip(rungs, times, strict=True)], budget.time_s)
    patch, topo = rungs[choice.index]
    name, kwargs, net_reason = network(budget.device, topo)
    m = measure_step(name, kwargs, *channels, patch, MIN_BATCH, budget.measure_on, timed=True)
    chosen_s = monotone([Candidate(p, t) for (p, _), t in zip(rungs, times, strict=True)])[choice.index]
    if chosen_s is not None and chosen_s < m.step_s:  # two timings of one step: others' load only ever adds time
        m = Measurement(m.memory_bytes, chosen_s, m.infer_s)
    tried = sized.tried + sum(t is not None for t in times)
    return Sized(patch, topo, name, kwargs, net_reason, m, tried), choice
