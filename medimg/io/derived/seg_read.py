"""Reading a DICOM Segmentation back into a label :class:`~medimg.io.volume.Volume` on its image's grid.

medimg's own reader (pydicom, one frame decoded at a time, so memory stays near the size of the label volume)
rather than highdicom's, so the tests can hold one against the other. Segment ``n`` becomes label ``n``;
the Segment Sequence (0062,0002) goes into ``meta["segments"]``. BINARY and LABELMAP frames are read as they
are; FRACTIONAL frames count a voxel in the segment at half the Maximum Fractional Value (0062,000E) or more.

Overlapping segments are never merged silently: by default they are refused with the voxel counts per pair
(``overlap="stack"`` returns one channel per segment instead, shape (i, j, k, segments)).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from medimg.errors import DicomReadError, ImageValueError, MedimgError
from medimg.io.derived.grid import frame_geometry, place_frames, referenced_series_uids
from medimg.io.derived.source import LABELMAP_SEGMENTATION_STORAGE, SEGMENTATION_STORAGE
from medimg.io.dicom.series import Series
from medimg.io.volume import Volume

__all__ = ["read_seg", "segment_table"]

OverlapPolicy = Literal["error", "stack"]


def read_seg(
    path: str | os.PathLike[str],
    *,
    reference: str | os.PathLike[str] | Series | None = None,
    overlap: OverlapPolicy = "error",
) -> Volume:
    """Read a DICOM SEG as integer labels (one per segment) on the grid of the image it references.

    Args:
        reference: the folder (or scanned :class:`Series`) of the referenced image series. Needed for a
            sparse SEG (empty frames omitted); when given, every frame must land on one of its slices and the
            result has exactly the shape and affine ``medimg.load(reference)`` gives. Without it, the grid is
            the stack the frames span, accepted only when they sit at regular steps on as many positions as the
            SEG references source slices (what medimg writes); a SEG from elsewhere that references only its
            non-empty slices, contiguous, comes out on that sub-stack (right positions, fewer slices).
        overlap: ``"error"`` (default) refuses overlapping segments; ``"stack"`` returns a 4D 0/1 array.

    Raises:
        SeriesGeometryError: frames that match no slice of the reference, or a sparse SEG without reference.
        SeriesSelectionError: the referenced series is not in ``reference``.
        ImageValueError: overlapping segments under ``overlap="error"``.
    """
    p = Path(path)
    ds = _open_seg(p)
    grid = place_frames(ds, frame_geometry(ds, p), p, reference)
    segments = segment_table(ds)
    numbers = sorted(segments)
    painted = _paint(ds, p, grid, numbers, stack=overlap == "stack")
    meta = _seg_meta(ds, segments, painted.overlaps)
    if painted.overlaps and overlap == "error":
        pairs = ", ".join(f"segments {a} and {b} share {c} voxels" for (a, b), c in sorted(painted.overlaps.items()))
        raise ImageValueError(
            f"overlapping segments ({pairs}); one label per voxel would hide that: read it with "
            "medimg.io.derived.read_seg(path, overlap='stack') for one channel per segment",
            p,
        )
    if painted.stacked is not None:
        meta["channels"] = numbers
        return Volume(painted.stacked, grid.affine, meta)
    return Volume(painted.labels, grid.affine, meta)


def _open_seg(p: Path) -> Dataset:
    """The SEG's data set, refused when it is not a Segmentation (SOP Class UID (0008,0016))."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(p)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DicomReadError(f"cannot read the SEG ({type(exc).__name__}: {exc})", p) from exc
    if str(ds.get("SOPClassUID", "")) not in (SEGMENTATION_STORAGE, LABELMAP_SEGMENTATION_STORAGE):
        raise MedimgError("not a DICOM Segmentation (SOP Class UID (0008,0016))", p)
    return ds


class _Painted(NamedTuple):
    labels: npt.NDArray[Any]  # one label per voxel (the last segment painted wins where they overlap)
    stacked: npt.NDArray[np.uint8] | None  # one 0/1 channel per segment, when asked
    overlaps: Counter[tuple[int, int]]  # voxels two segments share, by segment pair


def _paint(ds: Dataset, p: Path, grid: Any, numbers: list[int], *, stack: bool) -> _Painted:
    """Every frame painted onto the grid: labels (and the per-segment stack), overlaps counted."""
    labelmap = str(ds.SOPClassUID) == LABELMAP_SEGMENTATION_STORAGE
    seg_of_frame = None if labelmap else _segment_of_frames(ds, p)
    threshold = _threshold(ds)
    dtype = np.uint8 if max(numbers, default=0) <= 255 else np.uint16
    stacked = np.zeros((*grid.shape, len(numbers)), dtype=np.uint8) if stack else None
    channel = {n: c for c, n in enumerate(numbers)}
    labels = np.zeros(grid.shape, dtype=dtype)
    overlaps: Counter[tuple[int, int]] = Counter()
    for f, frame in enumerate(_iter_frames(ds, p)):
        k = int(grid.k_of_frame[f])
        plane = frame.T  # (rows, columns) -> (i, j)
        if seg_of_frame is None:
            values: npt.NDArray[Any] = plane.astype(dtype)
            hit = values > 0
            if stacked is not None:
                for n in np.unique(values[hit]):
                    stacked[:, :, k, channel[int(n)]] |= (values == n).astype(np.uint8)
            labels[:, :, k][hit] = values[hit]
            continue
        n = seg_of_frame[f]
        hit = plane >= threshold
        if not hit.any():
            continue
        target = labels[:, :, k]
        clash = target[hit]
        for other, count in zip(*np.unique(clash[(clash > 0) & (clash != n)], return_counts=True), strict=True):
            overlaps[(int(min(other, n)), int(max(other, n)))] += int(count)
        if stacked is not None:
            stacked[:, :, k, channel[n]] |= hit.astype(np.uint8)
        target[hit] = n
    return _Painted(labels, stacked, overlaps)


def _seg_meta(ds: Dataset, segments: dict[int, dict[str, str]], overlaps: Counter[tuple[int, int]]) -> dict[str, Any]:
    return {
        "source_format": "dicom-seg",
        "modality": "SEG",
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "referenced_series_uids": referenced_series_uids(ds),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
        "segmentation_type": str(ds.get("SegmentationType", "")),
        "segments": segments,
        "overlaps": {f"{a}&{b}": c for (a, b), c in sorted(overlaps.items())},
    }


def segment_table(ds: Dataset) -> dict[int, dict[str, str]]:
    """Segment Sequence (0062,0002) as ``{number: {"label", "category", "type", "algorithm", "color"}}``;
    ``color`` ("#rrggbb", sRGB) is the (0062,000D) Recommended Display CIELab Value, converted by highdicom,
    present only where the SEG recommends one."""
    table: dict[int, dict[str, str]] = {}
    for item in ds.get("SegmentSequence") or []:
        entry = {"label": str(item.get("SegmentLabel", ""))}
        lab = item.get("RecommendedDisplayCIELabValue")
        if lab is not None and len(lab) == 3:
            from highdicom.color import CIELabColor

            entry["color"] = "#{:02x}{:02x}{:02x}".format(*CIELabColor.from_dicom_value(lab).to_rgb(clip=True))
        for key, keyword in (
            ("category", "SegmentedPropertyCategoryCodeSequence"),
            ("type", "SegmentedPropertyTypeCodeSequence"),
        ):
            seq = item.get(keyword)
            if seq:
                entry[key] = f"{seq[0].CodingSchemeDesignator}:{seq[0].CodeValue} {seq[0].CodeMeaning}"
        algo = item.get("SegmentationAlgorithmIdentificationSequence")
        if algo:
            entry["algorithm"] = f"{algo[0].get('AlgorithmName', '')} {algo[0].get('AlgorithmVersion', '')}".strip()
        table[int(item.SegmentNumber)] = entry
    return table


def _segment_of_frames(ds: Dataset, path: Path) -> list[int]:
    """Referenced Segment Number (0062,000B) of each frame: per frame, or shared (a one-segment SEG)."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0].get("SegmentIdentificationSequence")
    out = []
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ident = group.get("SegmentIdentificationSequence") or shared
        if not ident:
            raise DicomReadError(f"frame {f + 1} has no Segment Identification Sequence (0062,000A)", path)
        out.append(int(ident[0].ReferencedSegmentNumber))
    return out


def _threshold(ds: Dataset) -> int:
    if str(ds.get("SegmentationType", "")) == "FRACTIONAL":
        return max(1, (int(ds.get("MaximumFractionalValue", 255)) + 1) // 2)
    return 1


def _iter_frames(ds: Dataset, path: Path) -> Iterator[npt.NDArray[Any]]:
    """Decode one frame at a time ((rows, columns) arrays): memory stays at one frame, not all of them."""
    from pydicom.pixels.utils import iter_pixels

    try:
        yield from iter_pixels(ds)
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        raise DicomReadError(f"cannot decode the SEG frames ({type(exc).__name__}: {exc})", path) from exc
