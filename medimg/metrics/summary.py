"""Summaries of per-case rows: mean, median and a seeded 95% bootstrap confidence interval per class and metric,
and the counts of missed / false-positive / both-empty cases that a mean alone would hide."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BOOTSTRAP_SAMPLES", "bootstrap_ci", "status_counts", "summarize", "summary_text"]

#: Resamples of the percentile bootstrap.
BOOTSTRAP_SAMPLES = 2000


def bootstrap_ci(
    values: npt.ArrayLike, *, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean: resample the cases with replacement ``samples`` times (numpy
    ``default_rng(seed)``), take the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the means. One case
    gives a zero-width interval; none gives (nan, nan)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(samples, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summarize(rows: Sequence[Mapping[str, Any]], metrics: Iterable[str], *, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (class, metric): ``n`` cases with a value, ``undefined`` cases without (only the relative
    volume error of a class absent from the reference, or a lesion score of a non-lesion class), ``mean``,
    ``median``, ``ci95_low``, ``ci95_high``. Sorted by class, then in the order of ``metrics``."""
    out = []
    names = list(metrics)
    for c in sorted({int(r["class"]) for r in rows}):
        of_class = [r for r in rows if int(r["class"]) == c]
        for name in names:
            raw = [r.get(name) for r in of_class]
            values = [float(x) for x in raw if x is not None and x != "" and math.isfinite(float(x))]
            if not values:
                continue
            lo, hi = bootstrap_ci(values, seed=seed)
            out.append(
                {
                    "class": c,
                    "metric": name,
                    "n": len(values),
                    "undefined": len(raw) - len(values),
                    "mean": float(np.mean(values)),
                    "median": float(np.median(values)),
                    "ci95_low": lo,
                    "ci95_high": hi,
                }
            )
    return out


def status_counts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per class: cases, and how many were ``missed`` (reference present, prediction empty), ``false_positive``
    (prediction present, reference empty) and ``both_empty``."""
    out = []
    for c in sorted({int(r["class"]) for r in rows}):
        status = [str(r["status"]) for r in rows if int(r["class"]) == c]
        out.append(
            {
                "class": c,
                "cases": len(status),
                "missed": status.count("missed"),
                "false_positive": status.count("false_positive"),
                "both_empty": status.count("both_empty"),
            }
        )
    return out


def summary_text(summary: Sequence[Mapping[str, Any]], counts: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a plain-text table (class, metric, n, mean, median, 95% CI), then the status counts."""
    lines = [f"{'class':>5}  {'metric':<22} {'n':>4}  {'mean':>10}  {'median':>10}  95% CI (bootstrap)"]
    for r in summary:
        undefined = f"  ({r['undefined']} undefined)" if r["undefined"] else ""
        lines.append(
            f"{r['class']:>5}  {r['metric']:<22} {r['n']:>4}  {r['mean']:>10.4g}  {r['median']:>10.4g}  "
            f"[{r['ci95_low']:.4g}, {r['ci95_high']:.4g}]{undefined}"
        )
    lines.append("")
    lines.append(f"{'class':>5}  {'cases':>5}  {'missed':>6}  {'false_positive':>14}  {'both_empty':>10}")
    for c in counts:
        lines.append(
            f"{c['class']:>5}  {c['cases']:>5}  {c['missed']:>6}  {c['false_positive']:>14}  {c['both_empty']:>10}"
        )
    return "\n".join(lines)
