"""The header model: one open per DICOM file, no pixel data, everything the series logic needs.

A file becomes a :class:`FileHeader` (file-level facts) and one :class:`Frame` per 2D image it holds: one for a
classic single-frame image, ``NumberOfFrames`` for an enhanced multi-frame object, whose per-frame geometry
and rescale come from the Per-frame / Shared Functional Groups Sequences (5200,9230) / (5200,9229)
(PS3.3 C.7.6.16), and one per tile of a Siemens mosaic (:mod:`medimg.io.dicom.siemens`).

The header read (:func:`medimg.io.dicom.raw.open_dataset`) stops before Pixel Data (7FE0,0010) and records where
that element starts, so the pixel pass can read native (uncompressed) pixels straight from that offset without
parsing the header a second time.

Geometry values that are *present but impossible* (a zero, negative or non-finite Pixel Spacing (0028,0030), a
non-finite Image Position (Patient) (0020,0032), degenerate direction cosines) are not silently dropped: they are
listed in :attr:`FileHeader.invalid_geometry`, and the series QA refuses them on modalities that have patient
geometry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, MediaStorageDirectoryStorage

from medimg.errors import DicomReadError, NotDicomError
from medimg.io.dicom.diffusion import Diffusion, derived_diffusion_image, diffusion_from_dataset
from medimg.io.dicom.image_kind import image_part, slices_per_volume
from medimg.io.dicom.philips import is_philips, philips_scale_slope
from medimg.io.dicom.raw import get_value, open_dataset
from medimg.io.dicom.siemens import (
    MosaicLayout,
    csa_image_header,
    mosaic_layout,
    mosaic_slice_normal,
    mosaic_tile_positions,
)
from medimg.io.dicom.values import (
    as_int,
    as_str,
    checked,
    first_item,
    floats_list,
    jsonable,
    multi_value,
    orientation_of,
    positive_number,
    rescale_value,
    value_unit,
    window_presets,
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
    "InstitutionName",  # equipment, not patient: medimg.io.dicom.sites proposes a site from it
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
    :mod:`medimg.io.dicom.philips`); ``derived_diffusion`` marks an isotropic/trace/ADC image that a scanner put
    inside a diffusion series (it is written apart, never into the 4D).
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
    image_type = tuple(str(v).upper() for v in multi_value(get_value(ds, "ImageType")))
    description = str(get_value(ds, "SeriesDescription") or "")
    modality = str(get_value(ds, "Modality") or "OT")
    rows = as_int(get_value(ds, "Rows"), "Rows (0028,0010)", path)
    columns = as_int(get_value(ds, "Columns"), "Columns (0028,0011)", path)
    series_number = get_value(ds, "SeriesNumber")
    bits_allocated = as_int(get_value(ds, "BitsAllocated"), "Bits Allocated (0028,0100)", path)
    bits_stored = as_int(get_value(ds, "BitsStored"), "Bits Stored (0028,0101)", path, bits_allocated)
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
        series_number=None if series_number in (None, "") else as_int(series_number, "Series Number (0020,0011)", path),
        image_type=image_type,
        localizer="LOCALIZER" in image_type or bool(_LOCALIZER_WORDS.search(description)),
        number_of_frames=max(1, as_int(get_value(ds, "NumberOfFrames"), "Number of Frames (0028,0008)", path, 1)),
        has_pixels=rows > 0 and columns > 0,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=as_int(get_value(ds, "PixelRepresentation"), "Pixel Representation (0028,0103)", path),
        samples_per_pixel=as_int(get_value(ds, "SamplesPerPixel"), "Samples per Pixel (0028,0002)", path, 1),
        photometric=str(get_value(ds, "PhotometricInterpretation") or ""),
        pixel_data_offset=offset,
        has_modality_lut_sequence=get_value(ds, "ModalityLUTSequence") is not None,
        value_unit=value_unit(ds, modality),
        window_presets=window_presets(ds),
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
            sidecar[kw] = jsonable(value)
    return sidecar


def _frames(header: FileHeader, ds: Dataset) -> list[Frame]:
    """One :class:`Frame` per 2D image in the file: enhanced multi-frame, mosaic tiles, grid-offset frames or one."""
    per_frame = get_value(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) > 0:
        shared = first_item(ds, "SharedFunctionalGroupsSequence")
        from medimg.io.dicom.enhanced import enhanced_frame  # it builds Frames: imported where used

        return [enhanced_frame(header, i, per_frame[i], shared, ds) for i in range(len(per_frame))]
    common, csa = _classic_fields(header, ds)
    iop, ipp = (
        common["iop"],
        checked(
            get_value(ds, "ImagePositionPatient"), 3, "Image Position (Patient) (0020,0032)", header.invalid_geometry
        ),
    )
    if "MOSAIC" in header.image_type and header.number_of_frames == 1:
        return _mosaic_frames(header, ds, common, ipp, csa)
    offsets = floats_list(get_value(ds, "GridFrameOffsetVector"))
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
    spacing = checked(get_value(ds, "PixelSpacing"), 2, "Pixel Spacing (0028,0030)", issues, positive=True)
    if spacing is None and get_value(ds, "PixelSpacing") is None:
        spacing = checked(
            get_value(ds, "ImagerPixelSpacing"), 2, "Imager Pixel Spacing (0018,1164)", issues, positive=True
        )
    slope = rescale_value(get_value(ds, "RescaleSlope"), "Rescale Slope (0028,1053)", header.path, 1.0)
    intercept = rescale_value(get_value(ds, "RescaleIntercept"), "Rescale Intercept (0028,1052)", header.path, 0.0)
    if header.modality == "RTDOSE":
        scaling = get_value(ds, "DoseGridScaling")
        if scaling:
            # (3004,000E): stored value x scaling = dose in Gy
            slope *= rescale_value(scaling, "Dose Grid Scaling (3004,000E)", header.path, 1.0)
            header.value_unit = str(get_value(ds, "DoseUnits") or "GY")
    csa = None
    siemens = "SIEMENS" in str(get_value(ds, "Manufacturer") or "").upper()
    if "MOSAIC" in header.image_type or (siemens and "DIFFUSION" in header.image_type):
        csa = csa_image_header(ds, header.path)
    iop = orientation_of(get_value(ds, "ImageOrientationPatient"), issues)
    fields = {
        "rows": header.rows,
        "columns": header.columns,
        "iop": iop,
        "pixel_spacing": spacing,
        "slope": slope,
        "intercept": intercept,
        "acquisition": as_str(get_value(ds, "AcquisitionNumber")),
        "echo": as_str(get_value(ds, "EchoNumbers")),
        "temporal": as_str(get_value(ds, "TemporalPositionIdentifier")),
        "trigger": as_str(get_value(ds, "TriggerTime")),
        "acquisition_time": as_str(get_value(ds, "AcquisitionTime")),
        "instance": as_int(get_value(ds, "InstanceNumber"), "Instance Number (0020,0013)", header.path) or None,
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
    """The tiles of a Siemens mosaic as frames, each with its true position (see :mod:`medimg.io.dicom.siemens`)."""
    layout = mosaic_layout(ds, csa, header.rows, header.columns, header.path)
    header.mosaic = layout
    iop, spacing = common["iop"], common["pixel_spacing"]
    common.update(rows=layout.tile_rows, columns=layout.tile_columns)
    if iop is None or ipp is None or spacing is None:
        return [Frame(header=header, index=k, ipp=None, **common) for k in range(layout.n_tiles)]
    step = positive_number(get_value(ds, "SpacingBetweenSlices")) or positive_number(get_value(ds, "SliceThickness"))
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
