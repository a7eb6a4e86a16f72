"""Temperature scaling of a trained model on labelled validation cases, and the checkpoint that carries it.

:func:`calibrate` runs the model on each case (its own preprocessing, MONAI sliding windows), keeps the logits of
the voxels that count (:mod:`medimg.metrics.calibration`: ``region="foreground"``, what the reference or the
model calls foreground), fits one temperature on them and reports the ECE before and after.
:func:`write_calibrated` writes the checkpoint with ``checkpoint["calibration"]`` (temperature, ECE before and
after, region, voxels); :func:`~medimg.inference.model.open_model` puts the temperature into the model's
recipe, and ``medimg export`` carries it into the exported recipe. Fit on the validation fold, report on
other cases: scoring on the fitting voxels flatters it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.errors import MedimgError, ModelError
from medimg.inference.model import Model
from medimg.metrics.calibration import Calibration, Region, apply_temperature, calibration, fit_temperature, voxels

__all__ = ["CalibrationFit", "calibrate", "case_logits", "measure", "write_calibrated"]


@dataclass(frozen=True)
class CalibrationFit:
    """A fitted ``temperature`` and the ECE ``before`` (T = 1) and ``after`` on the same voxels."""

    temperature: float
    before: Calibration
    after: Calibration

    def as_record(self) -> dict[str, Any]:
        """What the checkpoint carries under ``"calibration"``."""
        return {
            "temperature": self.temperature,
            "region": self.before.region,
            "voxels": self.before.voxels,
            "ece_before": self.before.ece,
            "ece_after": self.after.ece,
        }

    def rows(self) -> list[dict[str, Any]]:
        """The reliability diagrams before and after as table rows, one per (``scaling``, bin): ``scaling``
        ("before": T = 1, "after": the temperature), ``temperature``, ``region``, ``ece`` and the bin's
        ``lower``/``upper`` confidence edges, voxel ``count``, mean ``confidence`` and ``accuracy`` (NaN when
        empty). What ``medimg evaluate`` writes as ``*_calibration.csv`` and :mod:`medimg.viz.calibration` draws."""
        out = []
        for scaling, c, t in (("before", self.before, 1.0), ("after", self.after, self.temperature)):
            out += [{"scaling": scaling, "temperature": t, "region": c.region, "ece": c.ece, **vars(b)} for b in c.bins]
        return out

    def __str__(self) -> str:
        return (
            f"temperature {self.temperature:.3f}: ECE ({self.before.region} voxels, {self.before.voxels}) "
            f"{self.before.ece:.4f} -> {self.after.ece:.4f}"
        )


def case_logits(
    model: Model, image: str | os.PathLike[str], label: str | os.PathLike[str]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(N, C) logits and (N,) reference labels of every voxel of one case on the model's preprocessed grid
    (the label resampled with nearest neighbour by the same preprocessing)."""
    from medimg.transforms.pipelines import Preprocessing, preprocessing

    if model.recipe.preprocessing is None:
        raise ModelError("the model carries no preprocessing (was it trained with medimg fit?)", model.path)
    prep = Preprocessing.from_dict(model.recipe.preprocessing)
    data = preprocessing(prep, keys=["image", "label"])({"image": str(image), "label": str(label)})
    x = torch.as_tensor(data["image"]).float()[None]
    dev = next(iter(model.module.parameters())).device if model.module is not None else torch.device("cpu")
    logits = model.infer(x.to(dev))[0].float().cpu().numpy()
    labels = np.asarray(torch.as_tensor(data["label"])[0]).astype(np.int64)
    if labels.shape != logits.shape[1:]:
        raise MedimgError(f"the label's grid {labels.shape} is not the image's {logits.shape[1:]}", label)
    return voxels(logits), labels.ravel()


def calibrate(
    model: Model,
    cases: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    *,
    region: Region = "foreground",
) -> CalibrationFit:
    """Fit the temperature of ``model`` on ``cases`` (image, label) and measure the ECE before and after."""
    logits, labels = _region_logits(model, cases, region)
    return _scored(logits, labels, fit_temperature(logits, labels), region)


def measure(
    model: Model,
    cases: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    *,
    region: Region = "foreground",
) -> CalibrationFit:
    """The ECE of ``model`` on labelled ``cases`` before (T = 1) and after its own temperature (the one
    ``medimg calibrate`` stored; 1 for an uncalibrated model, then both are equal): what ``medimg evaluate``
    reports. Nothing is fitted here, so held-out cases give an honest figure."""
    logits, labels = _region_logits(model, cases, region)
    return _scored(logits, labels, float(model.recipe.temperature), region)


def _region_logits(
    model: Model, cases: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]], region: Region
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(N, C) logits and (N,) labels of the ``region`` voxels of every case, concatenated."""
    if not cases:
        raise MedimgError("calibration needs at least one labelled case")
    rows, refs = [], []
    for image, label in cases:
        z, y = case_logits(model, image, label)
        keep = np.ones(len(y), dtype=bool) if region == "all" else (y > 0) | (z.argmax(axis=1) > 0)
        rows.append(z[keep])
        refs.append(y[keep])
    logits, labels = np.concatenate(rows), np.concatenate(refs)
    if len(labels) == 0:
        raise MedimgError("no voxel to calibrate on: neither the labels nor the model show foreground")
    return logits, labels


def _scored(logits: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], t: float, region: Region) -> CalibrationFit:
    before = calibration(apply_temperature(logits, 1.0), labels, region="all")
    after = calibration(apply_temperature(logits, t), labels, region="all")
    # the voxels were selected above, so report the region they were selected by
    return CalibrationFit(t, _as_region(before, region), _as_region(after, region))


def _as_region(c: Calibration, region: Region) -> Calibration:
    return Calibration(c.ece, c.bins, region, c.voxels)


def write_calibrated(ckpt: str | os.PathLike[str], fit: CalibrationFit, out: str | os.PathLike[str]) -> Path:
    """Write ``ckpt`` with the fitted temperature under ``"calibration"`` to ``out`` (atomically; the weights
    are unchanged)."""
    from medimg.io.atomic import atomic_path

    src = Path(ckpt)
    try:
        data = torch.load(io.BytesIO(src.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a wrong or damaged file
        raise ModelError(f"cannot load checkpoint ({type(exc).__name__})", src) from exc
    if not isinstance(data, dict) or "state_dict" not in data:
        raise ModelError("not a medimg/Lightning checkpoint (no state_dict)", src)
    data["calibration"] = fit.as_record()
    with atomic_path(out) as tmp:
        torch.save(data, tmp)
    return Path(out)
