"""Run an exported model (``.onnx`` with ONNX Runtime, ``.pt2`` with ``torch.export``) without the training stack.

:func:`load_exported` reads the model and the :class:`~medimg.inference.Recipe` it carries and gives an
:class:`ExportedModel` (recipe + predictor); :func:`medimg.inference.open_model` makes it the
:class:`~medimg.inference.Model` that runs the same pipeline as a checkpoint
(:func:`medimg.inference.pipeline.segment_with`). Nothing here imports Lightning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medimg.errors import ModelError
from medimg.inference.blending import Predictor
from medimg.inference.recipe import RECIPE_KEY, Recipe

__all__ = ["ExportedModel", "load_exported", "onnx_session"]

_NUMPY_DTYPES = {"fp32": np.float32, "fp16": np.float16}
#: ONNX Runtime's refusal of a model stamped with an opset it does not know
_OPSET_MESSAGE = re.compile(r"Opset (\d+) is under development.*?till opset (\d+)", re.S)


@dataclass
class ExportedModel:
    """An exported network plus its recipe. ``predictor`` maps (B, C, *window) float32 to float32 logits.
    :func:`medimg.inference.open_model` wraps it into the :class:`~medimg.inference.Model` that segments and
    classifies."""

    path: Path
    recipe: Recipe
    predictor: Predictor
    runtime: str
    on_gpu: bool = False


def onnx_session(path: str | os.PathLike[str], threads: int | None = None) -> object:
    """An ONNX Runtime session on the CUDA execution provider when present, else the CPU; ``threads`` sets the
    intra-op thread count. A model from a newer opset than this onnxruntime knows is refused in one line."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        return ort.InferenceSession(os.fspath(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... kinds
        found = _OPSET_MESSAGE.search(str(exc))
        if found:
            raise ModelError(
                f"the model uses ONNX opset {found[1]} but the installed onnxruntime {ort.__version__} supports "
                f"opsets up to {found[2]}; re-export with --opset {found[2]} or upgrade onnxruntime",
                path,
            ) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"onnxruntime cannot load the model ({first[:300]})", path) from exc


def _onnx_model(path: Path, threads: int | None) -> ExportedModel:
    session = onnx_session(path, threads)
    meta = session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    if RECIPE_KEY not in meta:
        raise ModelError(
            "this ONNX model carries no medimg recipe (preprocessing, windows, classes); export it with "
            "medimg export from a medimg checkpoint",
            path,
        )
    recipe = Recipe.from_json(meta[RECIPE_KEY], str(path))
    (inp,) = session.get_inputs()  # type: ignore[attr-defined]
    dtype = _NUMPY_DTYPES[recipe.precision]

    def predictor(x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy().astype(dtype, copy=False)
        out = session.run(None, {inp.name: arr})[0]  # type: ignore[attr-defined]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    on_gpu = session.get_providers()[0] == "CUDAExecutionProvider"  # type: ignore[attr-defined]
    return ExportedModel(path, recipe, predictor, "onnxruntime", on_gpu)


def _pt2_model(path: Path, threads: int | None) -> ExportedModel:
    if threads:
        torch.set_num_threads(int(threads))
    extra = {f"{RECIPE_KEY}.json": ""}
    try:
        program = torch.export.load(os.fspath(path), extra_files=extra)
    except Exception as exc:  # a damaged archive or one from another torch: many kinds
        raise ModelError(f"torch.export cannot load the program ({type(exc).__name__}: {exc})", path) from exc
    if not extra[f"{RECIPE_KEY}.json"]:
        raise ModelError("this .pt2 program carries no medimg recipe; export it with medimg export", path)
    recipe = Recipe.from_json(extra[f"{RECIPE_KEY}.json"], str(path))
    module: Callable[[torch.Tensor], torch.Tensor] = program.module()
    dtype = torch.float16 if recipe.precision == "fp16" else torch.float32

    def predictor(x: torch.Tensor) -> torch.Tensor:
        return module(x.to(dtype)).to(torch.float32)

    return ExportedModel(path, recipe, predictor, "torch.export")


def load_exported(path: str | os.PathLike[str], *, threads: int | None = None) -> ExportedModel:
    """Load a model written by ``medimg export``: ``.onnx`` (ONNX Runtime) or ``.pt2`` (``torch.export``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError("model file not found", p)
    if p.suffix.lower() == ".onnx":
        return _onnx_model(p, threads)
    if p.suffix.lower() == ".pt2":
        return _pt2_model(p, threads)
    raise ModelError("not an exported model (.onnx or .pt2); a checkpoint goes to medimg segment as it is", p)
