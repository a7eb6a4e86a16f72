"""The source series a DICOM Segmentation or Parametric Map is derived from, checked before anything is written.

A derived object must sit *exactly* on the acquired slices: each of its frames copies Image Position (Patient)
(0020,0032) from the source instance (or source frame) it references. That only works when the array being
written is on the grid the source slices define, so :func:`source_slices` refuses every series medimg had to
resample on load (gantry tilt, uneven gaps, missing slices) and every series without one Frame of Reference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from medimg.errors import MedimgError, SeriesGeometryError, SeriesSelectionError
from medimg.io.dicom.series import (
    DERIVED_SOP_CLASSES,
    LABELMAP_SEGMENTATION_STORAGE,
    PARAMETRIC_MAP_STORAGE,
    SEGMENTATION_STORAGE,
    Series,
)
from medimg.io.orientation import lps_to_ras_affine
from medimg.io.volume import GRID_TOLERANCE_MM, Volume, is_nifti

__all__ = [
    "DERIVED_SOP_CLASSES",
    "LABELMAP_SEGMENTATION_STORAGE",
    "PARAMETRIC_MAP_STORAGE",
    "SEGMENTATION_STORAGE",
    "SourceSlices",
    "check_on_grid",
    "source_slices",
]


# Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) that highdicom copies
# by attribute access; absent ones are added empty (a valid Type 2 value) on the in-memory header copy only.
_TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class SourceSlices:
    """The source instances of one series, arranged for a derived object.

    ``datasets`` are the headers (no pixel data) highdicom takes as ``source_images``: the single-frame
    instances in slice order, or the one enhanced multi-frame instance. ``frame_of_slice[k]`` is the index of
    the derived object's frame that must hold medimg slice ``k`` (slice order along the normal): ``k`` itself
    for single-frame sources, the source frame number - 1 for a multi-frame source.
    ``affine`` (RAS) and ``shape`` (i, j, k) are the grid ``medimg.load`` gives this series.
    """

    series: Series
    datasets: list[Dataset]
    frame_of_slice: list[int]
    affine: npt.NDArray[np.float64]
    shape: tuple[int, int, int]
    frame_of_reference_uid: str
    where: Path

    def frames_from_volume(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """(i, j, k) array -> (frames, rows, columns) in the source's frame order, C-contiguous (the writers walk
        it frame by frame; a strided view would make every frame a gather). A Fortran-ordered array in slice
        order -- what :func:`medimg.inference.segment` returns -- is that already and is not copied."""
        view = np.transpose(array, (2, 1, 0))
        if view.flags.c_contiguous and self.frame_of_slice == list(range(len(self.frame_of_slice))):
            return view
        out = np.empty(view.shape, dtype=array.dtype)
        out[self.frame_of_slice] = view
        return out


def source_slices(source: str | os.PathLike[str] | Series, *, purpose: str = "DICOM SEG") -> SourceSlices:
    """Scan ``source`` (a DICOM folder or file, or an already scanned :class:`Series`) and check it can anchor a
    derived object.

    ``purpose`` names the object to be written in the messages ("DICOM SEG", "a Parametric Map").

    Raises:
        MedimgError: a NIfTI file ("DICOM SEG needs the DICOM source series").
        SeriesSelectionError: no image series, or several (the message lists their keys).
        SeriesGeometryError: medimg resamples this series on load (gantry tilt, uneven gaps, missing slices),
            the frames carry no patient geometry, or they do not share one Frame of Reference UID (0020,0052).
    """
    if isinstance(source, Series):
        series = source
        where = Path(series.files[0]).parent
    else:
        where = Path(source)
        if is_nifti(where):
            raise MedimgError(f"{purpose} needs the DICOM source series (a NIfTI file has no DICOM UIDs)", where)
        series = _pick_series(where)
    _check_geometry(series, where)
    datasets, frame_of_slice = _read_source_headers(series, where)
    frame_uid = _single_frame_of_reference(datasets, series, where)
    g = series.geometry
    assert g is not None  # _check_geometry refused series without geometry
    f0 = series.frames[0]
    return SourceSlices(
        series=series,
        datasets=datasets,
        frame_of_slice=frame_of_slice,
        affine=lps_to_ras_affine(g.affine_lps()),
        shape=(f0.columns, f0.rows, len(series.frames)),
        frame_of_reference_uid=frame_uid,
        where=where,
    )


def check_on_grid(volume: Volume, src: SourceSlices, what: str) -> None:
    """Refuse ``volume`` unless it lies on ``src``'s grid: same shape (i, j, k), affine within 1e-3 mm, and not
    resampled on load (``meta["resampled"]``)."""
    if volume.meta.get("resampled"):
        raise SeriesGeometryError(
            f"the {what} was made on a resampled grid ({volume.meta['resampled']}); its frames would not match the "
            "acquired slices, so no DICOM object is written",
            src.where,
        )
    if tuple(volume.shape[:3]) != src.shape:
        raise SeriesGeometryError(
            f"the {what} has shape {tuple(volume.shape[:3])} but series {src.series.key} has {src.shape}; "
            "write it from the grid medimg.load gives that series",
            src.where,
        )
    err = float(np.max(np.abs(volume.affine - src.affine)))
    if err > GRID_TOLERANCE_MM:
        raise SeriesGeometryError(
            f"the {what}'s affine differs from series {src.series.key}'s grid by {err:.4g} mm "
            f"(tolerance {GRID_TOLERANCE_MM} mm); write it from the grid medimg.load gives that series",
            src.where,
        )


def _pick_series(path: Path) -> Series:
    from medimg.io.dicom.scan import scan

    if not path.exists():
        raise MedimgError("no such file or folder", path)
    found = scan(path)
    candidates = [s for s in found.series if not s.localizer and s.header.has_pixels]  # scan leaves SEG/PM out
    if not candidates:
        raise SeriesSelectionError("no DICOM image series found to reference", path)
    if len(candidates) > 1:
        listing = "; ".join(f"{s.key} {s.modality} {s.shape}" for s in candidates)
        raise SeriesSelectionError(
            f"{len(candidates)} series found; point at the folder of the one series the result was made from: "
            f"{listing}",
            path,
        )
    return candidates[0]


def _check_geometry(series: Series, where: Path) -> None:
    blocking = [p for p in series.problems if p.blocking]
    if blocking:
        raise SeriesGeometryError(
            f"series {series.key} does not form a regular grid ({'; '.join(map(str, blocking))}); medimg resamples "
            "it on load, so a derived object would not sit on the acquired slices",
            where,
        )
    g = series.geometry
    if g is None:
        raise SeriesGeometryError(
            f"series {series.key} has no patient geometry (Image Position/Orientation (Patient) (0020,0032)/"
            "(0020,0037)); a SEG needs per-frame positions",
            where,
        )
    if np.any(np.abs(g.in_plane_offsets) > GRID_TOLERANCE_MM):
        raise SeriesGeometryError(
            f"series {series.key} has gantry tilt ({g.tilt_deg:.3g} deg): medimg.load shifts its slices onto an "
            "orthogonal grid, and a mask on that grid cannot be mapped back to the acquired slices exactly; "
            "no DICOM object is written",
            where,
        )


def _read_source_headers(series: Series, where: Path) -> tuple[list[Dataset], list[int]]:
    import pydicom

    paths = [f.path for f in series.frames]
    multi = [f.index is not None for f in series.frames]
    if any(multi):
        if len(set(paths)) != 1 or not all(multi):
            raise SeriesGeometryError(
                f"series {series.key} mixes frames of several multi-frame files; write from one enhanced instance",
                where,
            )
        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        n = int(ds.get("NumberOfFrames", 1) or 1)
        order = [int(f.index) for f in series.frames if f.index is not None]
        if sorted(order) != list(range(n)):
            raise SeriesGeometryError(
                f"series {series.key} uses {len(order)} of the {n} frames of its multi-frame instance (several "
                "stacks or phases); a derived object must cover every frame",
                where,
            )
        return [_with_type2(ds)], order
    datasets = [_with_type2(pydicom.dcmread(p, stop_before_pixels=True)) for p in paths]
    return datasets, list(range(len(datasets)))


def _with_type2(ds: Dataset) -> Dataset:
    for keyword in _TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds


def _single_frame_of_reference(datasets: Sequence[Dataset], series: Series, where: Path) -> str:
    uids = {str(ds.get("FrameOfReferenceUID", "") or "") for ds in datasets}
    if "" in uids:
        raise SeriesGeometryError(
            f"series {series.key}: an instance has no Frame of Reference UID (0020,0052); a derived object "
            "cannot be registered to it",
            where,
        )
    if len(uids) > 1:
        raise SeriesGeometryError(
            f"series {series.key} mixes {len(uids)} Frames of Reference (0020,0052); its slices are not known to "
            "share one patient coordinate system, so no DICOM object is written",
            where,
        )
    return uids.pop()
