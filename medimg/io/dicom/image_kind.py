"""What kind of image a file holds, by the vendor's rules behind one dispatcher: the complex image component
(magnitude, phase, real, imaginary, a B0 field map) and how many slices one volume of a classic multi-volume
series has. Each vendor's private tags live in its own file (:mod:`medimg.io.dicom.ge`, :mod:`medimg.io.dicom.philips`);
this module asks the standard attributes first, then the vendor's.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from medimg.io.dicom.ge import ge_image_part, ge_slices_per_volume, is_ge
from medimg.io.dicom.philips import is_philips, philips_image_part
from medimg.io.dicom.raw import get_value

__all__ = ["IMAGE_PARTS", "frame_part", "image_part", "slices_per_volume"]


def slices_per_volume(ds: Dataset) -> int | None:
    """How many slices one volume of a classic multi-volume series has, where the files say so: GE's (0021,104F)
    Locations in Acquisition, else Images in Acquisition (0020,1002). Only used when nothing else tells the
    volumes apart (then they follow Instance Number order, as dcm2niix does)."""
    if is_ge(ds):
        found = ge_slices_per_volume(ds)
        if found is not None:
            return found
    value = get_value(ds, "ImagesInAcquisition")
    try:
        n = int(value) if value is not None else 0
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


#: Complex image components as Image Type value 3 (0008,0008) and Complex Image Component (0008,9208) spell
#: them (PS3.3 C.8.13.1.1.1, C.8.16.1), and the field-map words; magnitude is the default and has no part.
IMAGE_PARTS = {
    "P": "phase",
    "PHASE": "phase",
    "R": "real",
    "REAL": "real",
    "I": "imaginary",
    "IMAGINARY": "imaginary",
    "B0": "fieldmaphz",
    "FIELD_MAP": "fieldmaphz",
}


def image_part(ds: Dataset, image_type: tuple[str, ...]) -> str | None:
    """The complex image component of an image: None for magnitude, else ``phase``/``real``/``imaginary``, or
    ``fieldmaphz`` for a scanner-computed B0 map.

    Sources in order: Complex Image Component (0008,9208); GE's (0043,102F); Philips' (2005,1011); Image Type
    value 3, whole (``P``) or as Philips' prefix (``P_FFE``); a ``B0``/``FIELD_MAP`` value anywhere in Image Type.
    """
    if any(v in {"B0", "FIELD_MAP"} for v in image_type):
        return "fieldmaphz"
    found: str | None = None
    component = str(get_value(ds, "ComplexImageComponent") or "").upper()
    if component and component != "MIXED":
        found = "magnitude" if component == "MAGNITUDE" else IMAGE_PARTS.get(component)
    if found is None and is_ge(ds):
        found = ge_image_part(ds)
    if found is None and is_philips(ds):
        found = philips_image_part(ds)
    if found is None and len(image_type) > 2:
        value = image_type[2]
        found = IMAGE_PARTS.get(value) or IMAGE_PARTS.get(value.split("_")[0] if "_" in value else "")
    return None if found in (None, "magnitude") else found


def frame_part(ds: Dataset, frame_type: Dataset | None, image_type: tuple[str, ...]) -> str | None:
    """The complex image component of one enhanced frame: its MR Image Frame Type (0018,9226) item's Frame Type
    and Complex Image Component (0008,9208), else the file's (:func:`image_part`)."""
    if frame_type is not None:
        value = frame_type.get("FrameType")
        values = [value] if isinstance(value, str) else list(value or [])
        types = tuple(str(v).upper() for v in values)
        component = str(frame_type.get("ComplexImageComponent") or "").upper()
        if "B0" in types or "FIELD_MAP" in types:
            return "fieldmaphz"
        if component and component not in {"MIXED", "MAGNITUDE"}:
            return IMAGE_PARTS.get(component)
        if component == "MAGNITUDE":
            return None
    return image_part(ds, image_type)
