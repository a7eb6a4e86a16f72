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

__all__ = ["load_task", "prepare", "segment", "to_input_grid"]


def prepare(task: Any, image: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Load ``image`` and apply the checkpoint's preprocessing: (original MetaTensor, preprocessed MetaTensor)."""
    from medimg.transforms.pipelines import LoadVolumed, Preprocessing, preprocessing

    prep = task.hparams.get("preprocessing")
    if not prep:
        raise MedimgError("checkpoint carries no preprocessing (was it trained with medimg fit?)")
    p = Preprocessing.from_dict(prep)
    original = LoadVolumed(["image"])({"image": image})["image"]
    data = preprocessing(p, keys=["image"], load=False)({"image": original.clone()})["image"]
    return original, data


def to_input_grid(values: torch.Tensor, data: Any, original: Any, mode: str = "nearest") -> np.ndarray[Any, Any]:
    """Resample (1, X', Y', Z') ``values`` on the preprocessed grid of ``data`` back onto ``original``'s grid."""
    from monai.data import MetaTensor
    from monai.transforms import ResampleToMatch

    meta_dict = {k: v for k, v in dict(data.meta).items() if k != "affine"}
    meta = MetaTensor(values.float().cpu(), affine=data.affine, meta=meta_dict)
    back = ResampleToMatch(mode=mode)(meta, img_dst=original)
    out = np.asarray(back[0].detach().cpu().numpy())
    if out.shape != tuple(original.shape[1:]):
        raise MedimgError(f"internal: resampled shape {out.shape} != input shape {tuple(original.shape[1:])}")
    return out


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
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task = load_task(ckpt, dev) if isinstance(ckpt, (str, os.PathLike)) else ckpt.to(dev).eval()
    original, data = prepare(task, image)
    autocast: Any = contextlib.nullcontext()
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        autocast = torch.autocast(device_type=dev.type, dtype=dtype)
    elif precision not in ("32", "32-true"):
        raise MedimgError(f"precision must be 32, bf16-mixed or 16-mixed, got {precision!r}")
    with torch.no_grad(), autocast:
        logits = task.infer(data.unsqueeze(0).to(dev), progress=progress)
    pred = torch.argmax(logits.float(), dim=1).to(torch.float32).cpu()  # (1, X, Y, Z) on the preprocessed grid
    mask = to_input_grid(pred, data, original, mode="nearest").astype(np.uint8)
    volume = Volume(mask, np.asarray(original.affine, dtype=np.float64), {"modality": "SEG", "source": str(image)})
    if output is not None:
        volume.save(output)
    return volume
