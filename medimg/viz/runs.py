"""Training runs side by side, drawn: the fixed-width table ``medimg runs`` prints and the learning curves of
several runs on one axis. The rows come from :func:`medimg.tasks.runs.table`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from medimg.tasks.runs import RunRow, RunTable, diff_text, read_epoch_metrics

__all__ = ["plot_learning_curves", "plot_runs_curves", "runs_text"]

#: Width of the diff column in the text table (the CSV keeps it whole).
DIFF_WIDTH = 48
HEAD = ("run", "date", "commit", "data", "dice best@ep", "last", "hd95mm", "nsd", "ep", "wall", "dev-h", "peak MB")


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _commit(commit: str | None) -> str:
    if not commit:
        return "-"
    dirty = commit.endswith("-dirty")
    return commit.removesuffix("-dirty")[:8] + ("+dirty" if dirty else "")


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes}m{sec:02d}"


def _cells(r: RunRow) -> tuple[str, ...]:
    best = "-" if r.dice_best is None else f"{r.dice_best:.3f}@{r.dice_best_epoch}"
    peak = r.peak_gpu_mb if r.peak_gpu_mb is not None else r.peak_rss_mb
    return (
        r.name,
        (r.date or "-")[:16].replace("T", " "),
        _commit(r.commit),
        (r.dataset_digest or "-")[:8],
        best,
        _num(r.dice_last, ".3f"),
        _num(r.hd95_mm_last, ".2f"),
        _num(r.nsd_last, ".3f"),
        "-" if r.epochs is None else str(r.epochs),
        _wall(r.wall_s),
        _num(r.device_hours, ".3g") + ("" if r.device_kind is None else f" {r.device_kind}"),
        _num(peak, ".0f") + ("" if peak is None else " gpu" if r.peak_gpu_mb is not None else " rss"),
    )


def runs_text(runs: RunTable) -> str:
    """One row per run, then status, attempts and the config diff, notes below the table (what ``medimg runs``
    prints)."""
    if not runs.rows:
        return "\n".join(f"note: {n}" for n in runs.notes)
    lines: list[tuple[str, ...]] = [(*HEAD, "status", "att", "diff vs " + str(runs.baseline))]
    for r in runs.rows:
        diff = diff_text(r.diff) or ("(baseline)" if r.name == runs.baseline else "(same config)")
        diff = diff if len(diff) <= DIFF_WIDTH else diff[: DIFF_WIDTH - 3] + "..."
        lines.append((*_cells(r), r.status, "-" if r.attempts is None else str(r.attempts), diff))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    out = ["  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1] for line in lines]
    out += [f"note {r.name}: {n}" for r in runs.rows for n in r.notes]
    out += [f"note: {n}" for n in runs.notes]
    return "\n".join(out)


def plot_runs_curves(runs: RunTable, keys: Sequence[str] = ("val/dice", "train/loss_epoch")) -> Any:
    """A matplotlib figure: one axis per metric, one line per run (runs whose ``metrics.csv`` cannot be read are
    left out; the table notes them)."""
    import matplotlib.pyplot as plt

    from medimg.errors import MedimgError

    fig, axes = plt.subplots(1, len(keys), figsize=(4.8 * len(keys), 3.4), squeeze=False)
    for row in runs.rows:
        try:
            metrics = read_epoch_metrics(row.path / "metrics.csv")
        except MedimgError:
            continue
        for ax, key in zip(axes[0], keys, strict=True):
            points = sorted(metrics.get(key, {}).items())
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=row.name)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.set_title(key)
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_learning_curves(
    run_dir: str | os.PathLike[str], keys: tuple[str, ...] = ("train/loss_epoch", "val/loss", "val/dice")
) -> Any:
    """A matplotlib figure of the chosen metrics against epoch."""
    import matplotlib.pyplot as plt

    from medimg.tasks.logs import read_metrics

    metrics = read_metrics(run_dir)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = metrics.get(key, [])
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig
