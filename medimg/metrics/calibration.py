"""Are the model's probabilities probabilities? Expected calibration error, reliability-diagram data, and
temperature scaling (Guo et al., ICML 2017), on voxels.

A Dice-trained U-Net is over-confident (Mehrtash et al., IEEE TMI 2020; nnU-Net's probabilities are almost all
0.0001 or 0.9999, MIC-DKFZ/nnUNet#2763): a single temperature T > 0 dividing the logits before the softmax, fitted
on validation voxels by minimising the negative log-likelihood, fixes much of it without changing any label
(the argmax of ``logits / T`` is the argmax of ``logits``).

Which voxels: a segmentation is mostly background that every model gets right with probability ~1, which drowns
the error where it matters. ``region="foreground"`` (the default) scores the voxels that the reference or the
prediction calls foreground (label > 0 or argmax > 0); ``region="all"`` scores every voxel. Results say which.

Arrays: ``logits`` / ``probs`` are (N, C) (N voxels, C classes, background included) and ``labels`` (N,) integer
class values; :func:`voxels` flattens (C, X, Y, Z) maps into that layout. Written here because MONAI has no
calibration metric and torchmetrics' ``CalibrationError`` is not a dependency; ECE is a dozen lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medimg.errors import MedimgError

__all__ = [
    "Calibration",
    "ReliabilityBin",
    "apply_temperature",
    "calibration",
    "fit_temperature",
    "nll",
    "softmax",
    "voxels",
]

Region = Literal["foreground", "all"]
#: the equal-width confidence bins of the ECE (Guo et al. use 15)
DEFAULT_BINS = 15
#: the temperatures :func:`fit_temperature` searches between
TEMPERATURE_BOUNDS = (0.05, 20.0)


def softmax(logits: npt.ArrayLike, temperature: float = 1.0) -> npt.NDArray[np.float64]:
    """Softmax over the last axis of ``logits / temperature`` (N, C), computed stably."""
    z = np.asarray(logits, dtype=np.float64) / _checked_temperature(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def apply_temperature(logits: npt.ArrayLike, temperature: float) -> npt.NDArray[np.float64]:
    """The calibrated probabilities: the softmax of ``logits / temperature`` (T = 1 changes nothing)."""
    return softmax(logits, temperature)


def _checked_temperature(t: float) -> float:
    if not (np.isfinite(t) and t > 0):
        raise MedimgError(f"the temperature must be a positive number, got {t}")
    return float(t)


def voxels(maps: npt.ArrayLike) -> npt.NDArray[Any]:
    """(C, X, Y, Z) class maps as (N, C) rows, one per voxel."""
    a = np.asarray(maps)
    return a.reshape(a.shape[0], -1).T


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability diagram: confidences in ``[lower, upper)``, how many voxels, their mean
    confidence and their accuracy (fraction whose predicted class is the reference class)."""

    lower: float
    upper: float
    count: int
    confidence: float
    accuracy: float


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error (``ece``, 0..1: the count-weighted mean |accuracy - confidence| over the
    bins), the reliability-diagram ``bins``, the ``region`` scored and its number of ``voxels``."""

    ece: float
    bins: tuple[ReliabilityBin, ...]
    region: Region
    voxels: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "ece": self.ece,
            "region": self.region,
            "voxels": self.voxels,
            "bins": [vars(b) for b in self.bins],
        }


def _region(probs: npt.NDArray[np.float64], labels: npt.NDArray[Any], region: Region) -> npt.NDArray[np.bool_]:
    if region == "all":
        return np.ones(len(labels), dtype=bool)
    if region == "foreground":
        return np.asarray((labels > 0) | (probs.argmax(axis=1) > 0))
    raise MedimgError(f"region must be 'foreground' or 'all', got {region!r}")


def calibration(
    probs: npt.ArrayLike, labels: npt.ArrayLike, *, bins: int = DEFAULT_BINS, region: Region = "foreground"
) -> Calibration:
    """ECE and reliability diagram of (N, C) probabilities against (N,) reference labels, over ``bins``
    equal-width bins of the max-probability (the predicted class's confidence) in ``region``."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    if p.ndim != 2 or len(p) != len(y):
        raise MedimgError(f"probabilities must be (N, C) with N = {len(y)} labels, got shape {p.shape}")
    keep = _region(p, y, region)
    p, y = p[keep], y[keep]
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)  # conf = 1.0 in the last bin
    out, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        c = float(conf[sel].mean()) if n else float("nan")
        a = float(correct[sel].mean()) if n else float("nan")
        out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), n, c, a))
        if n:
            ece += n / len(y) * abs(a - c)
    return Calibration(float(ece), tuple(out), region, len(y))


def nll(logits: npt.ArrayLike, labels: npt.ArrayLike, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats per voxel) of the reference labels under ``softmax(logits / T)``."""
    z = np.asarray(logits, dtype=np.float64) / _checked_temperature(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    y = np.asarray(labels).astype(np.int64).ravel()
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(
    logits: npt.ArrayLike, labels: npt.ArrayLike, *, bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> float:
    """The one temperature that minimises the NLL of (N, C) validation ``logits`` against (N,) ``labels``: a
    bounded 1-D search on log T (SciPy's ``minimize_scalar``, Brent's method on an interval; the NLL is convex
    in 1/T). Fit it on validation voxels, never on the cases it is then scored on."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise MedimgError(f"logits must be (N, C) with N = {len(y)} > 0 labels, got shape {z.shape}")
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    found = minimize_scalar(lambda s: nll(z, y, float(np.exp(s))), bounds=(lo, hi), method="bounded")
    return float(np.exp(found.x))
