"""Patient coordinate conventions, in one place only.

DICOM describes positions in the patient-based **LPS+** system (PS3.3 C.7.6.2.1.1): +x towards the patient's
Left, +y towards Posterior, +z towards Superior (head). NIfTI, nibabel, MONAI and medimg's :class:`Volume`
use **RAS+**: +x Right, +y Anterior, +z Superior. The two differ by a sign flip of the first two axes, and that
flip is written here once; every other module calls these functions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["LPS_TO_RAS", "affine_axcodes", "lps_to_ras_affine", "ras_to_lps_affine"]

#: Homogeneous 4x4 that maps LPS+ millimetres to RAS+ millimetres (it is its own inverse).
LPS_TO_RAS: npt.NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])
LPS_TO_RAS.setflags(write=False)


def lps_to_ras_affine(affine_lps: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Turn a voxel -> LPS+ mm affine (DICOM's convention) into a voxel -> RAS+ mm affine (nibabel's)."""
    return LPS_TO_RAS @ np.asarray(affine_lps, dtype=np.float64)


def ras_to_lps_affine(affine_ras: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Inverse of :func:`lps_to_ras_affine`."""
    return LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)


def affine_axcodes(affine_ras: npt.ArrayLike) -> str:
    """The direction each array axis points to, as nibabel's axis codes, e.g. ``"LPS"`` or ``"RAS"``.

    An axis code names the patient direction in which the index along that axis *increases*: a DICOM axial
    series stored as medimg reads it is usually ``"LPS"`` (columns run to the patient's left, rows to the back,
    slices to the head).
    """
    import nibabel as nib

    return "".join(str(c) for c in nib.aff2axcodes(np.asarray(affine_ras, dtype=np.float64)))
