"""Preemption: the scheduler's warning signal becomes a checkpoint at a batch boundary and a request to requeue.

SLURM sends ``SIGUSR1`` to every task of a job some time before it ends it (``#SBATCH --signal=USR1@120``: two
minutes before the time limit; ``scancel --signal=USR1`` at any time). What a run does with those two minutes
decides whether the next attempt loses one batch or one day.

Lightning's own answer (``SLURMEnvironment(auto_requeue=True)``) saves ``hpc_ckpt_N.ckpt`` *inside the signal
handler* and calls ``scontrol requeue`` from rank 0. Under DDP the handler runs wherever each rank happens to
be — one rank between two steps, the other blocked in the gradient all-reduce — and the checkpoint's barrier
then meets a different collective on the other rank: a hang until the time limit, the lost work nnU-Net users
report. Here the handler only records that the signal came (:func:`install_handler`); at the end of the next
training batch, a point every rank reaches in step, the ranks agree on it with one all-reduce, save
``last.ckpt`` (the file ``--ckpt_path last`` resumes from), rank 0 writes :data:`REQUEUE_MARKER` and every
rank exits with :data:`EXIT_REQUEUE`. ``scripts/slurm_fit.sbatch`` sees the marker and requeues the job: the
next attempt starts with the same job id and run folder and resumes inside the interrupted epoch, with the
epoch counter, the optimizer and the learning-rate schedule where they were.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl

from medimg.io.atomic import atomic_write_text

__all__ = [
    "EXIT_REQUEUE",
    "REQUEUE_MARKER",
    "REQUEUE_SIGNAL",
    "Preempted",
    "RequeueOnSignal",
    "install_handler",
    "requested",
    "restore_handler",
]

REQUEUE_SIGNAL = signal.SIGUSR1
"""The warning signal: SLURM's ``--signal=USR1@<seconds>`` and Lightning's ``SLURMEnvironment`` default."""

EXIT_REQUEUE = 75
"""Exit status of a run that checkpointed after the warning signal (``EX_TEMPFAIL`` in BSD ``sysexits.h``:
temporary failure, try again)."""

REQUEUE_MARKER = "requeue.json"
"""Written into ``trainer.default_root_dir`` once every rank has saved: the batch script requeues when it is
there (srun's exit status cannot say it: ``--kill-on-bad-exit`` turns the other ranks' status into 143)."""

_state: dict[str, Any] = {"signum": None, "received_at": None, "previous": None}


class Preempted(Exception):
    """Raised on every rank after the checkpoint for a requeue is on disk; ``medimg fit`` exits with 75."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Only a flag: no I/O, no collective, nothing that could meet another rank in a different place.
    if _state["signum"] is None:
        _state["signum"], _state["received_at"] = signum, time.time()


def install_handler(signum: signal.Signals = REQUEUE_SIGNAL) -> bool:
    """Record ``signum`` instead of dying of it (the default action of ``SIGUSR1`` ends the process).

    Installed by ``medimg fit`` before the model is built, so a warning that arrives during start-up is kept
    too. Returns ``False`` (nothing installed) outside the main thread, where Python cannot set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    _state.update(signum=None, received_at=None, previous=signal.signal(signum, _on_signal))
    return True


def restore_handler(signum: signal.Signals = REQUEUE_SIGNAL) -> None:
    """Put back the handler :func:`install_handler` replaced (a notebook kernel keeps its own)."""
    previous = _state.pop("previous", None)
    _state["previous"] = None
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signum, previous)


def requested() -> bool:
    """Whether the warning signal has arrived in this process since :func:`install_handler`."""
    return _state["signum"] is not None


def _requeue_checkpoint_path(trainer: pl.Trainer) -> Path:
    """``last.ckpt`` of the run's checkpoint callback, so that ``--ckpt_path last`` finds the newest state;
    Lightning's ``hpc_ckpt_N.ckpt`` in the root folder when no callback keeps a last checkpoint."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
            return Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
    return Path(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))


class RequeueOnSignal(pl.Callback):
    """At the end of each training batch: if any rank got the warning signal, checkpoint and stop for a requeue.

    The check is one all-reduce of a boolean per batch (Lightning already broadcasts its SIGTERM flag per
    batch the same way). The checkpoint is saved from ``on_train_batch_end``, a position Lightning's loops
    resume from exactly: the next attempt starts with the following batch of the same epoch. A signal seen at
    the last batch of an epoch is acted on one batch later, after the epoch's validation and checkpoint.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            # The epoch's last batch: a checkpoint here would be resumed as "epoch done" without the epoch's
            # validation and end-of-epoch logging. Let the epoch finish and act after the next batch (every rank
            # has the same number of batches, so all skip this decision together).
            return
        if not trainer.strategy.reduce_boolean_decision(requested(), all=False):
            return
        path = _requeue_checkpoint_path(trainer)
        for logger in trainer.loggers:
            logger.save()  # the metrics of the finished epochs are on disk before anyone exits
        trainer.save_checkpoint(path)  # every rank calls it; rank 0 writes; it ends with a barrier
        if trainer.is_global_zero:
            marker = {
                "checkpoint": str(path),
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "batch_idx": batch_idx,
                "signal": signal.Signals(_state["signum"] or REQUEUE_SIGNAL).name,
                "signal_received_at": _state["received_at"],
                "job_id": os.environ.get("SLURM_JOB_ID"),
                "restart_count": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
            }
            atomic_write_text(Path(trainer.default_root_dir) / REQUEUE_MARKER, json.dumps(marker, indent=2))
        trainer.strategy.barrier("medimg-requeue")
        raise Preempted(f"checkpoint for a requeue saved to {path} at epoch {trainer.current_epoch}")
