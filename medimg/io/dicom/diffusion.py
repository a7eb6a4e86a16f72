"""Diffusion encoding of an image: b-value and gradient direction, and the FSL ``.bval``/``.bvec`` convention.

Sources, first found wins (the same order dcm2niix uses for these vendors):

1. the standard attributes: (0018,9087) Diffusion b-value and (0018,9089) Diffusion Gradient Orientation, at the
   top level or, in enhanced MR, in the per-frame MR Diffusion Sequence (0018,9117) (PS3.3 C.8.13.5.9);
2. Siemens: the CSA image header fields ``B_value`` and ``DiffusionGradientDirection``, then the private
   (0019,100C) B_value and (0019,100E) DiffusionGradientDirection of the ``SIEMENS MR HEADER`` block;
3. GE: (0043,1039) and (0019,10BB/10BC/10BD) (:mod:`medimg.io.dicom.ge`, gradient turned from GE's frequency/phase/
   slice frame into LPS+);
4. Philips: (2001,1003) and (2005,10B0/10B1/10B2) (:mod:`medimg.io.dicom.philips`);
5. Canon (newer software): the text of Image Comments (0020,4000) (:mod:`medimg.io.dicom.canon`).

Canon/Toshiba write the standard attributes, but only on images with a diffusion gradient: their b=0 volumes
carry none (dcm2niix's Canon notes). The series logic (:mod:`medimg.io.dicom.series`) therefore takes a volume without
an encoding inside a series whose other volumes have one for b=0, and records that assumption.

Gradient directions in DICOM are unit vectors in the patient (LPS+) frame. FSL's ``.bvec`` wants them in the
*voxel* frame of the image as written, with the first component negated when the affine's determinant is
positive (FSL's "radiological" voxel convention); :func:`fsl_bvecs` is that rule, in one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from medimg.io.dicom.canon import canon_comment_diffusion, is_canon
from medimg.io.dicom.ge import ge_b_value, ge_gradient_lps, is_ge
from medimg.io.dicom.philips import is_philips, philips_b_value, philips_gradient_lps, philips_isotropic
from medimg.io.dicom.siemens import SIEMENS_MR_HEADER, csa_scalar, csa_vector
from medimg.io.dicom.vendor_tags import private_value

__all__ = ["DERIVED_DIFFUSION_TYPES", "Diffusion", "derived_diffusion_image", "diffusion_from_dataset", "fsl_bvecs"]

#: Offsets of (0019,100C) B_value and (0019,100E) DiffusionGradientDirection in the SIEMENS MR HEADER block.
_SIEMENS_B_VALUE = 0x0C
_SIEMENS_GRADIENT = 0x0E


@dataclass(frozen=True)
class Diffusion:
    """One image's diffusion encoding: ``b_value`` in s/mm^2, ``gradient`` a unit vector in LPS+ (None for b=0 or
    an isotropic/trace image), ``source`` which attributes it came from."""

    b_value: float
    gradient: tuple[float, float, float] | None
    source: str

    @property
    def key(self) -> tuple[float, tuple[float, ...] | None]:
        """What distinguishes two diffusion volumes (rounded so that re-encoded values compare equal)."""
        g = None if self.gradient is None else tuple(round(v, 4) for v in self.gradient)
        return (round(self.b_value, 2), g)


def _number(value: Any) -> float | None:
    try:
        out = float(value[0] if isinstance(value, (list, tuple)) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if math.isfinite(out) and out >= 0 else None


def _unit(value: Any) -> tuple[float, float, float] | None:
    try:
        v = np.asarray([float(x) for x in value], dtype=float)
    except (TypeError, ValueError):
        return None
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        return None
    norm = float(np.linalg.norm(v))
    if norm < 1e-6:
        return None  # Siemens writes 0\0\0 for b=0
    x, y, z = (v / norm).tolist()
    return (x, y, z)


def _standard(item: Dataset | None) -> Diffusion | None:
    if item is None:
        return None
    b = _number(item.get("DiffusionBValue"))
    if b is None:
        return None
    gradient = None
    direction = item.get("DiffusionGradientDirectionSequence")
    if direction:
        gradient = _unit(direction[0].get("DiffusionGradientOrientation"))
    if gradient is None:
        gradient = _unit(item.get("DiffusionGradientOrientation") or ())
    return Diffusion(b, gradient if b > 0 else None, "standard (0018,9087)/(0018,9089)")


def diffusion_from_dataset(
    ds: Dataset,
    csa: dict[str, Any] | None,
    frame_group: Dataset | None = None,
    iop: tuple[float, ...] | None = None,
) -> Diffusion | None:
    """The diffusion encoding of ``ds`` (or of one enhanced frame's functional group ``frame_group``), or None.

    ``iop`` (Image Orientation (Patient)) turns GE's image-frame gradient into LPS+.
    """
    if frame_group is not None:
        seq = frame_group.get("MRDiffusionSequence")
        found = _standard(seq[0] if seq else None)
        if found is not None:
            return found
    found = _standard(ds) if "DiffusionBValue" in ds else None
    if found is not None and found.gradient is None and found.b_value > 0 and is_canon(ds):
        comment = canon_comment_diffusion(ds, iop)  # Canon: b-value in (0018,9087), direction in the comments
        if comment is not None and comment[1] is not None:
            return Diffusion(found.b_value, comment[1], "standard (0018,9087) + Canon Image Comments (0020,4000)")
    if found is not None:
        return found
    b = _number(csa_scalar(csa, "B_value"))
    if b is not None:
        gradient = csa_vector(csa, "DiffusionGradientDirection", 3)
        return Diffusion(b, _unit(gradient) if gradient and b > 0 else None, "Siemens CSA B_value")
    if "SIEMENS" in str(ds.get("Manufacturer", "")).upper():
        b = _number(private_value(ds, 0x0019, SIEMENS_MR_HEADER, _SIEMENS_B_VALUE))
        if b is not None:
            raw = private_value(ds, 0x0019, SIEMENS_MR_HEADER, _SIEMENS_GRADIENT)
            gradient = _unit(raw) if raw is not None and b > 0 else None
            return Diffusion(b, gradient, "Siemens (0019,100C)/(0019,100E)")
    if is_ge(ds):
        b = ge_b_value(ds)
        if b is not None:
            gradient = _unit(ge_gradient_lps(ds, iop)) if b > 0 else None
            return Diffusion(b, gradient, "GE (0043,1039)/(0019,10BB-10BD)")
    if is_canon(ds):
        comment = canon_comment_diffusion(ds, iop)
        if comment is not None:
            return Diffusion(comment[0], comment[1], "Canon Image Comments (0020,4000)")
    if is_philips(ds):
        b = philips_b_value(ds)
        if b is not None:
            raw = philips_gradient_lps(ds)
            gradient = _unit(raw) if raw is not None and b > 0 else None
            return Diffusion(b, gradient, "Philips (2001,1003)/(2005,10B0-10B2)")
    return None


#: Image Type (0008,0008) values of images computed from a diffusion series rather than acquired: apparent
#: diffusion coefficient, trace-weighted / isotropic images, fractional anisotropy, exponential ADC.
DERIVED_DIFFUSION_TYPES = frozenset({"ADC", "TRACEW", "TRACE", "ISOTROPIC", "FA", "EADC", "EXP"})


def derived_diffusion_image(ds: Dataset, image_type: tuple[str, ...]) -> bool:
    """True for an image a scanner derived from the diffusion directions (Image Type :data:`DERIVED_DIFFUSION_TYPES`,
    or Philips' (2001,1004) ``I`` on a diffusion-weighted image): it goes to its own output, never into the 4D."""
    if DERIVED_DIFFUSION_TYPES.intersection(image_type):
        return True
    if is_philips(ds) and philips_isotropic(ds):
        b = philips_b_value(ds)
        return b is not None and b > 0
    return False


def fsl_bvecs(
    gradients_lps: Sequence[tuple[float, float, float] | None], affine_ras: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """(3, n) FSL ``.bvec`` columns for gradient directions given in LPS+, for an image with ``affine_ras``.

    Each direction is turned into RAS+, expressed in the image's voxel axes (the inverse of the affine's rotation),
    and its first component negated when ``det(affine) > 0`` -- FSL's convention, which dcm2niix follows.
    A missing direction (b=0) is written as 0 0 0.
    """
    a = np.asarray(affine_ras, dtype=float)[:3, :3]
    rotation = a / np.linalg.norm(a, axis=0)
    flip = -1.0 if np.linalg.det(a) > 0 else 1.0
    out = np.zeros((3, len(gradients_lps)))
    for t, g in enumerate(gradients_lps):
        if g is None:
            continue
        ras = np.array([-g[0], -g[1], g[2]])
        voxel = np.linalg.solve(rotation, ras)
        voxel[0] *= flip
        out[:, t] = voxel
    return out
