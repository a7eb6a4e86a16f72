"""Placing the frames of a derived multi-frame object (SEG, Parametric Map) on a voxel grid.

Each frame carries its Plane Position Sequence (0020,9113) > Image Position (Patient) (0020,0032); the
orientation and pixel spacing come from the Plane Orientation Sequence (0020,9116) and the Pixel Measures
Sequence (0028,9110), shared or per frame (PS3.3 C.7.6.16). The grid is either

* the **referenced series'** grid, when the caller passes ``reference=`` (a sparse SEG, as most tools write
  them, must be placed this way): every frame must land on one of its slices, or
* the grid the frames span themselves, when they cover every referenced source slice at regular steps
  (what medimg writes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from medimg.errors import SeriesGeometryError, SeriesSelectionError
from medimg.io.derived.source import SourceSlices, source_slices
from medimg.io.dicom.series import Series
from medimg.io.orientation import LPS_TO_RAS, lps_to_ras_affine

__all__ = ["FrameGeometry", "Grid", "frame_geometry", "place_frames"]

#: A frame is on a slice when its position is within this distance (mm) of the slice's position.
POSITION_TOL_MM = 0.01
#: Direction cosines of the frame and the grid must agree within this (as series grouping uses).
ORIENTATION_TOL = 1e-4


@dataclass(frozen=True)
class FrameGeometry:
    """Per-frame positions (LPS mm, (n, 3)), the shared orientation (row then column cosines, LPS) and
    Pixel Spacing (row spacing, column spacing) in mm."""

    positions: npt.NDArray[np.float64]
    iop: npt.NDArray[np.float64]
    pixel_spacing: tuple[float, float]
    slice_step: float | None  # Spacing Between Slices (0018,0088) if given

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        n: npt.NDArray[np.float64] = np.cross(self.iop[:3], self.iop[3:])
        return n


@dataclass(frozen=True)
class Grid:
    """Where the frames go: the RAS ``affine`` and ``shape`` (i, j, k) of the output, ``k_of_frame[f]`` the
    slice of frame ``f``; ``reference`` the checked source when one was given."""

    affine: npt.NDArray[np.float64]
    shape: tuple[int, int, int]
    k_of_frame: npt.NDArray[np.int64]
    reference: SourceSlices | None


def _item(group: Dataset | None, keyword: str) -> Dataset | None:
    if group is None:
        return None
    seq = group.get(keyword)
    return seq[0] if seq else None


def frame_geometry(ds: Dataset, path: Path) -> FrameGeometry:
    """Read the plane position of every frame and the shared orientation and spacing of a multi-frame object."""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if len(per_frame) != n:
        raise SeriesGeometryError(f"{len(per_frame)} per-frame functional groups for {n} frames", path)
    positions = np.empty((n, 3))
    iops = []
    spacing = None
    step = None
    for f, group in enumerate(per_frame):
        pos = _item(group, "PlanePositionSequence")
        if pos is None or "ImagePositionPatient" not in pos:
            raise SeriesGeometryError(
                f"frame {f + 1} has no Plane Position Sequence (0020,9113); it cannot be placed in the patient", path
            )
        positions[f] = [float(v) for v in pos.ImagePositionPatient]
        orient = _item(group, "PlaneOrientationSequence") or _item(shared, "PlaneOrientationSequence")
        if orient is None:
            raise SeriesGeometryError("no Plane Orientation Sequence (0020,9116)", path)
        iops.append([float(v) for v in orient.ImageOrientationPatient])
        measures = _item(group, "PixelMeasuresSequence") or _item(shared, "PixelMeasuresSequence")
        if measures is None or "PixelSpacing" not in measures:
            raise SeriesGeometryError("no Pixel Measures Sequence (0028,9110) with Pixel Spacing", path)
        spacing = (float(measures.PixelSpacing[0]), float(measures.PixelSpacing[1]))
        if measures.get("SpacingBetweenSlices"):
            step = float(measures.SpacingBetweenSlices)
    iop = np.asarray(iops, dtype=np.float64)
    if n and np.max(np.abs(iop - iop[0])) > ORIENTATION_TOL:
        raise SeriesGeometryError("frames with different orientations: not one stack of slices", path)
    assert spacing is not None or n == 0
    return FrameGeometry(positions, iop[0] if n else np.zeros(6), spacing or (1.0, 1.0), step)


def place_frames(
    ds: Dataset,
    geom: FrameGeometry,
    path: Path,
    reference: str | os.PathLike[str] | Series | None,
) -> Grid:
    """The grid of a derived object's frames: on the referenced series when ``reference`` is given, else on
    the regular stack the frames span (refused, with the hint to pass ``reference``, when frames are missing)."""
    if reference is not None:
        src = _reference_source(ds, path, reference)
        return _on_reference(ds, geom, path, src)
    return _on_own_stack(ds, geom, path)


def referenced_series_uids(ds: Dataset) -> list[str]:
    """Series Instance UIDs in Referenced Series Sequence (0008,1115) (Common Instance Reference module)."""
    return [str(item.SeriesInstanceUID) for item in ds.get("ReferencedSeriesSequence") or []]


def _reference_source(ds: Dataset, path: Path, reference: str | os.PathLike[str] | Series) -> SourceSlices:
    from medimg.io.dicom.scan import scan

    wanted = referenced_series_uids(ds)
    if isinstance(reference, Series):
        candidates = [reference]
        where = Path(reference.files[0]).parent
    else:
        where = Path(reference)
        candidates = [s for s in scan(where).series if not s.localizer and s.header.has_pixels]
    matching = [s for s in candidates if s.series_uid in wanted]
    if not matching:
        raise SeriesSelectionError(
            f"{path.name} references series {', '.join(wanted) or '(none)'}, which is not in this folder; pass "
            "reference= the folder holding the image series it was made on",
            where,
        )
    if len(matching) > 1:
        keys = ", ".join(s.key for s in matching)
        raise SeriesSelectionError(f"the referenced series is split into {keys}; pass reference= one part", where)
    src = source_slices(matching[0])
    if str(ds.get("FrameOfReferenceUID", "")) != src.frame_of_reference_uid:
        raise SeriesGeometryError(
            f"{path.name} and series {src.series.key} have different Frames of Reference (0020,0052)", where
        )
    return src


def _on_reference(ds: Dataset, geom: FrameGeometry, path: Path, src: SourceSlices) -> Grid:
    if (int(ds.Columns), int(ds.Rows)) != src.shape[:2]:
        raise SeriesGeometryError(
            f"frames of {int(ds.Columns)} x {int(ds.Rows)} pixels on series {src.series.key} of "
            f"{src.shape[0]} x {src.shape[1]}: the frames match no slice of the image",
            path,
        )
    lps = np.c_[geom.positions, np.ones(len(geom.positions))] @ LPS_TO_RAS.T
    ijk = (np.linalg.inv(src.affine) @ lps.T).T[:, :3]
    k = np.rint(ijk[:, 2]).astype(np.int64)
    ideal = (src.affine @ np.c_[np.zeros((len(k), 2)), k, np.ones(len(k))].T).T[:, :3]
    miss = np.linalg.norm(ideal - lps[:, :3], axis=1)
    same_axes = np.allclose(_grid_axes(geom), src.affine[:3, :2], atol=1e-3)
    bad = np.flatnonzero((miss > POSITION_TOL_MM) | (k < 0) | (k >= src.shape[2]))
    if not same_axes or bad.size:
        f = int(bad[0]) if bad.size else 0
        raise SeriesGeometryError(
            f"frame {f + 1} of {path.name} (at {np.round(geom.positions[f], 3).tolist()} mm LPS"
            f"{'' if same_axes else ', other orientation or pixel spacing'}) matches no slice of series "
            f"{src.series.key}; it was not made on this image",
            path,
        )
    return Grid(src.affine, src.shape, k, src)


def _grid_axes(geom: FrameGeometry) -> npt.NDArray[np.float64]:
    """The first two RAS affine columns (i and j steps, mm) the frames imply."""
    axes = np.zeros((3, 3))
    axes[:, 0] = geom.iop[:3] * geom.pixel_spacing[1]
    axes[:, 1] = geom.iop[3:] * geom.pixel_spacing[0]
    out: npt.NDArray[np.float64] = (LPS_TO_RAS[:3, :3] @ axes)[:, :2]
    return out


def _on_own_stack(ds: Dataset, geom: FrameGeometry, path: Path) -> Grid:
    normal = geom.normal
    along = geom.positions @ normal
    levels = _cluster(along)
    n_src = _referenced_slice_count(ds)
    hint = "; pass reference=THE_SOURCE_SERIES_FOLDER (medimg.load(seg, reference=...)) to place it on its source"
    if n_src is not None and len(levels) != n_src:
        raise SeriesGeometryError(
            f"the frames sit on {len(levels)} of the {n_src} referenced source slices (empty frames omitted){hint}",
            path,
        )
    gaps = np.diff(levels)
    if gaps.size and np.max(np.abs(gaps - gaps.mean())) > POSITION_TOL_MM:
        raise SeriesGeometryError(
            f"the frames are not evenly spaced (gaps {np.round(gaps, 3).tolist()} mm){hint}", path
        )
    step = float(gaps.mean()) if gaps.size else (geom.slice_step or _thickness(ds) or 1.0)
    first = int(np.argmin(along))
    origin = geom.positions[first]
    offsets = geom.positions - origin - np.outer(along - along[first], normal)
    if np.max(np.linalg.norm(offsets, axis=1)) > POSITION_TOL_MM:
        raise SeriesGeometryError(f"the frames are shifted in plane (gantry tilt?){hint}", path)
    affine = np.eye(4)
    affine[:3, 0] = geom.iop[:3] * geom.pixel_spacing[1]
    affine[:3, 1] = geom.iop[3:] * geom.pixel_spacing[0]
    affine[:3, 2] = normal * step
    affine[:3, 3] = origin
    k = np.rint((along - along[first]) / step).astype(np.int64)
    return Grid(lps_to_ras_affine(affine), (int(ds.Columns), int(ds.Rows), len(levels)), k, None)


def _cluster(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    s = np.sort(values)
    if not s.size:
        return s
    keep = np.r_[True, np.diff(s) > POSITION_TOL_MM]
    out: npt.NDArray[np.float64] = s[keep]
    return out


def _thickness(ds: Dataset) -> float | None:
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    measures = _item(shared, "PixelMeasuresSequence")
    value: Any = None if measures is None else measures.get("SliceThickness")
    return float(value) if value else None


def _referenced_slice_count(ds: Dataset) -> int | None:
    """How many source slices the object references: its referenced single-frame instances, or the distinct
    Referenced Frame Numbers (0008,1160) of one referenced multi-frame instance. None when unknown."""
    instances = [i for s in ds.get("ReferencedSeriesSequence") or [] for i in s.get("ReferencedInstanceSequence") or []]
    if len(instances) > 1:
        return len({str(i.ReferencedSOPInstanceUID) for i in instances})
    frames: set[int] = set()
    for group in ds.get("PerFrameFunctionalGroupsSequence") or []:
        for der in group.get("DerivationImageSequence") or []:
            for src in der.get("SourceImageSequence") or []:
                numbers = src.get("ReferencedFrameNumber")
                if numbers is None:
                    continue
                frames.update(int(v) for v in (numbers if isinstance(numbers, list | tuple) else [numbers]))
    # max, not len: frames 3..5 of a multi-frame source are 5 slices' worth of grid, not 3
    return max(frames) if frames else (len(instances) or None)
