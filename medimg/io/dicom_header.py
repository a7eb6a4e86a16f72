"""The header model: one open per DICOM file, no pixel data, everything the series logic needs.

A file becomes a :class:`FileHeader` (file-level facts) and one :class:`Frame` per 2D image it holds: one for a
classic single-frame image, ``NumberOfFrames`` for an enhanced multi-frame object, whose per-frame geometry
and rescale come from the Per-frame / Shared Functional Groups Sequences (5200,9230) / (5200,9229)
(PS3.3 C.7.6.16), and one per tile of a Siemens mosaic (:mod:`medimg.io.siemens`).

The header read (:func:`medimg.io.dicom_raw.open_dataset`) stops before Pixel Data (7FE0,0010) and records where
that element starts, so the pixel pass can read native (uncompressed) pixels straight from that offset without
parsing the header a second time.

Geometry values that are *present but impossible* (a zero, negative or non-finite Pixel Spacing (0028,0030), a
non-finite Image Position (Patient) (0020,0032), degenerate direction cosines) are not silently dropped: they are
listed in :attr:`FileHeader.invalid_geometry`, and the series QA refuses them on modalities that have patient
geometry.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, MediaStorageDirectoryStorage

from medimg.errors import DicomReadError, NotDicomError
from medimg.io.dicom_raw import get_value, open_dataset
from medimg.io.diffusion import Diffusion, derived_diffusion_image, diffusion_from_dataset
from medimg.io.image_kind import frame_part, image_part, slices_per_volume
from medimg.io.philips import is_philips, philips_frame_scale_slope, philips_scale_slope
from medimg.io.siemens import (
    MosaicLayout,
    csa_image_header,
    mosaic_layout,
    mosaic_slice_normal,
    mosaic_tile_positions,
)

__all__ = ["DICOMDIR_SOP_CLASS", "PATIENT_GEOMETRY_MODALITIES", "FileHeader", "Frame", "read_header"]

#: Media Storage Directory Storage: a DICOMDIR index, not an image.
DICOMDIR_SOP_CLASS = str(MediaStorageDirectoryStorage)

#: Modalities whose images always have a patient geometry; an impossible geometry value there is refused.
PATIENT_GEOMETRY_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})

_LOCALIZER_WORDS = re.compile(r"locali[sz]er|scout|survey|topogram|scanogram|surview|3.?plane", re.IGNORECASE)

# The attributes medimg keeps from a header: technical and descriptive only, never patient identifiers.
SIDECAR_KEYWORDS = (
    "Modality",
    "InstitutionName",  # equipment, not patient: medimg.io.sites proposes a site from it
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "MagneticFieldStrength",
    "BodyPartExamined",
    "SeriesDescription",
    "ProtocolName",
    "SeriesNumber",
    "SliceThickness",
    "SpacingBetweenSlices",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "ScanningSequence",
    "SequenceName",
    "MRAcquisitionType",
    "ConvolutionKernel",
    "KVP",
    "ContrastBolusAgent",
    "PhotometricInterpretation",
    "ImageType",
)


@dataclass(frozen=True)
class Frame:
    """One 2D image: a single-frame file, one frame of a multi-frame file, or one tile of a Siemens mosaic.

    ``iop`` is Image Orientation (Patient) (0020,0037): the row direction cosines then the column direction
    cosines, LPS+. ``ipp`` is Image Position (Patient) (0020,0032): the LPS+ mm centre of the first transmitted
    pixel (for a mosaic tile: of the tile's first pixel, corrected). ``pixel_spacing`` is Pixel Spacing
    (0028,0030): (row spacing, column spacing) in mm, i.e. the distance between rows first. ``slope``/``intercept``
    are the modality LUT's Rescale Slope (0028,1053) and Rescale Intercept (0028,1052). ``index`` is the 0-based
    frame number in a multi-frame file or the tile number in a mosaic (None for a single-frame file).

    What tells the volumes of a 4D series apart: ``acquisition`` (0020,0012) Acquisition Number, ``temporal``
    (0020,0100) Temporal Position Identifier (enhanced: Temporal Position Index), ``trigger`` (0018,1060) Trigger
    Time in ms, ``acquisition_time`` (0008,0032) Acquisition Time, ``diffusion`` the b-value and gradient;
    ``echo`` (0018,0086) Echo Numbers splits a series into one volume per echo; ``instance`` (0020,0013)
    Instance Number orders volumes in time. ``part`` is the complex image component (see :func:`image_part`),
    which splits a series like an echo does; ``philips_scale`` is Philips' Scale Slope (see
    :mod:`medimg.io.philips`); ``derived_diffusion`` marks an isotropic/trace/ADC image that a scanner put inside a
    diffusion series (it is written apart, never into the 4D).
    """

    header: FileHeader
    index: int | None
    rows: int
    columns: int
    iop: tuple[float, ...] | None
    ipp: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    acquisition: str | None = None
    echo: str | None = None
    temporal: str | None = None
    stack: str | None = None
    trigger: str | None = None
    acquisition_time: str | None = None
    instance: int | None = None
    diffusion: Diffusion | None = None
    part: str | None = None  # None: magnitude (or not a complex image); else an IMAGE_PARTS value
    philips_scale: float | None = None  # Philips (2005,100E) Scale Slope, for the floating-point value
    derived_diffusion: bool = False  # an isotropic / trace / ADC image derived inside a diffusion series

    @property
    def path(self) -> str:
        return self.header.path


@dataclass
class FileHeader:
    """File-level facts of one DICOM file (no pixel data)."""

    path: str
    sop_class: str
    transfer_syntax: str
    series_uid: str
    modality: str
    description: str
    series_number: int | None
    image_type: tuple[str, ...]
    localizer: bool
    number_of_frames: int
    has_pixels: bool
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric: str
    pixel_data_offset: int | None  # byte offset of the (7FE0,0010) element in the file, if reached
    has_modality_lut_sequence: bool
    value_unit: str
    window_presets: list[tuple[float, float]]
    sidecar: dict[str, Any]
    frames: list[Frame] = field(default_factory=list)
    mosaic: MosaicLayout | None = None  # a Siemens mosaic: frames are its tiles
    invalid_geometry: list[str] = field(default_factory=list)  # present but impossible values, with their tags
    rows: int = 0  # (0028,0010) of the stored image (for a mosaic: of the whole tiled image)
    columns: int = 0  # (0028,0011)
    study_uid: str = ""  # (0020,000D), used only to group files whose Series Instance UID is missing
    frame_of_reference: str = ""  # (0020,0052), idem
    slices_per_volume: int | None = None  # Images in Acquisition (0020,1002) or GE (0021,104F)

    @property
    def is_dicomdir(self) -> bool:
        return self.sop_class == DICOMDIR_SOP_CLASS

    @property
    def transfer_syntax_name(self) -> str:
        return UID(self.transfer_syntax).name if self.transfer_syntax else "unknown"


def _as_floats(values: Any) -> list[float] | None:
    """The one coercion of DICOM numbers (DS/IS/FD values, strings) to floats: each item of ``values``, or None
    when one is not a number (or ``values`` is not iterable). Non-finite values are kept."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError, OverflowError):
        return None


def _raw_floats(value: Any) -> list[float] | None:
    """Every value of a numeric attribute as floats (non-finite kept; a single value gives a one-item list), or
    None when absent or unreadable."""
    if value is None:
        return None
    return _as_floats(value if isinstance(value, (list, tuple, Sequence)) else [value])


def _checked(value: Any, n: int, what: str, issues: list[str], *, positive: bool = False) -> tuple[float, ...] | None:
    """``n`` finite floats (all > 0 if ``positive``), or None; a present but impossible value is added to ``issues``.

    ``what`` names the attribute with its tag, e.g. ``"Pixel Spacing (0028,0030)"``.
    """
    if value is None:
        return None
    raw = _raw_floats(value)
    ok = raw is not None and len(raw) == n and all(math.isfinite(v) for v in raw)
    if ok and positive:
        ok = all(v > 0 for v in raw)  # type: ignore[union-attr]
    if not ok:
        issues.append(f"{what} = {raw if raw is not None else value!r}")
        return None
    return tuple(raw)  # type: ignore[arg-type]


def _orientation(value: Any, issues: list[str], what: str = "Image Orientation (Patient) (0020,0037)") -> Any:
    """Six direction cosines whose two vectors have unit length and are perpendicular, else None (+ an issue)."""
    iop = _checked(value, 6, what, issues)
    if iop is None:
        return None
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
        issues.append(f"{what} = {list(iop)} (not two perpendicular unit vectors)")
        return None
    return iop


def _first(seq_holder: Dataset | None, seq_kw: str) -> Dataset | None:
    if seq_holder is None:
        return None
    seq = seq_holder.get(seq_kw)
    if seq:
        item: Dataset = seq[0]
        return item
    return None


def _multi(value: Any) -> list[Any]:
    """A possibly single-valued attribute as a list (pydicom returns a bare str for one value)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    return list(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any, what: str, path: str, default: int = 0) -> int:
    """An integer attribute, or DicomReadError naming it when the value is not an integer."""
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DicomReadError(f"{what} is not an integer ({value!r})", path) from exc


def _rescale(value: Any, what: str, path: str, default: float) -> float:
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


def read_header(path: str | os.PathLike[str]) -> FileHeader:
    """Read one file's header; raise :class:`NotDicomError` or :class:`DicomReadError` when it is not usable.

    A zero-byte or non-DICOM file raises :class:`NotDicomError`; a damaged DICOM file raises
    :class:`DicomReadError`. The file is opened exactly once.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise DicomReadError(f"cannot open ({exc.strerror})", path) from exc
    if size == 0:
        raise NotDicomError("empty file (0 bytes)", path)
    ds, offset = open_dataset(path)
    try:
        ts = _transfer_syntax(ds)
        sop_class = str(get_value(ds, "SOPClassUID") or _file_meta(ds).get("MediaStorageSOPClassUID", ""))
        if offset is None and "Rows" not in ds and "Image Storage" in UID(sop_class).name:
            raise DicomReadError(
                f"an image object ({UID(sop_class).name}) that ends before its Pixel Data (7FE0,0010): truncated", path
            )
        header = _file_header(path, ds, ts, sop_class, offset)
        if header.has_pixels:
            header.frames = _frames(header, ds)
        return header
    except DicomReadError:
        raise
    except Exception as exc:  # a damaged element pydicom cannot convert (unknown VR, bad decimal string, ...)
        raise DicomReadError(f"malformed DICOM attribute ({type(exc).__name__}: {exc})", path) from exc


def _file_meta(ds: Dataset) -> Dataset:
    meta = getattr(ds, "file_meta", None)
    return meta if meta is not None else Dataset()


def _transfer_syntax(ds: Dataset) -> str:
    """Transfer Syntax UID (0002,0010), or the one the data set was read with when the file meta has none."""
    ts = str(_file_meta(ds).get("TransferSyntaxUID", ""))
    if ts:
        return ts
    return str(ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian)


def _file_header(path: str, ds: Dataset, ts: str, sop_class: str, offset: int | None) -> FileHeader:
    """The file-level facts (no frames yet)."""
    image_type = tuple(str(v).upper() for v in _multi(get_value(ds, "ImageType")))
    description = str(get_value(ds, "SeriesDescription") or "")
    modality = str(get_value(ds, "Modality") or "OT")
    rows = _int(get_value(ds, "Rows"), "Rows (0028,0010)", path)
    columns = _int(get_value(ds, "Columns"), "Columns (0028,0011)", path)
    series_number = get_value(ds, "SeriesNumber")
    bits_allocated = _int(get_value(ds, "BitsAllocated"), "Bits Allocated (0028,0100)", path)
    bits_stored = _int(get_value(ds, "BitsStored"), "Bits Stored (0028,0101)", path, bits_allocated)
    if rows > 0 and columns > 0 and not 0 < bits_stored <= bits_allocated <= 64:
        raise DicomReadError(
            f"Bits Stored (0028,0101) = {bits_stored} with Bits Allocated (0028,0100) = {bits_allocated}: "
            "impossible pixel format, the header is damaged",
            path,
        )
    return FileHeader(
        path=path,
        sop_class=sop_class,
        transfer_syntax=ts,
        series_uid=str(get_value(ds, "SeriesInstanceUID") or ""),
        modality=modality,
        description=description,
        series_number=None if series_number in (None, "") else _int(series_number, "Series Number (0020,0011)", path),
        image_type=image_type,
        localizer="LOCALIZER" in image_type or bool(_LOCALIZER_WORDS.search(description)),
        number_of_frames=max(1, _int(get_value(ds, "NumberOfFrames"), "Number of Frames (0028,0008)", path, 1)),
        has_pixels=rows > 0 and columns > 0,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=_int(get_value(ds, "PixelRepresentation"), "Pixel Representation (0028,0103)", path),
        samples_per_pixel=_int(get_value(ds, "SamplesPerPixel"), "Samples per Pixel (0028,0002)", path, 1),
        photometric=str(get_value(ds, "PhotometricInterpretation") or ""),
        pixel_data_offset=offset,
        has_modality_lut_sequence=get_value(ds, "ModalityLUTSequence") is not None,
        value_unit=_value_unit(ds, modality),
        window_presets=_window_presets(ds),
        sidecar=_sidecar(ds),
        rows=rows,
        columns=columns,
        study_uid=str(get_value(ds, "StudyInstanceUID") or ""),
        frame_of_reference=str(get_value(ds, "FrameOfReferenceUID") or ""),
        slices_per_volume=slices_per_volume(ds),
    )


def _sidecar(ds: Dataset) -> dict[str, Any]:
    sidecar: dict[str, Any] = {}
    for kw in SIDECAR_KEYWORDS:
        value = get_value(ds, kw)
        if value is not None:
            sidecar[kw] = _jsonable(value)
    return sidecar


def _frames(header: FileHeader, ds: Dataset) -> list[Frame]:
    """One :class:`Frame` per 2D image in the file: enhanced multi-frame, mosaic tiles, grid-offset frames or one."""
    per_frame = get_value(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) > 0:
        shared = _first(ds, "SharedFunctionalGroupsSequence")
        return [_enhanced_frame(header, i, per_frame[i], shared, ds) for i in range(len(per_frame))]
    common, csa = _classic_fields(header, ds)
    iop, ipp = (
        common["iop"],
        _checked(
            get_value(ds, "ImagePositionPatient"), 3, "Image Position (Patient) (0020,0032)", header.invalid_geometry
        ),
    )
    if "MOSAIC" in header.image_type and header.number_of_frames == 1:
        return _mosaic_frames(header, ds, common, ipp, csa)
    offsets = _floats_list(get_value(ds, "GridFrameOffsetVector"))
    n = header.number_of_frames
    if n > 1 and iop is not None and ipp is not None and offsets is not None:
        # RT Dose and friends: frames are parallel planes at IPP + offset * normal (PS3.3 C.8.8.3.2).
        normal = np.cross(iop[:3], iop[3:])
        return [
            Frame(header=header, index=i, ipp=tuple(np.add(ipp, offsets[i] * normal).tolist()), **common)
            for i in range(min(n, len(offsets)))
        ]
    if n > 1:
        return [Frame(header=header, index=i, ipp=None, **common) for i in range(n)]
    return [Frame(header=header, index=None, ipp=ipp, **common)]  # type: ignore[arg-type]


def _classic_fields(header: FileHeader, ds: Dataset) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The Frame fields a classic (not enhanced) image shares between all its frames, and its Siemens CSA image
    header (parsed only for mosaics and diffusion images, where it is needed)."""
    issues = header.invalid_geometry
    spacing = _checked(get_value(ds, "PixelSpacing"), 2, "Pixel Spacing (0028,0030)", issues, positive=True)
    if spacing is None and get_value(ds, "PixelSpacing") is None:
        spacing = _checked(
            get_value(ds, "ImagerPixelSpacing"), 2, "Imager Pixel Spacing (0018,1164)", issues, positive=True
        )
    slope = _rescale(get_value(ds, "RescaleSlope"), "Rescale Slope (0028,1053)", header.path, 1.0)
    intercept = _rescale(get_value(ds, "RescaleIntercept"), "Rescale Intercept (0028,1052)", header.path, 0.0)
    if header.modality == "RTDOSE":
        scaling = get_value(ds, "DoseGridScaling")
        if scaling:
            # (3004,000E): stored value x scaling = dose in Gy
            slope *= _rescale(scaling, "Dose Grid Scaling (3004,000E)", header.path, 1.0)
            header.value_unit = str(get_value(ds, "DoseUnits") or "GY")
    csa = None
    siemens = "SIEMENS" in str(get_value(ds, "Manufacturer") or "").upper()
    if "MOSAIC" in header.image_type or (siemens and "DIFFUSION" in header.image_type):
        csa = csa_image_header(ds, header.path)
    iop = _orientation(get_value(ds, "ImageOrientationPatient"), issues)
    fields = {
        "rows": header.rows,
        "columns": header.columns,
        "iop": iop,
        "pixel_spacing": spacing,
        "slope": slope,
        "intercept": intercept,
        "acquisition": _str(get_value(ds, "AcquisitionNumber")),
        "echo": _str(get_value(ds, "EchoNumbers")),
        "temporal": _str(get_value(ds, "TemporalPositionIdentifier")),
        "trigger": _str(get_value(ds, "TriggerTime")),
        "acquisition_time": _str(get_value(ds, "AcquisitionTime")),
        "instance": _int(get_value(ds, "InstanceNumber"), "Instance Number (0020,0013)", header.path) or None,
        "diffusion": diffusion_from_dataset(ds, csa, iop=iop) if header.modality == "MR" else None,
        "part": image_part(ds, header.image_type) if header.modality == "MR" else None,
        "philips_scale": philips_scale_slope(ds) if is_philips(ds) and header.modality == "MR" else None,
        "derived_diffusion": header.modality == "MR" and derived_diffusion_image(ds, header.image_type),
    }
    return fields, csa


def _mosaic_frames(
    header: FileHeader,
    ds: Dataset,
    common: dict[str, Any],
    ipp: tuple[float, ...] | None,
    csa: dict[str, Any] | None,
) -> list[Frame]:
    """The tiles of a Siemens mosaic as frames, each with its true position (see :mod:`medimg.io.siemens`)."""
    layout = mosaic_layout(ds, csa, header.rows, header.columns, header.path)
    header.mosaic = layout
    iop, spacing = common["iop"], common["pixel_spacing"]
    common.update(rows=layout.tile_rows, columns=layout.tile_columns)
    if iop is None or ipp is None or spacing is None:
        return [Frame(header=header, index=k, ipp=None, **common) for k in range(layout.n_tiles)]
    step = _positive_number(get_value(ds, "SpacingBetweenSlices")) or _positive_number(get_value(ds, "SliceThickness"))
    if step is None:
        raise DicomReadError(
            "Siemens mosaic without Spacing Between Slices (0018,0088) or Slice Thickness (0018,0050): the "
            "distance between its tiles is unknown, refused",
            header.path,
        )
    normal = mosaic_slice_normal(iop, csa, header.path)
    positions = mosaic_tile_positions(ipp, iop, spacing, layout, normal, step)  # type: ignore[arg-type]
    return [
        Frame(header=header, index=k, ipp=(float(p[0]), float(p[1]), float(p[2])), **common)
        for k, p in enumerate(positions)
    ]


def _positive_number(value: Any) -> float | None:
    raw = _raw_floats(value)
    if not raw or not math.isfinite(raw[0]) or raw[0] <= 0:
        return None
    return raw[0]


def _floats_list(value: Any) -> list[float] | None:
    """The values of a multi-valued numeric attribute as finite floats, or None when absent, unreadable or not
    finite (a single, non-iterable value is unreadable here)."""
    out = None if value is None else _as_floats(value)
    return out if out is not None and all(math.isfinite(v) for v in out) else None


def _enhanced_frame(header: FileHeader, i: int, fg: Dataset, shared: Dataset | None, ds: Dataset) -> Frame:
    """One frame of an enhanced multi-frame object: per-frame functional groups override shared ones."""

    def group(kw: str) -> Dataset | None:
        return _first(fg, kw) or _first(shared, kw)

    issues = header.invalid_geometry
    orient = group("PlaneOrientationSequence")
    position = group("PlanePositionSequence")
    measures = group("PixelMeasuresSequence")
    transform = group("PixelValueTransformationSequence")
    content = _first(fg, "FrameContentSequence")
    if transform is not None and "RescaleSlope" in transform:
        slope = _rescale(transform.RescaleSlope, "Rescale Slope (0028,1053)", header.path, 1.0)
        intercept = _rescale(transform.get("RescaleIntercept"), "Rescale Intercept (0028,1052)", header.path, 0.0)
    elif "RescaleSlope" in ds:
        slope = _rescale(get_value(ds, "RescaleSlope"), "Rescale Slope (0028,1053)", header.path, 1.0)
        intercept = _rescale(get_value(ds, "RescaleIntercept"), "Rescale Intercept (0028,1052)", header.path, 0.0)
    else:
        slope, intercept = _real_world_hu(group("RealWorldValueMappingSequence"), header.modality)
    cardiac = _first(fg, "CardiacSynchronizationSequence")
    return Frame(
        header=header,
        index=i,
        rows=header.rows,
        columns=header.columns,
        iop=_orientation(orient.get("ImageOrientationPatient") if orient else None, issues),
        ipp=_checked(  # type: ignore[arg-type]
            position.get("ImagePositionPatient") if position else None,
            3,
            "Image Position (Patient) (0020,0032)",
            issues,
        ),
        pixel_spacing=_checked(  # type: ignore[arg-type]
            measures.get("PixelSpacing") if measures else None, 2, "Pixel Spacing (0028,0030)", issues, positive=True
        ),
        slope=slope,
        intercept=intercept,
        acquisition=_str(content.get("FrameAcquisitionNumber")) if content else None,
        temporal=_str(content.get("TemporalPositionIndex")) if content else None,
        stack=_str(content.get("StackID")) if content else None,
        trigger=_str(cardiac.get("NominalCardiacTriggerDelayTime")) if cardiac else None,
        acquisition_time=_str(content.get("FrameAcquisitionDateTime")) if content else None,
        diffusion=_frame_diffusion(ds, fg, shared) if header.modality == "MR" else None,
        part=frame_part(
            ds, _first(fg, "MRImageFrameTypeSequence") or _first(shared, "MRImageFrameTypeSequence"), header.image_type
        )
        if header.modality == "MR"
        else None,
        philips_scale=philips_frame_scale_slope(fg) if is_philips(ds) and header.modality == "MR" else None,
    )


def _frame_diffusion(ds: Dataset, fg: Dataset, shared: Dataset | None) -> Diffusion | None:
    """The MR Diffusion Sequence (0018,9117) of one enhanced frame (per-frame, else shared)."""
    holder = fg if "MRDiffusionSequence" in fg else shared
    return diffusion_from_dataset(ds, None, holder)


def _value_unit(ds: Dataset, modality: str) -> str:
    """What the modality LUT output means: Rescale Type (0028,1054) when given (top level or in the shared
    Pixel Value Transformation functional group), else HU for CT (PS3.3 C.11.1.1.2) and stored values otherwise."""
    rescale_type = get_value(ds, "RescaleType")
    if rescale_type is None:
        shared = _first(ds, "SharedFunctionalGroupsSequence")
        pvt = _first(shared, "PixelValueTransformationSequence")
        rescale_type = pvt.get("RescaleType") if pvt is not None else None
    if rescale_type:
        text = str(rescale_type).strip().upper()
        return "HU" if text == "HU" else ("unspecified (Rescale Type US)" if text == "US" else text)
    return "HU" if modality == "CT" else "stored value"


def _real_world_hu(rwv: Dataset | None, modality: str) -> tuple[float, float]:
    """Slope/intercept of a Real World Value Mapping (0040,9096) item whose unit is Hounsfield, for CT only."""
    if rwv is None or modality != "CT":
        return 1.0, 0.0
    units = _first(rwv, "MeasurementUnitsCodeSequence")
    if units is not None and str(units.get("CodeValue", "")).lower() in {"[hnsf'u]", "hu"}:
        return float(rwv.get("RealWorldValueSlope", 1) or 1), float(rwv.get("RealWorldValueIntercept", 0) or 0)
    return 1.0, 0.0


def _window_presets(ds: Dataset) -> list[tuple[float, float]]:
    """Window Center (0028,1050) / Window Width (0028,1051) pairs, possibly multi-valued."""
    centers, widths = get_value(ds, "WindowCenter"), get_value(ds, "WindowWidth")
    if centers is None or widths is None:
        return []
    c = _floats_list(
        centers if isinstance(centers, (list, tuple, Sequence)) and not isinstance(centers, str) else [centers]
    )
    w = _floats_list(
        widths if isinstance(widths, (list, tuple, Sequence)) and not isinstance(widths, str) else [widths]
    )
    if not c or not w:
        return []
    return [(ci, wi) for ci, wi in zip(c, w, strict=False)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str)):
        # DS/IS subclass float/int; keep plain Python types for json
        if isinstance(value, float):
            return float(value)
        if isinstance(value, int):
            return int(value)
        return str(value)
    return str(value)
