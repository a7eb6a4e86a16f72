"""``run.json``: what a run cost and how it ended, written while it runs (for ``medimg runs``).

:class:`RunRecord` writes, on rank 0 and atomically, into the run folder (the logger's ``version_N``):

* ``stage`` (``fit``, ``validate``, ``test``) and ``status``: ``running`` while it runs (a run killed by
  ``SIGKILL``, the OOM killer or node loss keeps it), then ``finished``, ``stopped_by_time``
  (``--trainer.max_time`` ran out), ``preempted`` (the warning signal of :mod:`medimg.tasks.preemption`:
  checkpoint saved, job requeued), ``interrupted`` (Ctrl-C) or ``crashed`` (an exception; its type is kept,
  never its message, which may quote a path with a patient's name),
* ``wall_s`` since setup, ``devices`` (devices per node x nodes) and ``device_hours`` = wall x devices, with
  ``device_kind`` (``gpu`` on CUDA, else ``cpu``: CPU-hours count processes, not cores),
* ``peak_rss_mb``: the peak resident memory of this (rank 0) process (``getrusage``), ``peak_gpu_mb``: CUDA's
  peak allocated memory on rank 0's device (``null`` without CUDA), and the same per epoch in ``per_epoch``,
* ``epochs``: the epochs completed.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import datetime, timezone
from typing import Any

import pytorch_lightning as pl
import torch

from medimg.io.atomic import atomic_write_text
from medimg.tasks.callbacks import run_dir

__all__ = ["RUN_RECORD", "RunRecord", "peak_rss_mb"]

#: The file name in the run folder.
RUN_RECORD = "run.json"
_MB = 1024.0 * 1024.0


def peak_rss_mb() -> float:
    """The peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / _MB if sys.platform == "darwin" else peak / 1024.0


def _peak_gpu_mb(trainer: pl.Trainer) -> float | None:
    root = trainer.strategy.root_device
    if root.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated(root) / _MB


class RunRecord(pl.Callback):
    """Writes ``run.json`` (see the module docstring) at setup, after every training epoch and when ``fit`` ends,
    however it ends."""

    def __init__(self) -> None:
        self.started = time.time()
        self.stage = "fit"
        self.per_epoch: list[dict[str, Any]] = []
        self.epochs = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.started, self.stage = time.time(), stage
        self._write(trainer, "running")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stage == "validate":  # `medimg validate`; during fit, the fit's end says how it ended
            self._write(trainer, "finished")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, "finished")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs = trainer.current_epoch + 1
        gpu = _peak_gpu_mb(trainer)
        self.per_epoch.append(
            {
                "epoch": trainer.current_epoch,
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "peak_gpu_mb": None if gpu is None else round(gpu, 1),
            }
        )
        if gpu is not None:
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)
        self._write(trainer, "running")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, "stopped_by_time" if _timed_out(trainer) else "finished")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        from medimg.tasks.preemption import Preempted

        if isinstance(exception, Preempted):
            self._write(trainer, "preempted")
        elif isinstance(exception, KeyboardInterrupt):
            self._write(trainer, "interrupted")
        else:
            self._write(trainer, "crashed", error=type(exception).__name__)

    def _write(self, trainer: pl.Trainer, status: str, error: str | None = None) -> None:
        folder = run_dir(trainer)  # a collective under DDP: every rank calls it
        if trainer.global_rank != 0:
            return
        wall = time.time() - self.started
        devices = max(1, int(trainer.num_devices) * int(trainer.num_nodes))
        gpu_peaks = [e["peak_gpu_mb"] for e in self.per_epoch if e["peak_gpu_mb"] is not None]
        now_gpu = _peak_gpu_mb(trainer)
        record = {
            "stage": self.stage,
            "status": status,
            "error": error,
            "started": datetime.fromtimestamp(self.started, tz=timezone.utc).isoformat(timespec="seconds"),
            "updated": datetime.now(tz=timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(wall, 3),
            "devices": devices,
            "device_kind": "gpu" if trainer.strategy.root_device.type == "cuda" else "cpu",
            "device_hours": wall * devices / 3600.0,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_gpu_mb": None if now_gpu is None else round(max([now_gpu, *gpu_peaks]), 1),
            "epochs": self.epochs,
            "per_epoch": self.per_epoch,
        }
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / RUN_RECORD, json.dumps(record, indent=2))


def _timed_out(trainer: pl.Trainer) -> bool:
    """Whether ``--trainer.max_time`` (Lightning's :class:`~pytorch_lightning.callbacks.Timer`) ended the fit."""
    from pytorch_lightning.callbacks import Timer

    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, Timer):
            remaining = cb.time_remaining()
            if remaining is not None and remaining <= 0:
                return True
    return False
