"""Reading a run's logged metrics back (for learning-curve plots in notebooks)."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["plot_learning_curves", "read_metrics"]


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """``metric -> [(epoch, value), ...]`` (sorted by epoch) from the ``lightning_logs/version_*/metrics.csv``
    files under ``run_dir``. A resumed run continues in a new version folder, so the curves are joined; where two
    versions logged the same epoch (a re-run in the same folder), the newer version wins. Epoch-level values
    (the last logged per epoch) are returned."""
    by_epoch: dict[str, dict[int, float]] = defaultdict(dict)

    def version(p: Path) -> int:
        name = p.parent.name
        return int(name.split("_")[-1]) if name.startswith("version_") and name.split("_")[-1].isdigit() else -1

    for path in sorted(Path(run_dir).glob("**/metrics.csv"), key=version):
        with path.open() as fh:
            for row in csv.DictReader(fh):
                if not row.get("epoch"):
                    continue
                for key, value in row.items():
                    if key not in ("epoch", "step") and value:
                        by_epoch[key][int(row["epoch"])] = float(value)
    return {k: sorted(v.items()) for k, v in by_epoch.items()}


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
