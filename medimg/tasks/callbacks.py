"""Callbacks and plugins every medimg run uses: run fingerprint, atomic checkpoints, per-rank weight digests."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from medimg.io.atomic import atomic_path, atomic_write_text

__all__ = [
    "AtomicCheckpointIO",
    "RunFingerprint",
    "WeightsDigest",
    "current_attempt",
    "fingerprint",
    "remove_partial_checkpoints",
    "run_dir",
]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed into place: a job killed mid-write leaves the
    previous ``last.ckpt`` intact instead of a truncated one. (Lightning's own save writes the final path
    directly.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(os.fspath(path)) as tmp:
            torch.save(checkpoint, tmp)


_PARTIAL = re.compile(r"^\.(?P<stem>[^.]+)\.[^.]+(?P<suffix>\..+)$")


def remove_partial_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that checkpoint writes killed half-way left in ``folder``; return them.

    :func:`medimg.io.atomic.atomic_path` writes ``.<stem>.<random><suffix>`` next to the destination and renames
    it into place; a ``SIGKILL`` (node loss, the scheduler's hard kill, the OOM killer) between the two leaves
    the temporary file behind. The destination is untouched, and Lightning's ``--ckpt_path last`` does not pick
    the partial file (its name does not start with ``last``), but every kill would leave a checkpoint-sized file
    (hundreds of MB for a real network) and a directory that is no longer only checkpoints. Call it when no
    process writes to ``folder`` (the start of a run, before the first save).
    """
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for path in sorted(root.iterdir()):
        match = _PARTIAL.match(path.name)
        if match and match["suffix"].endswith(".ckpt") and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's folder (the logger's version folder, where the logs and the fingerprint go).

    Under DDP this is a collective call (Lightning broadcasts rank 0's folder): call it on every rank.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint(config: dict[str, Any] | None = None, dataset_digest: str | None = None) -> dict[str, Any]:
    """What made this run: code, library versions, hardware, container, config and data."""
    import monai

    from medimg._version import __version__

    cuda = torch.cuda.is_available()
    return {
        "git_commit": _git_commit(),
        "medimg": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "pytorch_lightning": version("pytorch-lightning"),
        "python": platform.python_version(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "container_image": os.environ.get("MEDIMG_IMAGE"),
        "host": platform.node(),
        "config": config,
        "dataset_digest": dataset_digest,
    }


def current_attempt(started: float | None = None) -> dict[str, Any]:
    """Who runs this attempt of the job: scheduler, job id, restart count, start time, host.

    SLURM sets ``SLURM_JOB_ID`` (``SLURM_ARRAY_JOB_ID``/``SLURM_ARRAY_TASK_ID`` for an array task) and
    ``SLURM_RESTART_COUNT`` (how often the job was requeued; absent before the first requeue); torchrun sets
    ``TORCHELASTIC_RUN_ID`` and ``TORCHELASTIC_RESTART_COUNT``.
    """
    env = os.environ
    if env.get("SLURM_JOB_ID"):
        scheduler = "slurm"
        array = env.get("SLURM_ARRAY_JOB_ID")
        job_id: str | None = f"{array}_{env.get('SLURM_ARRAY_TASK_ID')}" if array else env["SLURM_JOB_ID"]
        restarts = env.get("SLURM_RESTART_COUNT")
    elif env.get("TORCHELASTIC_RUN_ID"):
        scheduler, job_id, restarts = "torchelastic", env["TORCHELASTIC_RUN_ID"], env.get("TORCHELASTIC_RESTART_COUNT")
    else:
        scheduler, job_id, restarts = None, None, None
    when = time.time() if started is None else started
    return {
        "scheduler": scheduler,
        "job_id": job_id,
        "restart_count": int(restarts or 0),
        "started": datetime.fromtimestamp(when, tz=timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "nodes": env.get("SLURM_JOB_NODELIST"),
    }


class RunFingerprint(pl.Callback):
    """Writes ``fingerprint.json`` into the run folder (rank 0).

    It is written at setup and, for ``fit``, again when training starts, after a checkpoint was restored; its
    ``attempts`` list then holds every attempt that led to this state: the attempts recorded in the checkpoint
    this run resumed from (a requeued SLURM job, a resubmission with ``--ckpt_path last``) followed by this one,
    each with its job id, restart count, start time, the checkpoint it resumed from and the epoch/step it
    started at. The list travels inside every checkpoint (this callback's state), so it survives any number of
    requeues.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config
        self.attempt = current_attempt()
        self.previous_attempts: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_attempts = list(state_dict.get("attempts", []))

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return [*self.previous_attempts, self.attempt]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._write(trainer, pl_module)  # at once, so a run that fails before training still has one

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # again, after the checkpoint (and with it the earlier attempts) has been restored
        self.attempt.update(
            resumed_from=str(trainer.ckpt_path) if trainer.ckpt_path else None,
            start_epoch=trainer.current_epoch,
            start_global_step=trainer.global_step,
            log_dir=str(run_dir(trainer)),  # a collective under DDP: every rank calls it
        )
        self._write(trainer, pl_module)

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        folder = run_dir(trainer)  # on every rank: trainer.log_dir is a collective (broadcast) under DDP
        if trainer.global_rank != 0:
            return
        dm = trainer.datamodule if hasattr(trainer, "datamodule") else None
        digest = dm.manifest_digest() if dm is not None and hasattr(dm, "manifest_digest") else None
        config = self.config or {
            "model": dict(pl_module.hparams),
            "data": dict(dm.hparams) if dm is not None else None,
        }
        record = fingerprint(config, digest)
        record["attempts"] = self.attempts
        path = folder / "fingerprint.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=2, default=str))


class WeightsDigest(pl.Callback):
    """At the end of fit, each rank writes the SHA-256 of its weights (``weights_rank<R>.sha256``):
    identical digests prove DDP kept the replicas in sync."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        h = hashlib.sha256()
        for key, value in sorted(pl_module.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        out = run_dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"weights_rank{trainer.global_rank}.sha256", h.hexdigest() + "\n")
