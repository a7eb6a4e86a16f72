"""Philips' private rules: the floating-point value scale, diffusion encoding and the complex image component.

Sources: Philips' DICOM conformance statements (Achieva/Ingenia, "Philips MR Imaging DD 001" dictionary),
Chenevert et al., "Diffusion coefficient measurement using a temperature-controlled fluid for quality control in
multicenter studies" (JMRI 2011) and dcm2niix's Philips notes (``Philips/README.md``, PMC3998685):

- Philips stores three values per pixel scale: Rescale Slope/Intercept (0028,1053)/(0028,1052) give the
  *display* value DV = SV x RS + RI; (2005,100E) ``Philips MR Imaging DD 001`` "Scale Slope" (SS) gives the
  *floating-point* (precise, physical) value FP = DV / (RS x SS) = (SV x RS + RI) / (RS x SS). Values compared
  across scans (quantitative maps, signal intensities between sessions) need FP; dcm2niix writes FP by default
  (its ``-p y``). In an enhanced file SS sits in each frame's Philips private functional group.
- (2001,1003) ``Philips Imaging DD 001`` Diffusion B-Factor (s/mm^2), (2001,1004) Diffusion Direction
  (``I`` = isotropic, a derived trace image), (2005,10B0/10B1/10B2) ``Philips MR Imaging DD 001`` Diffusion
  Direction RL/AP/FH: the gradient in the patient frame (LPS+ components x, y, z).
- (2005,1011) ``Philips MR Imaging DD 001`` Image Type: ``M`` magnitude, ``P`` phase, ``R`` real,
  ``I`` imaginary.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset

from medimg.io.dicom.vendor_tags import private_numbers, private_text

__all__ = [
    "PHILIPS_IMAGE_PARTS",
    "is_philips",
    "philips_b_value",
    "philips_gradient_lps",
    "philips_image_part",
    "philips_isotropic",
    "philips_precise",
    "philips_scale_slope",
]

PHILIPS_IMAGING = "Philips Imaging DD 001"
PHILIPS_MR_IMAGING = "Philips MR Imaging DD 001"
_B_FACTOR = 0x03  # (2001,1003)
_DIRECTION_LABEL = 0x04  # (2001,1004)
_SCALE_SLOPE = 0x0E  # (2005,100E)
_IMAGE_TYPE = 0x11  # (2005,1011)
_GRADIENT = (0xB0, 0xB1, 0xB2)  # (2005,10B0) RL, (2005,10B1) AP, (2005,10B2) FH
PHILIPS_IMAGE_PARTS = {"M": "magnitude", "P": "phase", "R": "real", "I": "imaginary"}


def is_philips(ds: Dataset) -> bool:
    return "PHILIPS" in str(ds.get("Manufacturer", "")).upper()


def philips_scale_slope(ds: Dataset) -> float | None:
    """(2005,100E) Scale Slope of a classic image, or of the first frame item that carries it; None when absent
    or not a positive number."""
    values = private_numbers(ds, 0x2005, PHILIPS_MR_IMAGING, _SCALE_SLOPE, binary="f")
    if values and values[0] > 0:
        return values[0]
    return None


def philips_frame_scale_slope(frame_group: Dataset) -> float | None:
    """(2005,100E) inside one enhanced frame's functional groups (any nested item), or None."""
    for item in _items(frame_group):
        found = philips_scale_slope(item)
        if found is not None:
            return found
    return None


def _items(ds: Dataset, depth: int = 0) -> Iterator[Dataset]:
    yield ds
    if depth >= 2:
        return
    for elem in ds:
        if elem.VR == "SQ" and elem.tag.group in (0x2005, 0x2001):
            for item in elem.value:
                yield from _items(item, depth + 1)


def philips_precise(slope: float, intercept: float, scale_slope: float) -> tuple[float, float]:
    """The (slope, intercept) that turn a stored value into Philips' floating-point value:
    FP = (SV x RS + RI) / (RS x SS) = SV / SS + RI / (RS x SS)."""
    return 1.0 / scale_slope, intercept / (slope * scale_slope)


def philips_b_value(ds: Dataset) -> float | None:
    values = private_numbers(ds, 0x2001, PHILIPS_IMAGING, _B_FACTOR, binary="f")
    return values[0] if values and values[0] >= 0 else None


def philips_gradient_lps(ds: Dataset) -> tuple[float, ...] | None:
    parts = [private_numbers(ds, 0x2005, PHILIPS_MR_IMAGING, o, binary="f") for o in _GRADIENT]
    if any(p is None for p in parts):
        return None
    return tuple(p[0] for p in parts if p is not None)


def philips_isotropic(ds: Dataset) -> bool:
    """(2001,1004) Diffusion Direction ``I``: an isotropic (trace) image derived from the directions."""
    return (private_text(ds, 0x2001, PHILIPS_IMAGING, _DIRECTION_LABEL) or "").upper() == "I"


def philips_image_part(ds: Dataset) -> str | None:
    text = private_text(ds, 0x2005, PHILIPS_MR_IMAGING, _IMAGE_TYPE)
    return None if text is None else PHILIPS_IMAGE_PARTS.get(text.upper()[:1])
