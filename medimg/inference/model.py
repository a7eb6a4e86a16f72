"""A trained model as one object, opened once: :func:`open_model` reads a checkpoint (``.ckpt``) or an exported
model (``.onnx``, ``.pt2``) and gives a :class:`Model` -- its recipe (preprocessing, windows, classes), its
SHA-256, its predictor, and the ``nn.Module`` where there is one -- whose :meth:`Model.segment` and
:meth:`Model.classify` run the inference pipeline (:mod:`medimg.inference.pipeline`).

Everything downstream (``medimg segment``, ``explain``, the reading session, ``adapt``, ``export``, the demo)
takes the Model, never a path it re-opens: one command reads the checkpoint once and hashes it once (MONAI keeps
patch inference in its own package, ``inferers/``, the same way; TorchIO in ``data/inference``).

A checkpoint is read with ``torch.load(weights_only=True)`` from the bytes hashed (no pickled code runs) and
the network is built from :mod:`medimg.models` with the hyper-parameters the checkpoint carries: no Lightning
import, so an edge install that runs models needs torch, MONAI and medimg's readers only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medimg.errors import MedimgError, ModelError
from medimg.inference.blending import Predictor
from medimg.inference.pipeline import CPU_WINDOWS, load_image, preprocess, seg_algorithm, segment_with
from medimg.inference.recipe import Recipe
from medimg.inference.timings import Timings
from medimg.io.volume import Volume

if TYPE_CHECKING:
    from torch import nn

    from medimg.io.derived import AlgorithmInfo

__all__ = ["CHECKPOINT_SUFFIXES", "Model", "file_sha256", "model_from_task", "open_model", "segment"]

log = logging.getLogger(__name__)

#: What :func:`open_model` reads as a training checkpoint (everything else by its export suffix).
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
#: The SHA-256 of a model built in memory rather than read from a file.
IN_MEMORY = "unknown (model passed in memory)"


@dataclass
class Model:
    """One trained model: ``recipe`` (what to run it with), ``sha256`` of its file, ``predictor`` ((B, C, *window)
    float32 -> logits), ``module`` (the ``nn.Module``, for a checkpoint; None for ONNX), ``hparams`` (the
    checkpoint's hyper-parameters, empty for an export), ``path`` and ``runtime`` (``torch``, ``onnxruntime``,
    ``torch.export``)."""

    path: Path | None
    recipe: Recipe
    sha256: str
    predictor: Predictor
    runtime: str
    module: nn.Module | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    on_gpu: bool = False

    @property
    def class_names(self) -> dict[int, str]:
        """Names by label value, background included (``"class N"`` where the model names none)."""
        n = self.recipe.num_classes
        return {0: "background", **{k: f"class {k}" for k in range(1, n)}, **self.recipe.class_names}

    @property
    def in_channels(self) -> int:
        return self.recipe.in_channels

    def algorithm(self) -> AlgorithmInfo:
        """The :class:`~medimg.io.derived.AlgorithmInfo` a DICOM SEG of this model carries (net, SHA-256, version)."""
        return seg_algorithm(self.recipe.net, self.recipe.medimg_version, self.sha256)

    def prepare(self, image: str | os.PathLike[str]) -> tuple[Any, Any]:
        """``image`` loaded and preprocessed as the model was trained: (original MetaTensor, preprocessed one)."""
        if self.recipe.preprocessing is None:
            raise ModelError("the model carries no preprocessing (was it trained with medimg fit?)", self.path)
        original = load_image(image, self.in_channels)
        return original, preprocess(original, self.recipe.preprocessing)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Sliding-window logits of whole preprocessed volumes (N, C, H, W, D), Gaussian-blended windows of the
        recipe's ROI: what the task validates with (MONAI's ``sliding_window_inference``)."""
        from monai.inferers import sliding_window_inference

        with torch.no_grad():
            out = sliding_window_inference(
                x,
                roi_size=self.recipe.roi_size,
                sw_batch_size=self.recipe.sw_batch_size,
                predictor=self.predictor,
                overlap=self.recipe.overlap,
                mode="gaussian",
            )
        return out if isinstance(out, torch.Tensor) else torch.as_tensor(out)

    def segment(
        self,
        image: str | os.PathLike[str],
        output: str | os.PathLike[str] | None = None,
        *,
        precision: str = "32",
        progress: bool = False,
        timings: Timings | None = None,
    ) -> Volume:
        """Label map of ``image`` on its own voxel grid (see :func:`medimg.inference.pipeline.segment_with`);
        ``output`` ``.nii.gz`` or ``.dcm`` (DICOM SEG of a DICOM input) is written atomically. The stages' times
        go into ``timings`` and ``meta["timings"]`` of the result (:mod:`medimg.inference.timings`)."""
        windows = None if self.on_gpu else CPU_WINDOWS
        device = _device_of(self.module)
        t = timings if timings is not None else Timings(device=str(device))
        with _autocast(precision, device):
            return segment_with(
                self.predictor,
                self.recipe,
                image,
                output,
                device=device,
                windows_per_call=windows,
                progress=progress,
                timings=t,
            )

    def segment_uncertain(
        self, image: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, *, tta: bool = True
    ) -> Any:
        """The mask with uncertainty maps and a risk record (:class:`~medimg.inference.ensemble.Ensemble` of this
        model alone, by default with test-time flips); for several models use
        :func:`~medimg.inference.ensemble.open_ensemble`."""
        from medimg.inference.ensemble import Ensemble

        return Ensemble([self], tta=tta).segment(image, output)

    def classify(self, image: str | os.PathLike[str]) -> dict[str, float]:
        """Class probabilities (softmax of the logits) of one image or volume, by class name."""
        from medimg.inference.pipeline import classification_input

        if self.recipe.task != "classification":
            raise ModelError(f"the model is a {self.recipe.task} model; use medimg segment", self.path)
        with torch.no_grad():
            probs = torch.softmax(self.predictor(classification_input(self.recipe, image)), dim=1)[0]
        names = self.recipe.class_names
        return {names.get(k, f"class {k}"): float(p) for k, p in enumerate(probs.tolist())}


def open_model(path: str | os.PathLike[str] | Model, *, device: str | None = None, threads: int | None = None) -> Model:
    """The :class:`Model` in ``path``: a training checkpoint (``.ckpt``), or ``.onnx`` / ``.pt2`` from
    ``medimg export``. A Model passed in is returned as it is. The file is read once.

    Raises:
        ModelError: no such file, not a model, no recipe, a damaged file (one line naming it).
    """
    if isinstance(path, Model):
        return path
    p = Path(path)
    if not p.is_file():
        raise ModelError("model file not found", p)
    if p.suffix.lower() in (".onnx", ".pt2"):
        from medimg.inference.runtime import load_exported

        exported = load_exported(p, threads=threads)
        return Model(p, exported.recipe, file_sha256(p), exported.predictor, exported.runtime, on_gpu=exported.on_gpu)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if threads:
        torch.set_num_threads(int(threads))
    data, digest = _read_checkpoint(p)
    return model_from_checkpoint(data, p, digest, dev)


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], str]:
    """The checkpoint's contents (weights only, no pickled code) and the SHA-256 of the same bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the checkpoint ({exc.strerror})", path) from exc
    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a wrong or damaged file
        raise ModelError(f"cannot load checkpoint ({type(exc).__name__}: {exc})", path) from exc
    if not isinstance(data, dict) or "state_dict" not in data:
        raise ModelError("not a medimg/Lightning checkpoint (no state_dict)", path)
    return data, hashlib.sha256(raw).hexdigest()


def model_from_checkpoint(data: dict[str, Any], path: Path | None, digest: str, device: torch.device) -> Model:
    """Build the network a segmentation checkpoint describes (:func:`medimg.models.segmentation.segmentation_net`
    with its hyper-parameters) and load its weights; its recipe from the same hyper-parameters."""
    from medimg.models.segmentation import segmentation_net

    hp = dict(data.get("hyper_parameters") or {})
    if "num_classes" not in hp or "net" not in hp:
        raise ModelError("the checkpoint is not a segmentation model (no net / num_classes)", path)
    kwargs = dict(hp.get("net_kwargs") or {})
    if hp.get("deep_supervision"):
        kwargs["deep_supervision"] = True
    try:
        net = segmentation_net(
            str(hp["net"]), in_channels=int(hp.get("in_channels", 1)), out_channels=int(hp["num_classes"]), **kwargs
        )
        state = {k.removeprefix("net."): v for k, v in data["state_dict"].items() if k.startswith("net.")}
        net.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"the checkpoint's weights do not fit its network ({type(exc).__name__})", path) from exc
    model = _torch_model(net.to(device), hp, _class_names(hp, data), digest, path)
    calibration = data.get("calibration") or {}  # `medimg calibrate` writes it (medimg.inference.calibrate)
    if "temperature" in calibration:
        model.recipe = replace(model.recipe, temperature=float(calibration["temperature"]))
    return model


def model_from_task(task: Any) -> Model:
    """A Model around a trained task held in memory (a notebook's ``SegmentationTask``): no file, no SHA-256."""
    hp = dict(task.hparams)
    return _torch_model(task.net, hp, _class_names(hp, {}), IN_MEMORY, None)


def _torch_model(net: nn.Module, hp: dict[str, Any], names: dict[int, str], digest: str, path: Path | None) -> Model:
    """The Model of a torch network in eval mode: the network itself is the predictor."""
    net = net.eval()
    recipe = recipe_from_hparams(hp, names, digest, path)
    on_gpu = _device_of(net).type == "cuda"
    return Model(path, recipe, digest, net, "torch", module=net, hparams=hp, on_gpu=on_gpu)


def recipe_from_hparams(hp: dict[str, Any], names: dict[int, str], digest: str, path: Path | None) -> Recipe:
    """The inference :class:`Recipe` of a segmentation model's hyper-parameters."""
    from medimg._version import __version__

    prep = hp.get("preprocessing")
    if not prep:
        raise ModelError("checkpoint carries no preprocessing (was it trained with medimg fit?)", path)
    return Recipe(
        task="segmentation",
        net=str(hp.get("net", "unknown")),
        in_channels=int(hp.get("in_channels", 1)),
        num_classes=int(hp.get("num_classes", 2)),
        class_names={k: v for k, v in names.items() if k > 0},
        checkpoint_sha256=digest,
        medimg_version=__version__,
        preprocessing=dict(prep),
        roi_size=tuple(int(r) for r in hp.get("roi_size", (96, 96, 96))),
        sw_batch_size=int(hp.get("sw_batch_size", 4)),
        overlap=float(hp.get("sw_overlap", 0.25)),
    )


def _class_names(hp: dict[str, Any], data: dict[str, Any]) -> dict[int, str]:
    """Class names by label value: the checkpoint's ``labels`` hyper-parameter when it has one, else the
    ``labels`` of the ``dataset.json`` its data module was trained on (when that folder is still there), else
    ``"class N"``."""
    n = int(hp.get("num_classes", 2))
    names = {k: f"class {k}" for k in range(1, n)}
    found = hp.get("labels")
    if not found:
        from medimg.data.datasets import read_spec

        saved = data.get("datamodule_hyper_parameters") or {}
        try:
            if saved.get("dataset_dir"):
                found = read_spec(str(saved["dataset_dir"])).get("labels")
        except (MedimgError, AttributeError) as exc:  # a nicety only: the dataset may be gone
            log.info("class names not found with the checkpoint (%s); using 'class N'", type(exc).__name__)
    names.update({int(k): str(v) for k, v in (found or {}).items() if int(k) > 0})
    return {0: "background", **names}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in 1 MiB chunks: what ties an answer or a result to its model."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _device_of(module: nn.Module | None) -> torch.device:
    if module is None:
        return torch.device("cpu")
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for a torch model: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (16-mixed needs a GPU)."""
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    if precision not in ("32", "32-true"):
        raise MedimgError(f"precision must be 32, bf16-mixed or 16-mixed, got {precision!r}")
    return contextlib.nullcontext()


def segment(
    model: str | os.PathLike[str] | Model | Any,
    image: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    precision: str = "32",
    device: str | None = None,
    progress: bool = False,
) -> Volume:
    """Segment ``image`` (DICOM folder/file or NIfTI) with a model: a :class:`Model`, a path (opened once), or
    a trained task held in memory (anything with ``.net`` and ``.hparams``).

    The model's own preprocessing (orientation, spacing, intensity) is applied, sliding-window inference runs on
    it with streamed Gaussian blending (:func:`medimg.inference.blending.sliding_window_labels`), and the label
    map is resampled (nearest neighbour) back onto the input's voxel grid: the returned :class:`Volume` has the
    input's shape and affine. ``output`` (``.nii.gz``) is written atomically; ``.dcm`` is written as a DICOM SEG
    referencing the DICOM input, refused before inference for a NIfTI input or a series medimg resamples on load.

    Args:
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast; 16-mixed needs a GPU).
        device: ``"cuda"``/``"cpu"`` for a checkpoint path; default: CUDA when available.
    """
    if not isinstance(model, (Model, str, os.PathLike)):
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.to(dev)
        opened = model_from_task(model)
    else:
        opened = open_model(model, device=device)
    return opened.segment(image, output, precision=precision, progress=progress)
