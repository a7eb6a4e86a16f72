"""Per-site scores: the validation / test metrics of each site (scanner, centre) apart, and the gap between the
best and the worst site -- what a pooled mean hides when one hospital's scans are rarer or different.

The tasks collect one row per case (site, per-class scores), gather them across DDP ranks, and call
:func:`site_table` for the means; :func:`write_site_report` writes the table as CSV (every epoch so far), which
:mod:`medimg.viz.sites` draws (one line per site).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medimg.io.atomic import atomic_path
from medimg.metrics.scores import DEFAULT_NSD_TOLERANCE_MM

log = logging.getLogger(__name__)

__all__ = [
    "NO_SITE",
    "SiteRows",
    "grid_spacings",
    "metric_key",
    "score_batch",
    "site_gap",
    "site_table",
    "write_site_report",
]

#: The site of cases whose data names none.
NO_SITE = "all"


class SiteRows:
    """Per-case scores with their site, collected over one validation / test epoch.

    ``add(sites, scores)`` takes the batch's sites and ``{"dice": (N, C) tensor, ...}`` with one column per
    foreground class; :meth:`gather` returns every rank's rows (a collective under DDP).
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, sites: Sequence[str], scores: dict[str, torch.Tensor]) -> None:
        for i, site in enumerate(sites):
            row: dict[str, Any] = {"site": str(site)}
            for name, values in scores.items():
                row[name] = [float(v) for v in values[i].detach().float().cpu().reshape(-1).tolist()]
            self.rows.append(row)

    def reset(self) -> None:
        self.rows = []

    def gather(self) -> list[dict[str, Any]]:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return list(self.rows)
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, self.rows)
        return [row for part in parts for row in part]


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def site_table(
    rows: list[dict[str, Any]], metrics: Sequence[str], class_names: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """Mean of each metric per (site, class) over that site's cases: rows ``{site, class, class_index, cases,
    <metric>...}``,
    sorted by site then class. medimg's scores are finite by policy (:mod:`medimg.metrics.policy`: a missed class
    has HD95 = the image diagonal); a non-finite value from elsewhere is left out of the mean.
    Classes are numbered from 1 (the first foreground class) unless ``class_names`` names them."""
    by_site: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_site[row["site"]].append(row)
    out = []
    for site in sorted(by_site):
        cases = by_site[site]
        n_classes = len(cases[0][metrics[0]])
        for c in range(n_classes):
            entry: dict[str, Any] = {
                "site": site,
                "class": (class_names or {}).get(c + 1, str(c + 1)),
                "class_index": c + 1,
                "cases": len(cases),
            }
            for m in metrics:
                entry[m] = _nanmean([case[m][c] for case in cases])
            out.append(entry)
    return out


def site_gap(table: list[dict[str, Any]], metric: str, higher_is_better: bool = True) -> tuple[str, str, float]:
    """(best site, worst site, gap) of ``metric`` averaged over classes: ``best - worst`` for a score such as
    Dice, ``worst - best`` for a distance such as HD95, so the gap is never negative."""
    per_site: dict[str, list[float]] = defaultdict(list)
    for row in table:
        per_site[row["site"]].append(row[metric])
    means = {s: _nanmean(v) for s, v in per_site.items()}
    finite = {s: v for s, v in means.items() if math.isfinite(v)}
    if not finite:
        return "", "", float("nan")
    best = (max if higher_is_better else min)(finite, key=lambda s: finite[s])
    worst = (min if higher_is_better else max)(finite, key=lambda s: finite[s])
    return best, worst, abs(finite[best] - finite[worst])


def metric_key(prefix: str, site: str, name: str) -> str:
    """The logged name of a per-site value, e.g. ``val/site_B/dice_class1`` (the site's characters outside
    ``[A-Za-z0-9_.-]`` become ``_``)."""
    return f"{prefix}/site_{re.sub(r'[^A-Za-z0-9_.-]', '_', site)}/{name}"


def write_site_report(history: list[dict[str, Any]], folder: str | Path, name: str, metrics: Sequence[str]) -> Path:
    """Write ``<name>.csv`` (every row of ``history``: epoch, site, class, cases, metrics) into ``folder``,
    atomically, and return its path. :func:`medimg.viz.sites.save_site_plot` draws it (one line per site)."""
    csv_path = Path(folder) / f"{name}.csv"
    fields = ["epoch", "site", "class", "class_index", "cases", *metrics]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buf.getvalue())
    return csv_path


def grid_spacings(image: Any, n: int, fallback: Sequence[float] | None) -> list[tuple[float, ...]]:
    """Voxel size (mm) of each of ``n`` cases of a batch, on the grid the network sees: the columns of the image's
    affine (a MONAI ``MetaTensor`` after ``Spacingd``: the preprocessing's target ``spacing``), else
    ``fallback`` (the checkpoint's ``preprocessing["spacing"]``), else 1 mm -- said once in the log."""
    affine = getattr(image, "affine", None)
    if isinstance(affine, torch.Tensor) and affine.shape[-2:] == (4, 4):
        a = affine.detach().cpu().double().reshape(-1, 4, 4)
        cols = torch.linalg.vector_norm(a[:, :3, :3], dim=1)
        if a.shape[0] == n:
            return [tuple(float(v) for v in row) for row in cols]
        if a.shape[0] == 1:
            return [tuple(float(v) for v in cols[0])] * n
    if fallback is not None:
        return [tuple(float(v) for v in fallback)] * n
    _warn_no_spacing()
    return [(1.0, 1.0, 1.0)] * n


@functools.cache
def _warn_no_spacing() -> None:
    log.warning("validation images carry no affine and no preprocessing spacing: distances in voxels (1 mm)")


def score_batch(
    pred: torch.Tensor, truth: torch.Tensor, spacings: Sequence[Sequence[float]], num_classes: int, tolerance_mm: float
) -> dict[str, torch.Tensor]:
    """Each :data:`~medimg.metrics.VALIDATION_METRICS` entry of a batch of label maps ``(N, *spatial)``:
    ``{name: (N, num_classes - 1) tensor}`` for the foreground classes, computed by
    :func:`medimg.metrics.case_scores` in mm with each case's voxel size -- the one scoring of validation, test
    and :func:`score_cases`."""
    from medimg.metrics import VALIDATION_METRICS, case_scores

    p = pred.detach().cpu().numpy()
    t = truth.detach().cpu().numpy()
    classes = range(1, num_classes)
    out = {m.name: torch.zeros(p.shape[0], num_classes - 1, dtype=torch.float64) for m in VALIDATION_METRICS}
    for i in range(p.shape[0]):
        scores = case_scores(p[i], t[i], spacings[i], classes, nsd_tolerance_mm=tolerance_mm)
        for m in VALIDATION_METRICS:
            out[m.name][i] = torch.tensor([float(getattr(scores[c], m.name)) for c in classes])
    return out


def score_cases(task: Any, cases: Sequence[dict[str, Any]], default_site: str = "all") -> list[dict[str, Any]]:
    """Score a segmentation task on labelled cases (``{"image", "label"[, "site"]}`` paths, as in a
    :class:`~medimg.data.datasets.CaseList`) with the checkpoint's own preprocessing: one row per case with its
    site and per-class scores of :data:`~medimg.metrics.VALIDATION_METRICS` (``dice``, ``hd95_mm``, ``nsd``: mm
    on the preprocessed grid, as validation), ready for :func:`site_table` -- what ``validate`` reports, for cases
    outside a data module (held-out test images of each site)."""
    from medimg.transforms.pipelines import Preprocessing, preprocessing

    settings = Preprocessing.from_dict(task.hparams["preprocessing"])
    prep = preprocessing(settings)
    k = int(task.hparams["num_classes"])
    tolerance = float(task.hparams.get("nsd_tolerance_mm", DEFAULT_NSD_TOLERANCE_MM))
    rows = SiteRows()
    for case in cases:
        item = prep({"image": case["image"], "label": case["label"]})
        with torch.no_grad():
            pred = task.infer(torch.as_tensor(item["image"]).unsqueeze(0).to(task.device)).argmax(1).cpu()
        truth = torch.as_tensor(item["label"])[0:1].long()
        spacings = grid_spacings(item["label"], 1, settings.spacing)
        rows.add([str(case.get("site") or default_site)], score_batch(pred, truth, spacings, k, tolerance))
    return rows.rows
