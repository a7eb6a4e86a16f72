"""Per-site scores over the epochs, drawn: one line per site for each metric, from the ``per_site_<prefix>.csv``
that validation / test write (:func:`medimg.tasks.site_metrics.write_site_report`). Drawing lives here, apart
from the training process that writes the numbers."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from medimg.errors import MedimgError
from medimg.viz.planes import save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_site_history", "save_site_plot"]

#: Columns of the CSV that are not metrics.
KEY_COLUMNS = ("epoch", "site", "class", "class_index", "cases")


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _read(csv_path: Path) -> tuple[list[dict[str, str]], list[str]]:
    try:
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows, fields = list(reader), list(reader.fieldnames or [])
    except OSError as exc:
        raise MedimgError(f"{csv_path}: cannot read the per-site table ({exc.strerror})") from exc
    metrics = [f for f in fields if f not in KEY_COLUMNS]
    if not rows or "epoch" not in fields or "site" not in fields or not metrics:
        raise MedimgError(f"{csv_path}: not a per-site table (needs epoch, site and metric columns, and rows)")
    return rows, metrics


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def plot_site_history(csv_path: str | Path) -> Figure:
    """Per metric, the class-mean of each site against the epoch: one line per site."""
    from matplotlib.figure import Figure

    path = Path(csv_path)
    rows, metrics = _read(path)
    # matplotlib's object API (no pyplot): no global figure state
    fig = Figure(figsize=(4.5 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        points: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            points[row["site"]][int(float(row["epoch"]))].append(_float(row[metric]))
        for site in sorted(points):
            epochs = sorted(points[site])
            ax.plot(epochs, [_mean(points[site][e]) for e in epochs], marker="o", label=f"site {site}")
        ax.set_xlabel("epoch")
        ax.set_title(f"{path.stem}: {metric} (mean over classes)")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def save_site_plot(csv_path: str | Path, png_path: str | Path | None = None) -> Path:
    """Draw :func:`plot_site_history` into ``png_path`` (default: the CSV's name with ``.png``), atomically."""
    out = Path(png_path) if png_path is not None else Path(csv_path).with_suffix(".png")
    return save_png(plot_site_history(csv_path), out)
