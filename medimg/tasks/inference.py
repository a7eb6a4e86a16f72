"""``segment``: a trained checkpoint applied to a DICOM folder or NIfTI file, mask back in the input's geometry."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medimg.errors import MedimgError
from medimg.export.pipeline import (
    CPU_WINDOWS,
    load_image,
    preprocess,
    refuse_channels,
    seg_algorithm,
    segment_with,
    to_input_grid,
)
from medimg.export.recipe import Recipe
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
    "task_recipe",
    "to_input_grid",
]

log = logging.getLogger(__name__)


def prepare(task: Any, image: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Load ``image`` and apply the checkpoint's preprocessing: (original MetaTensor, preprocessed MetaTensor)."""
    prep = task.hparams.get("preprocessing")
    if not prep:
        raise MedimgError("checkpoint carries no preprocessing (was it trained with medimg fit?)")
    original = load_image(image, int(task.hparams.get("in_channels", 1)))
    return original, preprocess(original, prep)


def check_channels(task: Any, got: int, image: str | os.PathLike[str]) -> None:
    """Refuse an image whose channel / volume count is not the model's ``in_channels`` (one line, exit 2)."""
    refuse_channels(int(task.hparams.get("in_channels", 1)), got, image)


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
    from medimg._version import __version__

    digest = "unknown (task passed in memory)" if ckpt is None else file_sha256(ckpt)
    return seg_algorithm(str(task.hparams.get("net", "unknown")), __version__, digest)


def task_recipe(task: Any, ckpt: str | os.PathLike[str] | None = None) -> Recipe:
    """The inference :class:`~medimg.export.Recipe` of a loaded :class:`~medimg.tasks.SegmentationTask`: its
    preprocessing, sliding-window settings, class names and provenance."""
    from medimg._version import __version__

    hp = task.hparams
    prep = hp.get("preprocessing")
    if not prep:
        raise MedimgError("checkpoint carries no preprocessing (was it trained with medimg fit?)", ckpt)
    return Recipe(
        task="segmentation",
        net=str(hp.get("net", "unknown")),
        in_channels=int(hp.get("in_channels", 1)),
        num_classes=int(hp.get("num_classes", 2)),
        class_names={k: v for k, v in class_names(task, ckpt).items() if k > 0},
        checkpoint_sha256="unknown (task passed in memory)" if ckpt is None else file_sha256(ckpt),
        medimg_version=__version__,
        preprocessing=dict(prep),
        roi_size=tuple(int(r) for r in hp.get("roi_size", (96, 96, 96))),
        sw_batch_size=int(hp.get("sw_batch_size", 4)),
        overlap=float(hp.get("sw_overlap", 0.25)),
    )


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
    runs on it with streamed Gaussian blending (:func:`medimg.export.blending.sliding_window_labels`: the same
    windows and weights as :meth:`~medimg.tasks.SegmentationTask.infer`, without holding every class's
    probabilities for the whole volume), and the label map is resampled (nearest neighbour) back onto the
    input's voxel grid: the returned :class:`Volume` has the input's shape and affine. ``output``
    (``.nii.gz``) is written atomically; an ``output`` ending in ``.dcm`` is written as a DICOM SEG referencing
    the DICOM input (see :func:`medimg.io.seg.write_seg`), and is refused before inference for a NIfTI input or
    a series medimg resamples on load.

    Args:
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast; 16-mixed needs a GPU).
        device: ``"cuda"``/``"cpu"``; default: CUDA when available.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(ckpt, (str, os.PathLike)):
        path: str | os.PathLike[str] | None = ckpt
        task = load_task(ckpt, dev)
    else:
        path, task = None, ckpt.to(dev).eval()
    autocast: Any = contextlib.nullcontext()
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        autocast = torch.autocast(device_type=dev.type, dtype=dtype)
    elif precision not in ("32", "32-true"):
        raise MedimgError(f"precision must be 32, bf16-mixed or 16-mixed, got {precision!r}")
    net = task.net.eval()

    def predictor(x: torch.Tensor) -> torch.Tensor:
        with autocast:
            out: torch.Tensor = net(x)
        return out

    windows = CPU_WINDOWS if dev.type == "cpu" else None
    recipe = task_recipe(task, path)
    return segment_with(predictor, recipe, image, output, device=dev, windows_per_call=windows, progress=progress)
