"""DICOM SEG and Parametric Map files opened directly as overlays of the browser viewer, and the segments' colour
table (NiiVue's label colour map) and names.

A ``.dcm`` overlay is read with medimg's own readers (:func:`medimg.io.derived.read_seg`,
:func:`~medimg.io.derived.parametric_map.read_parametric_map`) onto the grid of the image series it references:
when the image was given as a DICOM folder or file, that series is the reference (a sparse SEG, empty frames
omitted, needs it). A SEG under the ``"seg"`` key is drawn one colour per segment, the colour each segment
recommends in (0062,000D) Recommended Display CIELab Value (converted to sRGB by highdicom), else one of
:data:`SEGMENT_PALETTE`; under ``"mask"`` or ``"label"`` any segment counts as foreground. A Parametric Map goes
under ``"heatmap"`` or ``"uncertainty"`` and is drawn like one (colour map and opacity).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimg.errors import MedimgError
from medimg.io.volume import Volume

__all__ = ["SEGMENT_PALETTE", "check_same_frame", "read_overlay", "segment_array", "segment_lut", "segment_names"]

#: Colours of segments that recommend none (the first ten of matplotlib's ``tab10``, as "#rrggbb").
SEGMENT_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip

#: Which DICOM derived object each overlay key takes: a SEG (labels) or a Parametric Map (values).
_TAKES = {"seg": "SEG", "mask": "SEG", "label": "SEG", "heatmap": "PM", "uncertainty": "PM"}
_WHAT = {"SEG": "DICOM SEG: open it as 'seg' (segments in their colours), 'mask' or 'label'",
         "PM": "DICOM Parametric Map: open it as 'heatmap' or 'uncertainty'"}  # fmt: skip


def _dicom_reference(image: Any) -> str | os.PathLike[str] | None:
    """The image's DICOM folder (or multi-frame file's folder) when the image was given as a DICOM path."""
    if not isinstance(image, str | os.PathLike):
        return None
    from medimg.io.volume import is_nifti

    p = Path(image)
    if p.is_dir():
        return p
    return None if is_nifti(p) or not p.is_file() else p.parent


def read_overlay(kind: str, thing: Any, image: Any) -> Volume | None:
    """The overlay ``thing`` (a path) read as a Volume when it is a DICOM SEG or Parametric Map, on the grid of
    ``image``'s series when ``image`` is a DICOM path; None when ``thing`` is no such file (the caller loads it
    as any image). A SEG under a map's key, or a map under a mask's, is refused in one line."""
    if isinstance(thing, Volume) or not isinstance(thing, str | os.PathLike):
        return None
    p = Path(thing)
    if not p.is_file():
        return None
    from medimg.io.dicom.derived_listing import derived_kind

    found = derived_kind(p)
    if found not in _WHAT:
        return None
    if kind in _TAKES and _TAKES[kind] != found:
        raise MedimgError(f"the {kind} overlay {p.name} is a {_WHAT[found]}")
    from medimg.errors import SeriesSelectionError
    from medimg.io.derived.dispatch import read_if_derived

    reference = _dicom_reference(image)
    try:
        return read_if_derived(p, reference=reference)
    except SeriesSelectionError:
        if reference is None:
            raise
        # made on another series than the image's: read on its own stack, then the Frame of Reference and grid
        # checks (check_same_frame, check_overlay_grid) say what differs, naming both
        return read_if_derived(p)


def check_same_frame(kind: str, overlay: Volume, image: Volume) -> None:
    """Refuse an overlay in another patient frame than the image: both carry a (0020,0052) Frame of Reference
    UID (a DICOM image, SEG or Parametric Map) and they differ. The grid check comes after this one."""
    theirs = str(overlay.meta.get("frame_of_reference_uid", "") or "")
    ours = str(image.meta.get("frame_of_reference_uid", "") or "")
    if theirs and ours and theirs != ours:
        raise MedimgError(
            f"the {kind} overlay is in Frame of Reference (0020,0052) {theirs} and the image in {ours}: it was "
            "not made on this image (register and resample it onto the image first)"
        )


def segment_names(overlay: Volume) -> dict[int, str]:
    """Segment number -> name: the SEG's Segment Label (0062,0005) from ``meta["segments"]``, else "segment N"
    for each label value present. Refuses a "seg" overlay that is not whole non-negative numbers."""
    a = np.asarray(overlay.array)
    fractional = a.dtype.kind == "f" and not np.all(np.mod(a[np.isfinite(a)], 1) == 0)
    if fractional or (a.size and np.nanmin(a) < 0):
        raise MedimgError(
            f"the seg overlay holds {a.dtype} values that are not segment numbers 0, 1, 2 ...: show a map as "
            "'heatmap' instead"
        )
    table = overlay.meta.get("segments") or {}
    present = [int(n) for n in np.unique(a[np.isfinite(a)]) if n > 0] if a.size else []
    numbers = sorted({*(int(n) for n in table), *present})
    return {n: str((table.get(n) or {}).get("label") or f"segment {n}") for n in numbers}


def segment_lut(overlay: Volume, names: dict[int, str]) -> Any:
    """NiiVue's label colour map (an ``ipyniivue.LUT``) for segments 0..N: 0 transparent, each segment opaque in
    its recommended colour (``meta["segments"][n]["color"]``) or the palette's."""
    from ipyniivue import ColorMap  # type: ignore[import-untyped]
    from ipyniivue.utils import make_label_lut  # type: ignore[import-untyped]

    table = overlay.meta.get("segments") or {}
    top = max(names, default=0)
    rgb = [(0, 0, 0)] + [_rgb((table.get(n) or {}).get("color") or SEGMENT_PALETTE[(n - 1) % 10])
                         for n in range(1, top + 1)]  # fmt: skip
    labels = ["background"] + [names.get(n, f"segment {n}") for n in range(1, top + 1)]
    alpha = [0.0] + [255.0] * top
    cmap = ColorMap(R=[float(c[0]) for c in rgb], G=[float(c[1]) for c in rgb], B=[float(c[2]) for c in rgb],
                    A=alpha, I=[float(n) for n in range(top + 1)], labels=labels)  # fmt: skip
    return make_label_lut(cmap)


def segment_array(overlay: Volume) -> npt.NDArray[Any]:
    """The segment numbers sent to the browser: uint8 up to 255 segments, else uint16."""
    a = np.nan_to_num(np.asarray(overlay.array)[..., 0] if np.ndim(overlay.array) == 4 else overlay.array)
    out: npt.NDArray[Any] = a.astype(np.uint8 if a.size == 0 or a.max() <= 255 else np.uint16)
    return out


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
