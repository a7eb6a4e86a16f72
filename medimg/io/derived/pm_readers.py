"""What other readers of a Parametric Map need beyond what highdicom 0.28 writes: found by reading medimg's map
with dcmqi's ``paramap2itkimage`` (DCMTK-based; what 3D Slicer's Quantitative Reporting and the Imaging Data
Commons use).

* **Frame Anatomy** (0020,9071), a functional group the Parametric Map IOD requires (PS3.3 A.75, Table A.75-2:
  M), with (0008,2218) Anatomic Region Sequence and (0020,9072) Frame Laterality. highdicom leaves it out;
  dcmqi 1.5.7 dereferences it without a check and dies (exit status 245, no message). With Frame Laterality
  present, General Series (0020,0060) Laterality must be absent (its Type 2C condition), so it moves there.
* **Content Creator's Name** (0070,0084), Type 2 in the Content Identification Macro: present, empty (no person
  made the map).
* **Frame order along the slice normal.** highdicom sorts the frames by its own volume convention, which for an
  axial series puts the highest slice first; dcmqi places frame f at slice f of a volume whose origin is the
  lowest position (it does not read each frame's position), so such a map comes back upside down. The frames are
  put in increasing order along (row direction x column direction), the order dcmqi itself writes; each frame's
  position, derivation and dimension index travel with it, so readers that use positions are unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["complete_for_readers"]

_FRAME_LATERALITY = ("R", "L", "B")  # else U (unpaired or unknown), PS3.3 C.7.6.16.2.19
#: (0008,2218) when the source names no region: SCT 85756007 "Tissue", what dcmqi writes by default.
_TISSUE = ("85756007", "SCT", "Tissue")
_PIXEL_TYPES = {"FloatPixelData": np.float32, "DoubleFloatPixelData": np.float64}


def complete_for_readers(pm: Any, source: Any) -> None:
    """Add Frame Anatomy and Content Creator's Name to ``pm`` (a highdicom ParametricMap made from ``source``,
    the first source instance) and order its frames along the slice normal. Changes ``pm`` in place."""
    from pydicom.dataset import Dataset

    region = source.get("AnatomicRegionSequence")
    if region:
        regions = [region[0]]
    else:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _TISSUE
        regions = [code]
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = regions
    laterality = str(source.get("Laterality") or source.get("ImageLaterality") or "")
    anatomy.FrameLaterality = laterality if laterality in _FRAME_LATERALITY else "U"
    pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [anatomy]
    if "Laterality" in pm:
        del pm.Laterality
    pm.ContentCreatorName = None
    _frames_along_normal(pm)


def _frames_along_normal(pm: Any) -> None:
    """Reorder frames, per-frame functional groups and (uncompressed) pixel data by position along the normal."""
    frames = pm.PerFrameFunctionalGroupsSequence
    iop = np.asarray(pm.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in frames], dtype=float)
    order = np.argsort(positions @ normal, kind="stable")
    if np.array_equal(order, np.arange(len(order))):
        return
    keyword = next((k for k in (*_PIXEL_TYPES, "PixelData") if k in pm), None)
    if keyword is None or pm.file_meta.TransferSyntaxUID.is_compressed:
        return  # nothing to move, or frames we would have to decode first: leave highdicom's order
    dtype = _PIXEL_TYPES.get(keyword, np.uint16 if int(pm.BitsAllocated) == 16 else np.uint8)
    data = np.frombuffer(pm[keyword].value, dtype=dtype)
    n = len(order)
    pm[keyword].value = data[: data.size // n * n].reshape(n, -1)[order].tobytes()
    pm.PerFrameFunctionalGroupsSequence = [frames[i] for i in order]
