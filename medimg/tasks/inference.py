"""``segment``: a trained checkpoint applied to a DICOM folder or NIfTI file, mask back in the input's geometry."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medimg.errors import MedimgError
from medimg.io.volume import Volume

if TYPE_CHECKING:
    from medimg.io.seg import AlgorithmInfo

__all__ = [
    "algorithm_info",
    "check_channels",
    "class_names",
    "file_sha256",
    "load_task",
    "prepare",
    "segment",
    "to_input_grid",
]

log = logging.getLogger(__name__)


def prepare(task: Any, image: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Load ``image`` and apply the checkpoint's preprocessing: (original MetaTensor, preprocessed MetaTensor)."""
    from medimg.transforms.pipelines import LoadVolumed, Preprocessing, preprocessing

    prep = task.hparams.get("preprocessing")
    if not prep:
        raise MedimgError("checkpoint carries no preprocessing (was it trained with medimg fit?)")
    p = Preprocessing.from_dict(prep)
    original = LoadVolumed(["image"])({"image": image})["image"]
    check_channels(task, original.shape[0], image)
    data = preprocessing(p, keys=["image"], load=False)({"image": original.clone()})["image"]
    return original, data


def check_channels(task: Any, got: int, image: str | os.PathLike[str]) -> None:
    """Refuse an image whose channel / volume count is not the model's ``in_channels`` -- in one line, before the
    network sees it (a 4D diffusion or fMRI series loads as (i, j, k, t) and would reach the net as t channels)."""
    expected = int(task.hparams.get("in_channels", 1))
    if got != expected:
        raise MedimgError(
            f"the image has {got} channels or volumes (a 4D series?) but the model takes {expected}; pass "
            f"{'one volume (medimg convert --split-4d)' if expected == 1 else f'{expected}-channel input'}",
            image,
        )


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


def class_names(task: Any, ckpt: str | os.PathLike[str] | None = None) -> dict[int, str]:
    """Class names by label value, for a DICOM SEG's segments: the checkpoint's ``labels`` hyper-parameter when
    it has one, else the ``labels`` of the ``dataset.json`` its data module was trained on (when that folder is
    still there), else ``"class N"``."""
    import json
    import pickle

    n = int(task.hparams.get("num_classes", 2))
    names = {k: f"class {k}" for k in range(1, n)}
    found = task.hparams.get("labels")
    if not found and ckpt is not None:
        try:
            saved = torch.load(ckpt, map_location="cpu", weights_only=True).get("datamodule_hyper_parameters") or {}
            spec = Path(str(saved.get("dataset_dir") or "")) / "dataset.json"
            if saved.get("dataset_dir") and spec.is_file():
                found = json.loads(spec.read_text()).get("labels")
        except (OSError, RuntimeError, ValueError, AttributeError, pickle.UnpicklingError) as exc:  # a nicety only
            log.info("class names not found with the checkpoint (%s); using 'class N'", type(exc).__name__)
    names.update({int(k): str(v) for k, v in (found or {}).items() if int(k) > 0})
    return {0: "background", **names}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (a checkpoint), read in 1 MiB chunks: what ties an answer or a result to its model."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def algorithm_info(task: Any, ckpt: str | os.PathLike[str] | None = None) -> AlgorithmInfo:
    """The :class:`~medimg.io.seg.AlgorithmInfo` of a checkpoint: net name, checkpoint SHA-256, medimg version."""
    from medimg import __version__
    from medimg.io.seg import AlgorithmInfo as Info

    digest = "unknown (task passed in memory)" if ckpt is None else file_sha256(ckpt)
    net = str(task.hparams.get("net", "unknown"))
    return Info(f"medimg {net}", __version__, {"net": net, "checkpoint_sha256": digest})


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
    returned :class:`Volume` has the input's shape and affine. ``output`` (``.nii.gz``) is written atomically;
    an ``output`` ending in ``.dcm`` is written as a DICOM SEG referencing the DICOM input (see
    :func:`medimg.io.seg.write_seg`), and is refused before inference for a NIfTI input or a series medimg
    resamples on load.

    Args:
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast; 16-mixed needs a GPU).
        device: ``"cuda"``/``"cpu"``; default: CUDA when available.
    """
    source = None
    if output is not None and Path(output).name.lower().endswith(".dcm"):
        from medimg.io.seg import source_slices

        source = source_slices(image)  # fail before inference: NIfTI input, resampled or mixed series
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
    # Fortran order: slice k is one contiguous block, so a DICOM SEG is written without a transposed copy
    mask = to_input_grid(pred, data, original, mode="nearest").astype(np.uint8, order="F")
    volume = Volume(mask, np.asarray(original.affine, dtype=np.float64), {"modality": "SEG", "source": str(image)})
    if source is not None and output is not None:
        from medimg.io.seg import write_seg

        path = ckpt if isinstance(ckpt, (str, os.PathLike)) else None
        write_seg(volume, source, output, labels=class_names(task, path), algorithm=algorithm_info(task, path))
    elif output is not None:
        volume.save(output)
    return volume
