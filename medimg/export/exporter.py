"""``medimg export``: a trained checkpoint to ONNX (or a ``torch.export`` ``.pt2`` program) with its recipe,
checked against the checkpoint before it is written.

The check runs the exported model (ONNX Runtime, or the loaded ``.pt2`` program) and the checkpoint's network on
the same inputs -- one random window and one batch of real-shaped windows -- and refuses the export (nothing is
written) when the logits differ by more than :data:`TOLERANCE`. The network is traced by PyTorch's current
exporter (``torch.export``; ``torch.onnx.export(..., dynamo=True)`` for ONNX) with a dynamic batch axis, and
for segmentation nets dynamic spatial axes too.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from medimg.errors import MedimgError, ModelError
from medimg.inference.model import Model, model_from_checkpoint
from medimg.inference.recipe import RECIPE_KEY, Recipe
from medimg.io.atomic import atomic_path

__all__ = ["FORMATS", "REFUSED_NETS", "TOLERANCE", "ExportReport", "export_checkpoint", "export_network"]

log = logging.getLogger(__name__)

Format = Literal["onnx", "pt2"]
Precision = Literal["fp32", "fp16"]
FORMATS: dict[str, str] = {"onnx": ".onnx", "pt2": ".pt2"}
#: largest |logit difference| allowed between export and checkpoint: absolute for fp32 (the issue's 1e-4);
#: for fp16, a fraction of the largest |logit| (at least 1), since half precision keeps ~3 significant digits
TOLERANCE: dict[str, float] = {"fp32": 1e-4, "fp16": 1e-2}
#: networks refused before tracing, with the reason
REFUSED_NETS: dict[str, str] = {
    "swinunetr": (
        "SwinUNETR cannot be exported with dynamic spatial axes: its forward checks the input size with NumPy "
        "on the tensor's shape (SwinUNETR._check_input_size), which torch.export cannot trace symbolically; "
        "use unet, dynunet or segresnet for a model you mean to export"
    ),
}


@dataclass(frozen=True)
class ExportReport:
    """What ``medimg export`` did: the file, and the parity figures it was checked with."""

    path: Path
    format: str
    precision: str
    max_abs_diff: dict[str, float]
    tolerance: float
    seconds: float

    def summary(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_diff.items())
        return (
            f"wrote {self.path} ({self.format}, {self.precision}) in {self.seconds:.1f} s; max |logit difference| "
            f"vs the checkpoint: {diffs} (tolerance {self.tolerance:.0e})"
        )


def _parity_inputs(recipe: Recipe) -> dict[str, torch.Tensor]:
    """One random-normal window and a batch of windows with values in [0, 1] (preprocessed intensities)."""
    g = torch.Generator().manual_seed(0)
    shape = (recipe.in_channels, *recipe.window_shape)
    batch = recipe.sw_batch_size if recipe.task == "segmentation" else 2
    return {
        "random window": torch.randn((1, *shape), generator=g),
        f"batch of {batch}": torch.rand((batch, *shape), generator=g),
    }


def _dynamic_shapes(recipe: Recipe) -> tuple[dict[int, Any]]:
    from torch.export import Dim

    axes: dict[int, Any] = {0: Dim.AUTO}
    if recipe.task == "segmentation":  # windows of any ROI; classifiers always see the resized image
        axes.update({2 + i: Dim.AUTO for i in range(len(recipe.window_shape))})
    return (axes,)


def _trace(net: nn.Module, recipe: Recipe, out: Path, fmt: Format, opset: int | None) -> None:
    """Write ``net`` (already in the export precision) to ``out`` with the recipe in its metadata."""
    dtype = next(net.parameters()).dtype
    example = (torch.rand((2, recipe.in_channels, *recipe.window_shape), dtype=dtype),)
    try:
        # the exporter prints its progress on stdout; a CLI prints only its own result
        with contextlib.redirect_stdout(io.StringIO()):
            if fmt == "onnx":
                program = torch.onnx.export(
                    net, example, dynamo=True, opset_version=opset, dynamic_shapes=_dynamic_shapes(recipe)
                )
                if program is None:
                    raise ModelError("torch.onnx.export returned no program")
                program.model.metadata_props[RECIPE_KEY] = recipe.to_json()
                program.save(os.fspath(out))
            else:
                exported = torch.export.export(net, example, dynamic_shapes=_dynamic_shapes(recipe))
                torch.export.save(exported, os.fspath(out), extra_files={f"{RECIPE_KEY}.json": recipe.to_json()})
    except MedimgError:
        raise
    except Exception as exc:  # torch.export reports untraceable code with many exception kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{recipe.net} cannot be exported to {fmt}: {type(exc).__name__}: {first[:300]}") from exc


def export_network(
    net: nn.Module,
    recipe: Recipe,
    out: str | os.PathLike[str],
    *,
    fmt: Format = "onnx",
    opset: int | None = None,
    precision: Precision = "fp32",
) -> ExportReport:
    """Export ``net`` with ``recipe`` to ``out`` (``.onnx`` or ``.pt2``), refusing it unless its logits match.

    Raises:
        ModelError: a net that cannot be traced (:data:`REFUSED_NETS`), or an export whose logits differ from
            ``net``'s by more than :data:`TOLERANCE` (the figures are in the message; nothing is written).
    """
    from medimg.inference.runtime import load_exported

    if recipe.net in REFUSED_NETS:
        raise ModelError(REFUSED_NETS[recipe.net])
    if fmt not in FORMATS:
        raise ModelError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if precision not in TOLERANCE:
        raise ModelError(f"precision must be fp32 or fp16, got {precision!r}")
    out = Path(out)
    if out.suffix.lower() != FORMATS[fmt]:
        raise ModelError(f"a {fmt} export is written to a {FORMATS[fmt]} file", out)
    t0 = time.perf_counter()
    reference = copy.deepcopy(net).cpu().float().eval()
    traced = reference if precision == "fp32" else copy.deepcopy(reference).half()
    recipe = recipe.with_precision(precision)
    with atomic_path(out) as tmp:  # removed again if the check below refuses the export
        _trace(traced, recipe, tmp, fmt, opset)
        exported = load_exported(tmp)
        diffs, worst = {}, 0.0
        with torch.no_grad():
            for name, x in _parity_inputs(recipe).items():
                ref = reference(x)
                diffs[name] = float((exported.predictor(x) - ref).abs().max())
                worst = max(worst, float(ref.abs().max()))
        tolerance = TOLERANCE[precision] * (1.0 if precision == "fp32" else max(1.0, worst))
        if not all(d <= tolerance for d in diffs.values()):  # NaN fails too
            figures = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
            raise ModelError(
                f"export refused: max |logit difference| vs the checkpoint {figures} exceeds {tolerance:.1e} "
                f"({precision}); nothing written",
                out,
            )
    return ExportReport(out, fmt, precision, diffs, tolerance, time.perf_counter() - t0)


def _checkpoint_kind(ckpt: Path, raw: bytes) -> tuple[str, dict[str, Any]]:
    """``("segmentation" | "classification", checkpoint dict)`` of the checkpoint's bytes ``raw``, or refuse a
    file that is not a medimg one."""
    import io
    import pickle

    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"not a PyTorch checkpoint ({type(exc).__name__})", ckpt) from exc
    hp = data.get("hyper_parameters") if isinstance(data, dict) else None
    if not isinstance(hp, dict) or "state_dict" not in data:
        raise ModelError(
            "not a medimg checkpoint (no Lightning hyper-parameters); pass one written by medimg fit", ckpt
        )
    if "net" in hp and "preprocessing" in hp:
        return "segmentation", data
    if "backbone_name" in hp:
        return "classification", data
    raise ModelError(
        "not a medimg checkpoint (neither a SegmentationTask nor a ClassificationTask); pass one written by medimg fit",
        ckpt,
    )


def _classification(ckpt: Path, data: dict[str, Any], raw: bytes, digest: str) -> tuple[nn.Module, Recipe]:
    import io

    from medimg._version import __version__
    from medimg.tasks.classification import ClassificationTask

    hp = data["hyper_parameters"]
    dm = data.get("datamodule_hyper_parameters") or {}
    if "image_size" not in dm:
        raise ModelError(
            "the checkpoint does not carry its data module's image_size and intensity (trained without "
            "ClassificationDataModule?); cannot export the preprocessing",
            ckpt,
        )
    try:
        task = ClassificationTask.load_from_checkpoint(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # Lightning/torch raise many kinds for a wrong or damaged file
        raise ModelError(f"cannot load checkpoint ({type(exc).__name__}: {exc})", ckpt) from exc
    recipe = Recipe(
        task="classification",
        net=str(hp["backbone_name"]),
        in_channels=int(hp.get("in_channels", 1)),
        num_classes=int(hp.get("num_classes", 2)),
        checkpoint_sha256=digest,
        medimg_version=__version__,
        spatial_dims=int(hp.get("spatial_dims", 2)),
        image_size=tuple(int(s) for s in dm["image_size"]),
        intensity=str(dm.get("intensity", "percentile")),
        ct_window=tuple(float(v) for v in dm.get("ct_window", (-1000.0, 1000.0))),  # type: ignore[arg-type]
    )
    return task.net, recipe


def export_checkpoint(
    ckpt: str | os.PathLike[str] | Model,
    out: str | os.PathLike[str],
    *,
    fmt: Format = "onnx",
    opset: int | None = None,
    precision: Precision = "fp32",
) -> ExportReport:
    """Export a segmentation :class:`~medimg.inference.Model` (opened by the caller), or a
    :class:`~medimg.tasks.SegmentationTask` / :class:`~medimg.tasks.ClassificationTask` checkpoint, with its
    recipe (see :func:`export_network`). A checkpoint file is read once."""
    import hashlib

    if isinstance(ckpt, Model):
        if ckpt.module is None:
            raise ModelError("an exported model is exported already; export its training checkpoint", ckpt.path)
        return export_network(ckpt.module, ckpt.recipe, out, fmt=fmt, opset=opset, precision=precision)
    path = Path(ckpt)
    if not path.is_file():
        raise ModelError("checkpoint not found", path)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    kind, data = _checkpoint_kind(path, raw)
    if kind == "segmentation":
        if data["hyper_parameters"].get("net") in REFUSED_NETS:  # before loading the weights
            raise ModelError(REFUSED_NETS[data["hyper_parameters"]["net"]], path)
        model = model_from_checkpoint(data, path, digest, torch.device("cpu"))
        assert model.module is not None
        net, recipe = model.module, model.recipe
    else:
        net, recipe = _classification(path, data, raw, digest)
    return export_network(net, recipe, out, fmt=fmt, opset=opset, precision=precision)
