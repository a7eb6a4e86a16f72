"""A training checkpoint back as its LightningModule, for what trains or adapts it further.

Inference never needs this: :func:`medimg.inference.open_model` builds the network from the checkpoint without
Lightning. ``load_task`` is for code that needs the :class:`~medimg.tasks.SegmentationTask` itself (``medimg
adapt`` writes an adapted checkpoint, the per-site scoring runs the task's validation path).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from medimg.errors import MedimgError

__all__ = ["load_task", "load_task_bytes"]


def load_task(ckpt: str | os.PathLike[str], device: str | torch.device = "cpu") -> Any:
    """Load a :class:`~medimg.tasks.SegmentationTask` checkpoint (weights only, no pickled code), in eval mode."""
    from medimg.tasks.segmentation import SegmentationTask

    path = Path(ckpt)
    if not path.is_file():
        raise MedimgError("checkpoint not found", path)
    try:
        task = SegmentationTask.load_from_checkpoint(path, map_location=device, weights_only=True)
    except Exception as exc:  # Lightning/torch raise many kinds for a wrong or damaged file
        raise MedimgError(f"cannot load checkpoint ({type(exc).__name__}: {exc})", path) from exc
    return task.eval()


def load_task_bytes(ckpt: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[Any, bytes, str]:
    """The task, the checkpoint's bytes and their SHA-256, from one read of the file (for code that rewrites
    the checkpoint after changing the task, as ``medimg adapt`` does)."""
    from medimg.tasks.segmentation import SegmentationTask

    path = Path(ckpt)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MedimgError(f"cannot read the checkpoint ({exc.strerror})", path) from exc
    try:
        task = SegmentationTask.load_from_checkpoint(io.BytesIO(raw), map_location=device, weights_only=True)
    except Exception as exc:  # Lightning/torch raise many kinds for a wrong or damaged file
        raise MedimgError(f"cannot load checkpoint ({type(exc).__name__}: {exc})", path) from exc
    return task.eval(), raw, hashlib.sha256(raw).hexdigest()
