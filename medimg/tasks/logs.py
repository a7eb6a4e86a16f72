"""Reading a run's logged metrics back (for learning-curve plots in notebooks)."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["plot_learning_curves", "read_metrics"]


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """``metric -> [(epoch, value), ...]`` from every ``lightning_logs/version_*/metrics.csv`` under ``run_dir``
    (a resumed run continues in a new version folder; the curves are joined)."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path in sorted(Path(run_dir).glob("**/metrics.csv")):
        with path.open() as fh:
            for row in csv.DictReader(fh):
                if not row.get("epoch"):
                    continue
                for key, value in row.items():
                    if key not in ("epoch", "step") and value:
                        out[key].append((int(row["epoch"]), float(value)))
    return dict(out)


def plot_learning_curves(
    run_dir: str | os.PathLike[str], keys: tuple[str, ...] = ("train/loss_epoch", "val/loss", "val/dice")
) -> Any:
    """A matplotlib figure of the chosen metrics against epoch."""
    import matplotlib.pyplot as plt

    metrics = read_metrics(run_dir)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = metrics.get(key, [])
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig
