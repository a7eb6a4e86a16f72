"""GE's private rules: diffusion encoding, slices per volume and the complex image component.

Sources: GE's DICOM conformance statements for the MR750/Signa families, the NA-MIC wiki page "DICOM for DWI
and DTI" (private vendor: GE) and dcm2niix's GE notes (``GE/README.md``), which these rules follow:

- (0043,1039) ``GEMS_PARM_01`` "Slop_int_6..9": the first value is the b-value in s/mm^2; some software versions
  add 10^9 to it, which is removed here (:func:`ge_b_value`).
- (0019,10BB/10BC/10BD) ``GEMS_ACQU_01``: the gradient direction in GE's "MR physics" logical frame
  (frequency, phase, slice), *not* the patient frame; In-plane Phase Encoding Direction (0018,1312) says whether
  the phase axis is the image's column (``COL``) or row (``ROW``) axis (:func:`ge_gradient_lps`).
- (0021,104F) ``GEMS_RELA_01`` Locations in Acquisition: slices per volume of a classic multi-volume series,
  whose volumes otherwise carry nothing that tells them apart (volumes then follow Instance Number order).
- (0043,102F) ``GEMS_PARM_01`` Private Image Type: 0 magnitude, 1 phase, 2 real, 3 imaginary.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from medimg.io.dicom.vendor_tags import private_numbers

__all__ = ["GE_IMAGE_PARTS", "ge_b_value", "ge_gradient_lps", "ge_image_part", "ge_slices_per_volume", "is_ge"]

GEMS_PARM = "GEMS_PARM_01"
GEMS_ACQU = "GEMS_ACQU_01"
GEMS_RELA = "GEMS_RELA_01"
_B_VALUE = 0x39  # (0043,1039)
_GRADIENT = (0xBB, 0xBC, 0xBD)  # (0019,10BB) frequency, (0019,10BC) phase, (0019,10BD) slice
_LOCATIONS = 0x4F  # (0021,104F)
_IMAGE_TYPE = 0x2F  # (0043,102F)
#: (0043,102F) value -> the part name medimg uses (see :data:`medimg.io.dicom.header.IMAGE_PARTS`)
GE_IMAGE_PARTS = {0: "magnitude", 1: "phase", 2: "real", 3: "imaginary"}
_B_OFFSET = 1_000_000_000


def is_ge(ds: Dataset) -> bool:
    return "GE MEDICAL" in str(ds.get("Manufacturer", "")).upper()


def ge_b_value(ds: Dataset) -> float | None:
    """The b-value (s/mm^2) from (0043,1039), with the 10^9 offset of some software versions removed."""
    values = private_numbers(ds, 0x0043, GEMS_PARM, _B_VALUE)
    if not values or values[0] < 0:
        return None
    return float(values[0] % _B_OFFSET) if values[0] >= _B_OFFSET else float(values[0])


def ge_gradient_lps(ds: Dataset, iop: tuple[float, ...] | None) -> tuple[float, float, float] | None:
    """The diffusion gradient in LPS+ (not normalised: :mod:`medimg.io.dicom.diffusion` makes every vendor's
    direction a unit vector, or None for a zero one), turned from GE's (frequency, phase, slice) frame.

    With phase encoding along the columns (0018,1312 = ``COL``) the frequency axis is the row direction
    (the first three values of Image Orientation (Patient)) and the phase axis the column direction; with ``ROW``
    they swap. GE's in-plane axes point against the DICOM row and column directions and its slice axis along
    row x column: LPS = -f x row - p x column + s x normal, the reading under which dcm2niix's ``geCorrectBvecs``
    output (checked against it in the tests) and this agree in world space. None without orientation or when absent.
    """
    parts = [private_numbers(ds, 0x0019, GEMS_ACQU, o) for o in _GRADIENT]
    if iop is None or any(p is None for p in parts):
        return None
    freq, phase, slc = (p[0] for p in parts if p is not None)
    row, col = np.asarray(iop[:3], dtype=float), np.asarray(iop[3:], dtype=float)
    normal = np.cross(row, col)
    phase_along_rows = str(ds.get("InPlanePhaseEncodingDirection", "COL")).upper() == "ROW"
    freq_axis, phase_axis = (col, row) if phase_along_rows else (row, col)
    x, y, z = (-freq * freq_axis - phase * phase_axis + slc * normal).tolist()
    return (x, y, z)


def ge_slices_per_volume(ds: Dataset) -> int | None:
    """(0021,104F) Locations in Acquisition: how many slices one volume of the series has."""
    values = private_numbers(ds, 0x0021, GEMS_RELA, _LOCATIONS, binary="h")
    if not values or values[0] < 1 or values[0] != int(values[0]):
        return None
    return int(values[0])


def ge_image_part(ds: Dataset) -> str | None:
    """(0043,102F) Private Image Type as magnitude / phase / real / imaginary, or None when absent."""
    values = private_numbers(ds, 0x0043, GEMS_PARM, _IMAGE_TYPE, binary="h")
    if not values:
        return None
    return GE_IMAGE_PARTS.get(int(values[0]))
