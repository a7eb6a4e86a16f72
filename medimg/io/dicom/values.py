"""Coercing DICOM attribute values: numbers from DS/IS/FD values or text, geometry values checked for being
possible (a present but impossible value is listed, never silently dropped), integers and rescale values refused
by name when damaged, sequence items and multi-values read uniformly. The header model
(:mod:`medimg.io.dicom.header`) reads every attribute through these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from medimg.errors import DicomReadError
from medimg.io.dicom.raw import get_value

__all__ = [
    "as_floats",
    "as_int",
    "as_str",
    "checked",
    "first_item",
    "floats_list",
    "jsonable",
    "multi_value",
    "orientation_of",
    "positive_number",
    "raw_floats",
    "rescale_value",
    "value_unit",
    "window_presets",
]


def as_floats(values: Any) -> list[float] | None:
    """The one coercion of DICOM numbers (DS/IS/FD values, strings) to floats: each item of ``values``, or None
    when one is not a number (or ``values`` is not iterable). Non-finite values are kept."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError, OverflowError):
        return None


def raw_floats(value: Any) -> list[float] | None:
    """Every value of a numeric attribute as floats (non-finite kept; a single value gives a one-item list), or
    None when absent or unreadable."""
    if value is None:
        return None
    return as_floats(value if isinstance(value, (list, tuple, Sequence)) else [value])


def checked(value: Any, n: int, what: str, issues: list[str], *, positive: bool = False) -> tuple[float, ...] | None:
    """``n`` finite floats (all > 0 if ``positive``), or None; a present but impossible value is added to ``issues``.

    ``what`` names the attribute with its tag, e.g. ``"Pixel Spacing (0028,0030)"``.
    """
    if value is None:
        return None
    raw = raw_floats(value)
    ok = raw is not None and len(raw) == n and all(math.isfinite(v) for v in raw)
    if ok and positive:
        ok = all(v > 0 for v in raw)  # type: ignore[union-attr]
    if not ok:
        issues.append(f"{what} = {raw if raw is not None else value!r}")
        return None
    return tuple(raw)  # type: ignore[arg-type]


def orientation_of(value: Any, issues: list[str], what: str = "Image Orientation (Patient) (0020,0037)") -> Any:
    """Six direction cosines whose two vectors have unit length and are perpendicular, else None (+ an issue)."""
    iop = checked(value, 6, what, issues)
    if iop is None:
        return None
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
        issues.append(f"{what} = {list(iop)} (not two perpendicular unit vectors)")
        return None
    return iop


def first_item(seq_holder: Dataset | None, seq_kw: str) -> Dataset | None:
    if seq_holder is None:
        return None
    seq = seq_holder.get(seq_kw)
    if seq:
        item: Dataset = seq[0]
        return item
    return None


def multi_value(value: Any) -> list[Any]:
    """A possibly single-valued attribute as a list (pydicom returns a bare str for one value)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    return list(value)


def as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def as_int(value: Any, what: str, path: str, default: int = 0) -> int:
    """An integer attribute, or DicomReadError naming it when the value is not an integer."""
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DicomReadError(f"{what} is not an integer ({value!r})", path) from exc


def rescale_value(value: Any, what: str, path: str, default: float) -> float:
    """A finite Rescale Slope / Intercept (or the default when absent); refuse NaN or infinity."""
    if value in (None, ""):
        return default
    try:
        out = float(value[0] if isinstance(value, (list, tuple)) else value)
    except (TypeError, ValueError, OverflowError, IndexError) as exc:
        raise DicomReadError(f"{what} is not a number ({value!r})", path) from exc
    if not math.isfinite(out):
        raise DicomReadError(f"{what} is {out}: the modality LUT is undefined; the file is damaged", path)
    return out


def positive_number(value: Any) -> float | None:
    raw = raw_floats(value)
    if not raw or not math.isfinite(raw[0]) or raw[0] <= 0:
        return None
    return raw[0]


def floats_list(value: Any) -> list[float] | None:
    """The values of a multi-valued numeric attribute as finite floats, or None when absent, unreadable or not
    finite (a single, non-iterable value is unreadable here)."""
    out = None if value is None else as_floats(value)
    return out if out is not None and all(math.isfinite(v) for v in out) else None


def jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [jsonable(v) for v in value]
    if isinstance(value, (int, float, str)):
        # DS/IS subclass float/int; keep plain Python types for json
        if isinstance(value, float):
            return float(value)
        if isinstance(value, int):
            return int(value)
        return str(value)
    return str(value)


def value_unit(ds: Dataset, modality: str) -> str:
    """What the modality LUT output means: Rescale Type (0028,1054) when given (top level or in the shared
    Pixel Value Transformation functional group), else HU for CT (PS3.3 C.11.1.1.2) and stored values otherwise."""
    rescale_type = get_value(ds, "RescaleType")
    if rescale_type is None:
        shared = first_item(ds, "SharedFunctionalGroupsSequence")
        pvt = first_item(shared, "PixelValueTransformationSequence")
        rescale_type = pvt.get("RescaleType") if pvt is not None else None
    if rescale_type:
        text = str(rescale_type).strip().upper()
        return "HU" if text == "HU" else ("unspecified (Rescale Type US)" if text == "US" else text)
    return "HU" if modality == "CT" else "stored value"


def window_presets(ds: Dataset) -> list[tuple[float, float]]:
    """Window Center (0028,1050) / Window Width (0028,1051) pairs, possibly multi-valued."""
    centers, widths = get_value(ds, "WindowCenter"), get_value(ds, "WindowWidth")
    if centers is None or widths is None:
        return []
    c = floats_list(
        centers if isinstance(centers, (list, tuple, Sequence)) and not isinstance(centers, str) else [centers]
    )
    w = floats_list(widths if isinstance(widths, (list, tuple, Sequence)) and not isinstance(widths, str) else [widths])
    if not c or not w:
        return []
    return [(ci, wi) for ci, wi in zip(c, w, strict=False)]
