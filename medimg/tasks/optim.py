"""The one optimiser/scheduler recipe both tasks use: AdamW with a cosine learning rate.

Without a time budget the cosine runs over the epochs (stepped once per epoch, reaching its minimum after
``max_epochs``). With one (``trainer.max_time``, Lightning's ``Timer``) the run ends at whichever stop comes
first -- the time budget or the last planned step -- so the schedule follows the larger of the two progress
fractions and is stepped every step: a machine slower than the plan measured still ends the run annealed
instead of mid-schedule at a high rate (written here because no torch or Lightning scheduler knows the clock).
That schedule holds the peak rate and anneals with a cosine over the last :data:`COOLDOWN_SHARE` of the run
("warmup-stable-decay", Hu et al. 2024, MiniCPM; Haegele et al. 2024 show it matches a full cosine at the same
budget): a timed run is short and under-trained, and a cosine from the first step halves its mean rate
(``benchmarks/plan_bench.py``: in 100 s runs the plain MONAI loop lost ~0.01 held-out Dice with a full cosine).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import pytorch_lightning as pl

__all__ = ["COOLDOWN_SHARE", "adamw_cosine", "budget_progress", "stable_then_cosine"]

#: a timed run anneals over this last share of its budget, at the peak rate before
COOLDOWN_SHARE = 0.2


def budget_progress(trainer: pl.Trainer, step: int) -> float:
    """Share of the run done after ``step`` optimiser steps, in [0, 1]: the larger of the steps' share of
    ``trainer.estimated_stepping_batches`` and the wall-clock share of ``trainer.max_time``."""
    from pytorch_lightning.callbacks import Timer

    total = float(trainer.estimated_stepping_batches)
    done = step / total if math.isfinite(total) and total > 0 else 0.0
    for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):  # type: ignore[attr-defined]
        remaining = timer.time_remaining()
        if remaining is not None:
            elapsed = timer.time_elapsed()
            done = max(done, elapsed / max(elapsed + remaining, 1e-9))
    return min(max(done, 0.0), 1.0)


def stable_then_cosine(progress: float, cooldown: float = COOLDOWN_SHARE) -> float:
    """Learning-rate factor at ``progress`` in [0, 1]: 1 until ``1 - cooldown``, then a half cosine to 0 at 1."""
    start = 1.0 - cooldown
    if progress <= start:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min((progress - start) / max(cooldown, 1e-9), 1.0)))


def _has_time_budget(trainer: pl.Trainer) -> bool:
    from pytorch_lightning.callbacks import Timer

    return any(isinstance(c, Timer) and c.time_remaining() is not None for c in trainer.callbacks)  # type: ignore[attr-defined]


def adamw_cosine(params: Any, lr: float, weight_decay: float, trainer: pl.Trainer) -> dict[str, Any]:
    """What ``configure_optimizers`` returns: AdamW on ``params`` and a cosine learning rate from ``lr`` to 0 --
    over ``trainer.max_epochs`` epochs (at least 1; ``None`` counts as 1), or, when the trainer has a time budget,
    :func:`stable_then_cosine` of :func:`budget_progress`, stepped every step."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if _has_time_budget(trainer):
        sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: stable_then_cosine(budget_progress(trainer, step))
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(trainer.max_epochs or 1), 1))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
