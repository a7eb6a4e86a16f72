"""``medimg evaluate``: score a folder of predictions against a folder of labels, case by case, class by class.

Files pair up by case id: the file name without ``.nii``, ``.nii.gz`` or ``.dcm`` (a DICOM SEG, read with
:func:`medimg.io.load.load`). Every score is computed on the **label's grid**, with the label's voxel size in mm
(see :mod:`medimg.metrics.scores` for the definitions and :mod:`medimg.metrics.policy` for empty masks).

A prediction on another grid than its label is resampled onto the label's grid by nearest neighbour only when
both grids cover the same space: the same axis directions (direction cosines within
:data:`SAME_DIRECTION_TOLERANCE`) and the same outer box (every corner of the voxels' outer faces within one
voxel of the coarser grid). The row's ``note`` says so. Any other pair is refused with
:class:`GridMismatchError`, naming both files: resampling it would mean guessing a registration.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimg.errors import MedimgError
from medimg.io.atomic import atomic_write_text
from medimg.io.volume import GRID_TOLERANCE_MM, Volume
from medimg.metrics.catalog import METRICS
from medimg.metrics.lesions import DEFAULT_LESION_IOU, lesion_scores
from medimg.metrics.scores import DEFAULT_NSD_TOLERANCE_MM, case_scores, tolerance_of
from medimg.metrics.summary import status_counts, summarize
from medimg.metrics.surface import bounding_box

__all__ = [
    "CaseMatchError",
    "Evaluation",
    "GridMismatchError",
    "LabelMapError",
    "align",
    "case_id",
    "evaluate_folders",
    "list_cases",
    "write_csv",
]

LABEL_SUFFIXES = (".nii.gz", ".nii", ".dcm")
#: Largest difference between two grids' unit direction vectors for them to count as one orientation.
SAME_DIRECTION_TOLERANCE = 1e-3
LESION_FIELDS = ("lesion_sensitivity", "lesion_precision", "lesion_f1")


class GridMismatchError(MedimgError):
    """A prediction and its label lie on grids that do not cover the same space."""


class CaseMatchError(MedimgError):
    """The prediction and label folders share no case id, or one folder holds a case id twice."""


class LabelMapError(MedimgError):
    """A file that is not a 3D map of non-negative integer labels."""


@dataclass
class Evaluation:
    """What :func:`evaluate_folders` found.

    Attributes:
        rows: one per case and class: ``case_id``, ``class``, ``status``, every :data:`METRICS` field, the NSD
            tolerance, the volumes, lesion scores for lesion classes, and a ``note`` (resampling).
        summary: per class and metric: n, mean, median, 95% bootstrap CI (see :func:`summarize`).
        counts: per class: cases, missed, false_positive, both_empty.
        missing_predictions: label case ids without a prediction (not scored; listed).
        missing_labels: prediction case ids without a label (not scored; listed).
    """

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    counts: list[dict[str, Any]]
    missing_predictions: list[str] = field(default_factory=list)
    missing_labels: list[str] = field(default_factory=list)


def case_id(path: str | os.PathLike[str]) -> str:
    """``case_007.nii.gz`` -> ``case_007``: the name without its label-file suffix (any letter case)."""
    name = Path(path).name
    for suffix in LABEL_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_cases(path: str | os.PathLike[str]) -> dict[str, Path]:
    """Case id -> file of a folder of ``.nii``/``.nii.gz``/``.dcm`` files (hidden files skipped), or of one file."""
    p = Path(path)
    if not p.exists():
        raise CaseMatchError("no such file or folder", p)
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    found: dict[str, Path] = {}
    for f in files:
        if not f.name.lower().endswith(LABEL_SUFFIXES):
            continue
        cid = case_id(f)
        if cid in found:
            raise CaseMatchError(f"case id {cid!r} twice: {found[cid].name} and {f.name}; keep one", p)
        found[cid] = f
    if not found:
        raise CaseMatchError("no .nii, .nii.gz or .dcm label files here", p)
    return found


def read_label_map(path: Path) -> Volume:
    """A NIfTI or DICOM SEG file as a 3D integer label map (through :func:`medimg.io.load.load`)."""
    from medimg.io.load import load

    vol = load(path)
    arr = vol.array
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise LabelMapError(f"a label map is 3D, this file has shape {vol.shape}", path)
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.rint(arr)):
            raise LabelMapError("the voxels are not whole numbers: give a label map, not probabilities", path)
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind not in "iu":
        raise LabelMapError(f"voxels of type {arr.dtype} are not labels", path)
    if arr.size and arr.min() < 0:
        raise LabelMapError("negative label values; labels are 0 (background), 1, 2, ...", path)
    return Volume(arr, vol.affine, vol.meta)


def _corners(vol: Volume) -> npt.NDArray[np.float64]:
    """World (RAS mm) positions of the 8 corners of the grid's outer voxel faces."""
    idx = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in vol.shape[:3]])))
    out: npt.NDArray[np.float64] = idx @ vol.affine[:3, :3].T + vol.affine[:3, 3]
    return out


def _directions(vol: Volume) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = vol.affine[:3, :3] / np.linalg.norm(vol.affine[:3, :3], axis=0)
    return out


def align(pred: Volume, ref: Volume, pred_path: Path, ref_path: Path) -> tuple[npt.NDArray[Any], str]:
    """The prediction's labels on the reference's grid, and a note ("" when already on it).

    Raises:
        GridMismatchError: the grids do not cover the same space (see the module docstring).
    """
    if pred.shape == ref.shape and np.allclose(pred.affine, ref.affine, atol=GRID_TOLERANCE_MM):
        return pred.array, ""
    tol = max(max(pred.spacing), max(ref.spacing))
    same_dirs = np.allclose(_directions(pred), _directions(ref), atol=SAME_DIRECTION_TOLERANCE)
    offset = float(np.abs(_corners(pred) - _corners(ref)).max())
    if not same_dirs or offset > tol:
        why = "different axis directions" if not same_dirs else f"outer boxes {offset:.1f} mm apart"
        raise GridMismatchError(
            f"prediction {pred_path} ({_grid(pred)}) and label {ref_path} ({_grid(ref)}) do not cover the same "
            f"space ({why}); resample the prediction onto the label's grid with its registration first"
        )
    from scipy import ndimage

    m = np.linalg.inv(pred.affine) @ ref.affine
    out = ndimage.affine_transform(
        pred.array, m[:3, :3], offset=m[:3, 3], output_shape=ref.shape[:3], order=0, mode="nearest"
    )
    return out, f"prediction resampled from {_grid(pred)} onto the label's grid {_grid(ref)} (nearest neighbour)"


def _grid(vol: Volume) -> str:
    return f"{'x'.join(map(str, vol.shape[:3]))} at {'x'.join(f'{s:.3g}' for s in vol.spacing)} mm"


def evaluate_folders(
    predictions: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    classes: Sequence[int] | None = None,
    nsd_tolerance_mm: float | Mapping[int, float] = DEFAULT_NSD_TOLERANCE_MM,
    lesion_classes: Iterable[int] = (),
    lesion_iou: float = DEFAULT_LESION_IOU,
    seed: int = 0,
) -> Evaluation:
    """Score every prediction that has a label with the same case id.

    Args:
        predictions / labels: folders (or single files) of ``.nii``/``.nii.gz``/``.dcm`` label maps.
        classes: label values to score; default every non-zero value found in any label or prediction (a class
            absent from both files of a case is scored ``both_empty`` there).
        nsd_tolerance_mm: NSD tolerance in mm, one for all classes or per class (default 2 mm).
        lesion_classes: classes that also get lesion-wise sensitivity / precision / F1
            (:mod:`medimg.metrics.lesions`).
        seed: of the bootstrap confidence intervals.

    Raises:
        CaseMatchError: no case id in common (both lists are named), or a case id twice in one folder.
        GridMismatchError, LabelMapError, and the readers' errors, each naming the file.
    """
    preds, refs = list_cases(predictions), list_cases(labels)
    common = sorted(set(preds) & set(refs))
    missing_pred, missing_label = sorted(set(refs) - set(preds)), sorted(set(preds) - set(refs))
    if not common:
        raise CaseMatchError(
            f"no case id in both folders: labels {_ids(refs)}, predictions {_ids(preds)}; "
            "name each prediction like its label file",
            Path(predictions),
        )
    lesion = {int(c) for c in lesion_classes}
    per_case: dict[str, dict[int, dict[str, Any]]] = {}
    for cid in common:
        ref = read_label_map(refs[cid])
        pred = read_label_map(preds[cid])
        pred_arr, note = align(pred, ref, preds[cid], refs[cid])
        scores = case_scores(pred_arr, ref.array, ref.spacing, classes, nsd_tolerance_mm=nsd_tolerance_mm)
        rows = {}
        for c, s in scores.items():
            row: dict[str, Any] = {"case_id": cid, "class": c, **s.as_dict(), "note": note}
            if c in lesion:
                box = bounding_box(pred_arr == c, ref.array == c)
                ls = lesion_scores(pred_arr[box] == c, ref.array[box] == c, lesion_iou)
                row.update(
                    lesion_ref=ls.ref_lesions,
                    lesion_pred=ls.pred_lesions,
                    lesion_matched=ls.matched,
                    lesion_sensitivity=ls.sensitivity,
                    lesion_precision=ls.precision,
                    lesion_f1=ls.f1,
                )
            rows[c] = row
        per_case[cid] = rows
    rows_out = _fill_both_empty(per_case, nsd_tolerance_mm, lesion)
    names = [m.name for m in METRICS] + (list(LESION_FIELDS) if lesion else [])
    summary = summarize(rows_out, names, seed=seed)
    return Evaluation(rows_out, summary, status_counts(rows_out), missing_pred, missing_label)


def _fill_both_empty(
    per_case: dict[str, dict[int, dict[str, Any]]], tolerance: float | Mapping[int, float], lesion: set[int]
) -> list[dict[str, Any]]:
    """Every case gets a row for every class seen in any case: a class absent from both of a case's files is
    ``both_empty`` there (Dice 1, distances 0: :func:`medimg.metrics.policy.empty_mask_scores`)."""
    from medimg.metrics.policy import empty_mask_scores

    seen = sorted({c for rows in per_case.values() for c in rows})
    out = []
    for cid, rows in per_case.items():
        for c in seen:
            if c not in rows:
                s = empty_mask_scores(0, 0, worst_mm=0.0, voxel_ml=0.0, nsd_tolerance_mm=tolerance_of(tolerance, c))
                assert s is not None
                rows[c] = {"case_id": cid, "class": c, **s.as_dict(), "note": ""}
                if c in lesion:
                    rows[c].update(lesion_ref=0, lesion_pred=0, lesion_matched=0)
                    rows[c].update({f: 1.0 for f in LESION_FIELDS})
            out.append(rows[c])
    return out


def _ids(cases: Mapping[str, Path], limit: int = 5) -> str:
    ids = sorted(cases)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` as CSV (columns in first-seen order; floats with 6 significant digits), atomically."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())
    return Path(path)
