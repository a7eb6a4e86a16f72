"""What the browser viewer is sent: each volume once, as gzip-compressed NIfTI bytes on the RAS grid, and how
each kind of overlay is drawn (colour map, threshold, opacity).

The image and its overlays are reoriented to RAS (:func:`medimg.viz.planes.to_ras`) before they are sent, so a
voxel index NiiVue reports back is an index into the arrays kept here, and NiiVue's millimetres are the
scanner's RAS+ millimetres of the :class:`~medimg.io.volume.Volume` affine.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medimg.errors import MedimgError
from medimg.io.volume import GRID_TOLERANCE_MM, Volume

__all__ = [
    "OVERLAY_KINDS",
    "OverlayStyle",
    "check_overlay_grid",
    "map_range",
    "nifti_gz",
    "outline",
    "overlay_array",
    "still_layers",
]

OverlayKind = Literal["mask", "label", "heatmap", "uncertainty", "seg"]


@dataclass(frozen=True)
class OverlayStyle:
    """How one kind of overlay is drawn: NiiVue colour map, the display range and the starting opacity.

    Values below ``cal_min`` are transparent (NiiVue's ``ZERO_TO_MAX_TRANSPARENT_BELOW_MIN``), so a mask shows
    only its voxels and a heatmap only where it is at least ``cal_min``."""

    colormap: str
    cal_min: float
    cal_max: float
    opacity: float
    binary: bool
    caption: str
    segments: bool = False  # numbered segments, each in its own colour (NiiVue's label colour map)


#: The overlays ``view`` knows, in drawing order (later ones on top). Colours follow the PNG figures of
#: :func:`medimg.viz.planes.render_planes`: reference label green, heatmap inferno, a DICOM SEG's segments in
#: their own colours (:mod:`medimg.viz.viewer_derived`);
#: the model's mask red (NiiVue has no plain yellow map; the crosshair is drawn cyan so it is not mistaken for it).
OVERLAY_KINDS: dict[str, OverlayStyle] = {
    "heatmap": OverlayStyle("inferno", 0.1, 1.0, 0.4, False, "heatmap"),
    "uncertainty": OverlayStyle("viridis", 0.1, 1.0, 0.4, False, "uncertainty"),
    "seg": OverlayStyle("gray", 0.0, 1.0, 0.6, False, "segments", segments=True),  # colours: the SEG's own
    "label": OverlayStyle("green", 0.5, 1.0, 0.8, True, "reference label"),
    "mask": OverlayStyle("red", 0.5, 1.0, 0.8, True, "model's mask"),
}


def nifti_gz(array: npt.NDArray[Any], affine: npt.NDArray[np.float64], slope: float | None = None) -> bytes:
    """Gzip-compressed NIfTI-1 bytes of ``array`` (i, j, k[, t]) with its RAS+ ``affine``.

    Booleans go as uint8 and 64-bit types as float32 (WebGL textures hold 32-bit values at most); integer CT stays
    int16 HU. Compression level 1: a 512 x 512 x 300 CT shrinks about threefold in well under a second, and the
    browser inflates it once. ``slope``: the NIfTI scale factor for ``array`` (see :func:`overlay_array`)."""
    import nibabel as nib

    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    elif a.dtype.itemsize > 4 or a.dtype in (np.uint32, np.int8):
        a = a.astype(np.float32)  # float64, int64 ...: exact for whole numbers below 2**24 (HU, labels)
    img = nib.Nifti1Image(a, np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm", "sec")
    if slope is not None:  # stored value x (0028,1053)-like slope = real value, applied by NiiVue
        img.header.set_slope_inter(slope, 0.0)
    return gzip.compress(img.to_bytes(), compresslevel=1)


def check_overlay_grid(kind: str, overlay: Volume, image: Volume) -> None:
    """Refuse an overlay that is not on the image's voxel grid (same (i, j, k) shape, same affine to
    :data:`~medimg.io.volume.GRID_TOLERANCE_MM`), naming both shapes."""
    shape, ref = tuple(np.shape(overlay.array))[:3], tuple(np.shape(image.array))[:3]
    if np.ndim(overlay.array) != 3 and not (np.ndim(overlay.array) == 4 and np.shape(overlay.array)[3] == 1):
        raise MedimgError(f"the {kind} overlay has shape {np.shape(overlay.array)}: an overlay must be 3D (i, j, k)")
    if shape != ref:
        raise MedimgError(
            f"the {kind} overlay's grid {shape} differs from the image's grid {ref}: resample it onto the image "
            "(e.g. medimg.inference's back-to-input step) before viewing"
        )
    if not np.allclose(overlay.affine, image.affine, atol=GRID_TOLERANCE_MM):
        raise MedimgError(
            f"the {kind} overlay {shape} and the image {ref} have the same shape but different affines (more than "
            f"{GRID_TOLERANCE_MM} mm apart): resample the overlay onto the image's grid before viewing"
        )


def overlay_array(kind: str, overlay: Volume) -> tuple[npt.NDArray[Any], float | None]:
    """The array sent for an overlay and its NIfTI slope: masks as uint8 0/1 (any label > 0); maps in [0, 1] as
    uint8 steps of 1/255 (a quarter of float32's bytes, finer than a colour map shows), other maps as float32."""
    a = np.asarray(overlay.array)
    if a.ndim == 4:
        a = a[..., 0]
    if OVERLAY_KINDS[kind].binary:
        return (a > 0).astype(np.uint8), None
    a = np.asarray(a, dtype=np.float32)
    if a.size and float(np.nanmin(a)) >= 0.0 and float(np.nanmax(a)) <= 1.0:  # so no infinities, maybe NaN
        steps = a * np.float32(255)
        np.rint(steps, out=steps)
        steps[np.isnan(steps)] = 0  # (np.nan_to_num also looks for infinities: 6 s at 512 x 512 x 300)
        return steps.astype(np.uint8), 1.0 / 255
    return a, None


def outline(mask: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The mask's surface: its voxels with at least one face neighbour outside it (the mask minus its 3D
    erosion). Cut by any plane it shows as a contour one voxel wide, except where the plane grazes the surface."""
    from scipy.ndimage import binary_erosion

    m = np.asarray(mask) > 0
    surface = np.zeros(m.shape, np.uint8)
    axes = range(m.ndim)
    found = [np.flatnonzero(m.any(axis=tuple(j for j in axes if j != i))) for i in axes]
    if any(f.size == 0 for f in found):
        return surface
    # eroded within the mask's bounding box and one voxel around it (zeros, or the array's edge where
    # border_value=0 stands for them as before): the same surface, without eroding a whole 512^3-ish volume for a
    # small mask (2.2 s at 512 x 512 x 300, most of it zeros)
    box = tuple(slice(max(int(f[0]) - 1, 0), int(f[-1]) + 2) for f in found)
    inside = m[box]
    surface[box] = inside & ~binary_erosion(inside, border_value=0)
    return surface


def map_range(kind: str, sent: npt.NDArray[Any], slope: float | None) -> tuple[float, float]:
    """The display range of a map: the style's for a map in [0, 1] (sent as 1/255 steps); for any other map (a
    Parametric Map's real-world values, e.g. ADC in mm2/s) a tenth of its highest value up to the highest, as
    the heatmap's 0.1 .. 1.0."""
    style = OVERLAY_KINDS[kind]
    if slope is not None or sent.dtype == np.uint8:
        return style.cal_min, style.cal_max
    finite = sent[np.isfinite(sent)]
    top = float(finite.max()) if finite.size else 1.0
    return (0.1 * top, top) if top > 0 else (style.cal_min, style.cal_max)


def still_layers(overlays: Mapping[str, Volume]) -> dict[str, Any]:
    """What the still (PNG) images draw of the viewer's overlays, as :func:`medimg.viz.planes.render_planes`
    arguments with a title naming them: one map in colour (the heatmap, else the uncertainty map), the reference
    label (else a SEG's segments, together) and the model's mask as contours."""
    o = overlays
    heat, map_kind = (o["heatmap"], "heatmap") if "heatmap" in o else (o.get("uncertainty"), "uncertainty")
    label, label_kind = (o["label"], "reference label") if "label" in o else (o.get("seg"), "segments")
    shown = ((map_kind, heat), (label_kind, label), ("model's mask", o.get("mask")))
    drawn = [name for name, v in shown if v is not None]
    left = [k for k, over in (("uncertainty", "heatmap"), ("seg", "label")) if k in o and over in o]
    title = f"still images: {', '.join(drawn) or 'no overlays'}" + (f" (not drawn: {', '.join(left)})" if left else "")
    return {"heatmap": heat, "label": label, "prediction": o.get("mask"), "title": title}
