"""How a planned run spends its time budget: steps, epochs (one validation each) and the stop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from medimg.plan.budget import Budget
from medimg.plan.measure import Measurement

__all__ = ["Schedule", "schedule", "sliding_windows"]

#: nnU-Net's epoch: 250 training iterations
STEPS_PER_EPOCH = 250
#: at least this many epochs (validations, cosine-schedule points) in a run, of at least this many steps
MIN_EPOCHS, MIN_STEPS_PER_EPOCH = 10, 20
#: validate at most this many times per run (each is a sliding-window pass over the validation fold)
VALIDATIONS_PER_RUN = 10
#: validations may take this share of the time budget
VALIDATION_TIME_SHARE = 0.1
#: a validation costs its sliding-window forwards times this (loading, resampling back, Dice, HD95's distance
#: transforms): an estimate, not a measurement, which is why the validations are spaced by time
VALIDATION_OVERHEAD = 2.0
#: SegmentationTask's default sliding-window overlap
SW_OVERLAP = 0.25
#: max_epochs is this many times the estimated epochs, so that max_time (not a step estimate) ends a timed run
EPOCH_HEADROOM = 2.0
#: share of the time budget for caching, checkpoints and the data pipeline beyond the measured step
OVERHEAD_TIME_SHARE = 0.1


@dataclass(frozen=True)
class Schedule:
    """How a run spends its time budget: steps in all, per epoch (one validation each), epochs at most."""

    steps: int
    steps_per_epoch: int
    max_epochs: int
    validations: int
    reason: str


def sliding_windows(shape: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    """Windows MONAI's ``sliding_window_inference`` runs over a ``shape`` volume with ``patch`` windows: per axis
    ``ceil((s - p) / step) + 1`` with ``step = max(int(p * (1 - overlap)), 1)``, one where the patch covers the
    axis (MONAI's ``dense_patch_slices``), multiplied."""
    n = 1
    for s, p in zip(shape, patch, strict=True):
        n *= 1 if s <= p else math.ceil((s - p) / max(int(p * (1 - overlap)), 1)) + 1
    return n


def schedule(
    budget: Budget, m: Measurement, batch: int, n_val_cases: int, val_shape: Sequence[int], patch: Sequence[int]
) -> Schedule:
    """Steps and validations for the time budget, from the measured step ``m`` of ``batch`` patches (also the
    sliding window's batch).

    A validation is priced as the sliding-window forwards over the validation fold (``m.infer_s`` per window
    batch) times :data:`VALIDATION_OVERHEAD` (loading, resampling, Dice and HD95); validations get at most
    :data:`VALIDATION_TIME_SHARE` of the budget. The steps fill what is left after :data:`OVERHEAD_TIME_SHARE`
    for caching and checkpoints. One validation ends every epoch, so an epoch is ``steps / validations`` steps;
    ``max_epochs`` leaves :data:`EPOCH_HEADROOM` x the estimate, so that the time budget, not the estimate, ends
    a timed run -- inside an epoch that Lightning then validates, so the final weights are scored -- and the
    learning rate anneals to whichever stop comes first (:func:`medimg.tasks.optim.adamw_cosine`)."""
    if m.step_s <= 0:  # a GPU plan made without a GPU: nothing timed
        return Schedule(
            STEPS_PER_EPOCH * 1000, STEPS_PER_EPOCH, 1000, 1000,
            "no GPU here to time a step: nnU-Net's 1000 epochs of 250 steps, one validation each; trainer.max_time "
            "stops it",
        )  # fmt: skip
    batch_windows = math.ceil(sliding_windows(val_shape, patch, SW_OVERLAP) / batch)
    val_s = n_val_cases * batch_windows * m.infer_s * VALIDATION_OVERHEAD
    validations = int(min(max(VALIDATION_TIME_SHARE * budget.time_s // max(val_s, 1e-6), 1), VALIDATIONS_PER_RUN))
    train_s = budget.time_s * (1 - OVERHEAD_TIME_SHARE) - validations * val_s
    steps = max(int(train_s / m.step_s), 1)
    steps_per_epoch = max(steps // validations, MIN_STEPS_PER_EPOCH)
    max_epochs = math.ceil(EPOCH_HEADROOM * steps / steps_per_epoch)
    reason = (
        f"~{steps} steps of {m.step_s:.2f} s (measured on {budget.measure_on}) fill the {budget.time_s:.0f} s budget "
        f"less {OVERHEAD_TIME_SHARE:.0%} for caching and checkpoints and {validations} validations of ~{val_s:.1f} s "
        f"({n_val_cases} cases x {batch_windows} window batches x {m.infer_s:.2f} s x {VALIDATION_OVERHEAD:g}; at "
        f"most {VALIDATION_TIME_SHARE:.0%} of the budget): one per epoch of {steps_per_epoch} steps; "
        f"{EPOCH_HEADROOM:g}x headroom so that max_time ends the run"
    )
    return Schedule(steps, steps_per_epoch, max_epochs, validations, reason)


def dhms(seconds: float) -> str:
    """Lightning's ``DD:HH:MM:SS`` for ``max_time``, rounded up to the second."""
    s = math.ceil(seconds)
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
