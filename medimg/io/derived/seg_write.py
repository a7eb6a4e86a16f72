"""Writing a label :class:`~medimg.io.volume.Volume` as a DICOM Segmentation (PS3.3 A.51) with highdicom.

Choices, stated once:

* **BINARY** Segmentation Type (0062,0001), one segment per foreground class, one frame per segment and
  source slice -- *empty frames included* (highdicom's ``omit_empty_frames=False``), so a medimg SEG loads
  on its own, without its source series. BINARY, not the newer LABELMAP SOP class, because it is what PACS,
  OHIF and 3D Slicer read today.
* **Empty mask policy**: a mask with no foreground voxels is written all the same -- every class becomes a
  segment whose frames are empty -- because "the model found nothing" is a result a reader must be able to
  see and sign off. It is logged (no identifiers), never refused.
* **Classes**: a mask value without a class name is refused; 40 (or 255) classes are written as 40 (255)
  segments. Segment numbers equal the label values.
* The frames copy their plane positions from the source instances (:mod:`medimg.io.derived.source`); the patient,
  study and Frame of Reference modules are copied from the source, so a viewer files the SEG under the
  right study. The file appears atomically: complete, or not at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import ImageValueError, MedimgError
from medimg.io.atomic import atomic_path
from medimg.io.derived.concepts import AlgorithmInfo, class_concepts, new_instance
from medimg.io.derived.source import SourceSlices, check_on_grid, source_slices
from medimg.io.dicom.series import Series
from medimg.io.volume import Volume

__all__ = ["MAX_SEGMENTS", "write_seg"]

log = logging.getLogger(__name__)

#: Label values are stored in 8 bits by medimg's masks; 255 foreground classes at most.
MAX_SEGMENTS = 255
_SEG_SERIES_NUMBER = 900  # series numbers of derived objects: shown after the acquired series in a viewer


def write_seg(
    mask: Volume,
    source: str | os.PathLike[str] | Series | SourceSlices,
    out: str | os.PathLike[str],
    *,
    labels: Mapping[int, str] | None = None,
    algorithm: AlgorithmInfo | None = None,
    series_description: str = "medimg segmentation",
    series_number: int = _SEG_SERIES_NUMBER,
) -> Path:
    """Write ``mask`` (integer labels on the source series' grid) as a DICOM SEG referencing ``source``.

    Args:
        mask: labels 0 (background) .. N, shape (i, j, k) and affine exactly as ``medimg.load(source)`` gives
            (``medimg.segment`` returns that).
        source: the DICOM series the mask was made from: a folder or file, a scanned :class:`Series`, or
            :class:`SourceSlices`.
        out: the ``.dcm`` file to write (atomically).
        labels: class names by label value, e.g. ``{0: "background", 1: "spleen"}``; missing names become
            ``"class N"``. Label 0 is never a segment.
        algorithm: model name, version and parameters (checkpoint SHA-256); default: "medimg", no parameters.

    Raises:
        ImageValueError: non-integer values, a label without a name and outside the classes, or more than
            :data:`MAX_SEGMENTS` classes.
        SeriesGeometryError / SeriesSelectionError / MedimgError: see :func:`source_slices`.
    """
    import highdicom as hd

    from medimg._version import __version__

    out = Path(out)
    src = source if isinstance(source, SourceSlices) else source_slices(source)
    check_on_grid(mask, src, "mask")
    array = np.asarray(mask.array)
    if array.ndim != 3 or not (array.dtype.kind in "uib" or np.all(np.mod(array, 1) == 0)):
        raise ImageValueError(f"a SEG is written from integer labels (i, j, k), got {array.dtype} {array.shape}", out)
    if array.size and array.min() < 0:
        raise ImageValueError("negative label values cannot be segments", out)
    names = _class_names(labels, int(array.max()) if array.size else 0, out)
    algorithm = algorithm or AlgorithmInfo("medimg", __version__)
    frames = src.frames_from_volume(array.astype(np.uint8, copy=False))
    if not frames.any():
        log.warning("the mask has no foreground voxels: writing a SEG with %d empty segment(s)", len(names))
    descriptions = [_segment(n, name, algorithm) for n, name in names.items()]
    try:
        seg = hd.seg.Segmentation(
            source_images=src.datasets,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            **new_instance(series_number),
            manufacturer_model_name=algorithm.name[:64],
            software_versions=__version__,
            device_serial_number="0",
            content_description=series_description[:64],
            content_label="MEDIMG_SEG",
            series_description=series_description[:64],
            omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise MedimgError(f"highdicom refused to build the SEG ({type(exc).__name__}: {exc})", out) from exc
    with atomic_path(out) as tmp:
        seg.save_as(tmp)
    log.info("wrote a SEG with %d segment(s) on %d source slice(s): %s", len(names), src.shape[2], out)
    return out


def _class_names(labels: Mapping[int, str] | None, max_label: int, out: Path) -> dict[int, str]:
    """Names of segments 1..N: every named foreground class and every label value present (N contiguous)."""
    named = {int(k): str(v) for k, v in (labels or {}).items() if int(k) > 0}
    if labels is not None and max_label > max(named, default=0):
        raise ImageValueError(
            f"the mask holds label {max_label} but only classes {sorted(named)} are named; pass the model's "
            "class names (labels=...) that match its output",
            out,
        )
    n = max(max_label, max(named, default=0), 1)
    if n > MAX_SEGMENTS:
        raise ImageValueError(f"{n} classes: a medimg SEG holds at most {MAX_SEGMENTS} segments", out)
    return {k: named.get(k, f"class {k}") for k in range(1, n + 1)}


def _segment(number: int, name: str, algorithm: AlgorithmInfo) -> Any:
    import highdicom as hd

    category, kind = class_concepts(name)
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm.sequence(),  # type: ignore[arg-type]
    )
