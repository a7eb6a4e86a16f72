"""``segment``: a trained checkpoint applied to a DICOM folder or NIfTI file, mask back in the input's geometry."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.errors import MedimgError
from medimg.io.volume import Volume

__all__ = ["load_task", "segment"]


def load_task(ckpt: str | os.PathLike[str], device: str | torch.device = "cpu") -> Any:
    """Load a :class:`~medimg.tasks.SegmentationTask` checkpoint (weights only, no pickled code)."""
    from medimg.tasks.segmentation import SegmentationTask

    path = Path(ckpt)
    if not path.is_file():
        raise MedimgError("checkpoint not found", path)
    try:
        task = SegmentationTask.load_from_checkpoint(path, map_location=device, weights_only=True)
    except Exception as exc:  # Lightning/torch raise many kinds for a wrong or damaged file
        raise MedimgError(f"cannot load checkpoint ({type(exc).__name__}: {exc})", path) from exc
    return task.eval()


def segment(
    ckpt: str | os.PathLike[str] | Any,
    image: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    precision: str = "32",
    device: str | None = None,
    progress: bool = False,
) -> Volume:
    """Segment ``image`` (DICOM folder/file or NIfTI) with a checkpoint (path or loaded task).

    The checkpoint's own preprocessing (orientation, spacing, intensity) is applied, sliding-window inference
    runs on it, and the label map is resampled (nearest neighbour) back onto the input's voxel grid: the
    returned :class:`Volume` has the input's shape and affine. ``output`` (``.nii.gz``) is written atomically.

    Args:
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast; 16-mixed needs a GPU).
        device: ``"cuda"``/``"cpu"``; default: CUDA when available.
    """
    from monai.transforms import ResampleToMatch

    from medimg.transforms.pipelines import LoadVolumed, Preprocessing, preprocessing

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task = load_task(ckpt, dev) if isinstance(ckpt, (str, os.PathLike)) else ckpt.to(dev).eval()
    prep = task.hparams.get("preprocessing")
    if not prep:
        raise MedimgError("checkpoint carries no preprocessing (was it trained with medimg fit?)", str(ckpt))
    p = Preprocessing.from_dict(prep)
    original = LoadVolumed(["image"])({"image": image})["image"]
    data = preprocessing(p, keys=["image"], load=False)({"image": original.clone()})["image"]
    autocast: Any = contextlib.nullcontext()
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        autocast = torch.autocast(device_type=dev.type, dtype=dtype)
    elif precision not in ("32", "32-true"):
        raise MedimgError(f"precision must be 32, bf16-mixed or 16-mixed, got {precision!r}")
    with torch.no_grad(), autocast:
        logits = task.infer(data.unsqueeze(0).to(dev), progress=progress)
    pred = torch.argmax(logits.float(), dim=1).to(torch.float32).cpu()  # (1, X, Y, Z) on the preprocessed grid
    from monai.data import MetaTensor

    pred = MetaTensor(pred, affine=data.affine, meta=dict(data.meta))
    back = ResampleToMatch(mode="nearest")(pred, img_dst=original)
    mask = np.asarray(back[0].cpu().numpy(), dtype=np.uint8)
    affine = np.asarray(original.affine, dtype=np.float64)
    if mask.shape != tuple(original.shape[1:]):
        raise MedimgError(f"internal: mask shape {mask.shape} != input shape {tuple(original.shape[1:])}")
    volume = Volume(mask, affine, {"modality": "SEG", "source": str(image)})
    if output is not None:
        volume.save(output)
    return volume
