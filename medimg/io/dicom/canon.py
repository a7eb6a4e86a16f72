"""Canon's (formerly Toshiba's) diffusion rule for software that no longer fills the standard attributes.

Older Toshiba software writes (0018,9087) Diffusion b-value and (0018,9089) Diffusion Gradient Orientation, but
only on images with a diffusion gradient (their b=0 volumes carry none: see :mod:`medimg.io.dicom.volume_split`).
Canon software since the acquisition writes the encoding as text in (0020,4000) Image Comments instead, e.g.
``b=1500(0.445,0.000,0.895)``, with the direction in the *image* frame (row, column, slice axes), not the patient
frame (dcm2niix's Canon notes, ``Canon/README.md``). :func:`canon_comment_diffusion` reads that text.
"""

from __future__ import annotations

import re

import numpy as np
from pydicom.dataset import Dataset

__all__ = ["canon_comment_diffusion", "is_canon"]

_COMMENT = re.compile(
    r"b\s*=\s*(?P<b>\d+(?:\.\d+)?)\s*(?:\(\s*(?P<x>-?\d+(?:\.\d+)?)\s*,\s*(?P<y>-?\d+(?:\.\d+)?)\s*,"
    r"\s*(?P<z>-?\d+(?:\.\d+)?)\s*\))?"
)


def is_canon(ds: Dataset) -> bool:
    text = str(ds.get("Manufacturer", "")).upper()
    return "CANON" in text or "TOSHIBA" in text


def canon_comment_diffusion(
    ds: Dataset, iop: tuple[float, ...] | None
) -> tuple[float, tuple[float, float, float] | None] | None:
    """(b-value, gradient in LPS+ or None) from Image Comments (0020,4000), or None when it holds no encoding.

    The image-frame direction is turned into LPS+ with Image Orientation (Patient) as dcm2niix reads Canon's text
    (checked against it in tests/test_io_vendors.py): its first value runs against the column direction, its
    second along the row direction, its third along row x column: LPS = -x * column + y * row + z * normal.
    """
    found = _COMMENT.search(str(ds.get("ImageComments", "")))
    if found is None:
        return None
    b = float(found["b"])
    if b <= 0 or found["x"] is None or iop is None:
        return b, None
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    v = -float(found["x"]) * col + float(found["y"]) * row + float(found["z"]) * np.cross(row, col)
    norm = float(np.linalg.norm(v))
    if norm < 1e-6:
        return b, None
    if abs(norm - 1) > 0.01:  # three printed decimals leave a unit vector within 1 %: kept as written, as dcm2niix
        v = v / norm
    x, y, z = v.tolist()
    return b, (x, y, z)
