"""Reliability diagrams, drawn: the accuracy of each confidence bin against its mean confidence, before and after
temperature scaling, from the ``*_calibration.csv`` that ``medimg evaluate --ckpt`` writes
(:meth:`medimg.inference.calibrate.CalibrationFit.rows`). A calibrated model's bars sit on the diagonal; bars below
it are over-confidence. Drawing lives here, apart from the inference that computes the numbers."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

from medimg.errors import MedimgError
from medimg.viz.planes import save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_reliability", "save_reliability_plot"]

_COLUMNS = {"scaling", "temperature", "ece", "lower", "upper", "count", "confidence", "accuracy"}


def _read(csv_path: Path) -> dict[str, list[dict[str, str]]]:
    try:
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows, fields = list(reader), set(reader.fieldnames or [])
    except OSError as exc:
        raise MedimgError(f"{csv_path}: cannot read the reliability table ({exc.strerror})") from exc
    if not rows or not _COLUMNS.issubset(fields):
        raise MedimgError(f"{csv_path}: not a reliability table (needs {', '.join(sorted(_COLUMNS))} and rows)")
    by_scaling: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_scaling.setdefault(row["scaling"], []).append(row)
    return by_scaling


def plot_reliability(csv_path: str | Path) -> Figure:
    """One panel per scaling ("before": T = 1, "after": the model's temperature): per confidence bin, the
    accuracy as a bar over the bin's width, the diagonal of perfect calibration, and the ECE with the number
    of voxels in the title. Empty bins are left blank."""
    from matplotlib.figure import Figure

    path = Path(csv_path)
    tables = _read(path)
    # matplotlib's object API (no pyplot): no global figure state
    fig = Figure(figsize=(3.6 * len(tables), 3.6))
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    for ax, (scaling, rows) in zip(axes, tables.items(), strict=True):
        full = [r for r in rows if int(float(r["count"])) > 0 and not math.isnan(float(r["accuracy"]))]
        lower = [float(r["lower"]) for r in full]
        width = [float(r["upper"]) - float(r["lower"]) for r in full]
        ax.bar(lower, [float(r["accuracy"]) for r in full], width=width, align="edge", edgecolor="black",
               label="accuracy")  # fmt: skip
        ax.plot([float(r["confidence"]) for r in full], [float(r["accuracy"]) for r in full], "o", ms=3,
                color="tab:red", label="(mean confidence, accuracy)")  # fmt: skip
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        n = sum(int(float(r["count"])) for r in rows)
        t, ece = float(rows[0]["temperature"]), float(rows[0]["ece"])
        ax.set_title(f"{scaling} (T = {t:.2f}): ECE {ece:.3f}, {n} voxels", fontsize="small")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (max probability)")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize="x-small", loc="upper left")
    fig.tight_layout()
    return fig


def save_reliability_plot(csv_path: str | Path, png_path: str | Path | None = None) -> Path:
    """Draw :func:`plot_reliability` into ``png_path`` (default: the CSV's name with ``.png``), atomically."""
    out = Path(png_path) if png_path is not None else Path(csv_path).with_suffix(".png")
    return save_png(plot_reliability(csv_path), out)
