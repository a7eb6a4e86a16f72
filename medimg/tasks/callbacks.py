"""Callbacks and plugins every medimg run uses: run fingerprint, atomic checkpoints, per-rank weight digests."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from medimg.io.atomic import atomic_path, atomic_write_text

__all__ = ["AtomicCheckpointIO", "RunFingerprint", "WeightsDigest", "fingerprint", "run_dir"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed into place: a job killed mid-write leaves the
    previous ``last.ckpt`` intact instead of a truncated one. (Lightning's own save writes the final path
    directly.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(os.fspath(path)) as tmp:
            torch.save(checkpoint, tmp)


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

    import medimg

    cuda = torch.cuda.is_available()
    return {
        "git_commit": _git_commit(),
        "medimg": medimg.__version__,
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


class RunFingerprint(pl.Callback):
    """Writes ``fingerprint.json`` into the run folder (rank 0) when fitting/testing starts."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        folder = run_dir(trainer)  # on every rank: trainer.log_dir is a collective (broadcast) under DDP
        if trainer.global_rank != 0:
            return
        dm = trainer.datamodule if hasattr(trainer, "datamodule") else None
        digest = dm.manifest_digest() if dm is not None and hasattr(dm, "manifest_digest") else None
        config = self.config or {
            "model": dict(pl_module.hparams),
            "data": dict(dm.hparams) if dm is not None else None,
        }
        path = folder / "fingerprint.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(fingerprint(config, digest), indent=2, default=str))


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
