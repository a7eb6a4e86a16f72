"""Reading DICOM *headers*: one open per file, no pixel data, everything the series logic needs.

A file becomes a :class:`FileHeader` (file-level facts) and one :class:`Frame` per 2D image it holds: one for a
classic single-frame image, ``NumberOfFrames`` for an enhanced multi-frame object, whose per-frame geometry
and rescale come from the Per-frame / Shared Functional Groups Sequences (5200,9230) / (5200,9229)
(PS3.3 C.7.6.16).

The header read stops before Pixel Data (7FE0,0010) and records where that element starts, so the pixel pass
can read native (uncompressed) pixels straight from that offset without parsing the header a second time.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import UID

from medimg.errors import DicomReadError, NotDicomError

__all__ = ["DICOMDIR_SOP_CLASS", "FileHeader", "Frame", "decoder_problem", "read_header"]

#: Media Storage Directory Storage: a DICOMDIR index, not an image.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Transfer syntaxes whose pixels medimg reads itself, straight from the file (little endian, not encapsulated).
NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}

# Which PyPI package brings a decoder for a transfer syntax pydicom cannot decode on its own.
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",  # JPEG Extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE Lossless
}

_TAGS: dict[str, BaseTag] = {}

_LOCALIZER_WORDS = re.compile(r"locali[sz]er|scout|survey|topogram|scanogram|surview|3.?plane", re.IGNORECASE)

# The attributes medimg keeps from a header: technical and descriptive only, never patient identifiers.
SIDECAR_KEYWORDS = (
    "Modality",
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
    """One 2D image: a single-frame file, or one frame of a multi-frame file.

    ``iop`` is Image Orientation (Patient) (0020,0037): the row direction cosines then the column direction
    cosines, LPS+. ``ipp`` is Image Position (Patient) (0020,0032): the LPS+ mm centre of the first transmitted
    pixel. ``pixel_spacing`` is Pixel Spacing (0028,0030): (row spacing, column spacing) in mm, i.e. the
    distance between rows first. ``slope``/``intercept`` are the modality LUT's Rescale Slope (0028,1053) and
    Rescale Intercept (0028,1052).
    """

    header: FileHeader
    index: int | None  # 0-based frame number within a multi-frame file; None for a single-frame file
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

    @property
    def is_dicomdir(self) -> bool:
        return self.sop_class == DICOMDIR_SOP_CLASS

    @property
    def transfer_syntax_name(self) -> str:
        return UID(self.transfer_syntax).name if self.transfer_syntax else "unknown"


def decoder_problem(transfer_syntax: str) -> str | None:
    """``None`` if pydicom can decode pixel data of this Transfer Syntax (0002,0010), else what to install."""
    if not transfer_syntax or transfer_syntax in NATIVE_LE:
        return None
    from pydicom.pixels.decoders.base import get_decoder

    uid = UID(transfer_syntax)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"no pixel-data decoder exists in pydicom for transfer syntax {uid.name} ({uid})"
    if decoder.is_available:
        return None
    package = _DECODER_PACKAGES.get(str(uid), "python-gdcm")
    return f"no decoder installed for transfer syntax {uid.name} ({uid}); install '{package}' (pip install {package})"


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        seq = [float(v) for v in (value if isinstance(value, (list, tuple, Sequence)) else [value])]
    except (TypeError, ValueError):
        return None
    if len(seq) != n or not all(np.isfinite(seq)):
        return None
    return tuple(seq)


def _positive(values: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """``values`` if every entry is > 0, else None (some exports write Pixel Spacing "0\\0")."""
    return values if values is not None and all(v > 0 for v in values) else None


def _first(seq_holder: Dataset | None, seq_kw: str) -> Dataset | None:
    if seq_holder is None:
        return None
    seq = seq_holder.get(seq_kw)
    if seq:
        item: Dataset = seq[0]
        return item
    return None


def _get(ds: Dataset, keyword: str) -> Any:
    """The value of a top-level attribute by keyword, or None when absent or empty.

    Looks the tag up in the dataset's element dict directly (``Dataset.get(keyword)`` goes through
    ``__getattr__``, ~15 us per *absent* keyword) and decodes plain ASCII strings, numbers in text (DS, IS) and
    little-endian binary numbers (US, UL, SS, SL, FL, FD) from the raw bytes itself, which is several times
    cheaper than pydicom's general conversion; sequences, non-ASCII text and everything else go through pydicom.
    This is what makes a folder scan a header read, not a header parse.
    """
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _TAGS[keyword] = BaseTag(tag_for_keyword(keyword) or 0)
    elem = ds._dict.get(tag)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        fast = _decode_raw(elem, tag)
        if fast is not _SLOW:
            return fast
    value = ds[tag].value
    return None if value is None or value == "" else value


_SLOW = object()
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"})
_BINARY_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_VR_CACHE: dict[int, str] = {}


def _decode_raw(elem: RawDataElement, tag: int) -> Any:
    vr = elem.VR
    if vr is None:
        vr = _VR_CACHE.get(tag)
        if vr is None:
            try:
                vr = _VR_CACHE[tag] = str(dictionary_VR(tag))
            except KeyError:
                return _SLOW
    raw = elem.value
    if raw is None or len(raw) == 0:
        return None
    if vr in _TEXT_VRS:
        if max(raw) >= 0x80:
            return _SLOW  # non-ASCII: let pydicom apply Specific Character Set (0008,0005)
        parts = [p.strip(" \x00") for p in raw.decode("ascii").split("\\")]
        try:
            if vr == "DS":
                values: list[Any] = [float(p) for p in parts if p]
            elif vr == "IS":
                values = [int(float(p)) for p in parts if p]
            else:
                values = parts
        except ValueError:
            return _SLOW
        if not values or values == [""]:
            return None
        return values[0] if len(values) == 1 else values
    fmt = _BINARY_VRS.get(vr)
    if fmt is not None and elem.is_little_endian:
        n = len(raw) // struct.calcsize(fmt)
        numbers = struct.unpack(f"<{n}{fmt}", raw[: n * struct.calcsize(fmt)])
        return numbers[0] if n == 1 else list(numbers)
    return _SLOW


def _multi(value: Any) -> list[Any]:
    """A possibly single-valued attribute as a list (pydicom returns a bare str for one value)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    return list(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


#: Read the common case (Part 10, Explicit VR Little Endian, defined lengths) with :func:`_quick_parse`.
QUICK_PARSE = True
_QUICK_BYTES = 1 << 16
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _quick_parse(data: bytes) -> tuple[Dataset, int | None] | None:
    """Split the first bytes of a Part 10 file into raw top-level elements, up to Pixel Data (7FE0,0010).

    Hand-written because pydicom's reader spends most of a folder scan building element objects we never
    look at; this only cuts the byte stream into (tag, VR, value) records -- pydicom still converts every value
    that is read. Anything unusual returns None and the caller uses pydicom: another transfer syntax than
    Explicit VR Little Endian, an undefined length (sequence or encapsulated data), a header longer than the
    bytes given, or no Pixel Data element. ``tests/test_io_quick_parse.py`` checks that both readers agree on
    every sample file.
    """
    if len(data) < 144 or data[128:132] != b"DICM":
        return None
    meta, pos = Dataset(), 132
    ds = Dataset()
    target = meta
    unpack = struct.unpack_from
    end = len(data)
    while pos + 8 <= end:
        group, element = unpack("<HH", data, pos)
        tag = (group << 16) | element
        if group != 2 and target is meta:
            if str(meta.get("TransferSyntaxUID", "")) != _EXPLICIT_LE:
                return None
            target = ds
        if tag == 0x7FE00010:
            ds.file_meta = meta  # type: ignore[assignment]
            return ds, pos
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > end:
                return None
            (length,) = unpack("<I", data, pos + 8)
            header = 12
        else:
            (length,) = unpack("<H", data, pos + 6)
            header = 8
        if length == 0xFFFFFFFF or pos + header + length > end or not vr.isalpha():
            return None
        start = pos + header
        target._dict[BaseTag(tag)] = RawDataElement(
            BaseTag(tag), vr.decode("ascii"), length, data[start : start + length], start, False, True
        )
        pos = start + length
    return None


def _open(path: str) -> tuple[Dataset, int | None]:
    """Parse the header of ``path``; return it and the offset of Pixel Data (if the parse reached it)."""
    try:
        with open(path, "rb") as fh:
            quick = _quick_parse(fh.read(_QUICK_BYTES)) if QUICK_PARSE else None
            if quick is not None:
                return quick
            fh.seek(0)
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=True)
            except InvalidDicomError:
                # No 128-byte preamble + "DICM": accept only a raw data set that starts with a group 0x0008
                # element (little endian), as old modalities write; anything else is not DICOM.
                fh.seek(0)
                head = fh.read(4)
                if len(head) < 4 or head[:2] not in (b"\x08\x00", b"\x00\x08"):
                    raise NotDicomError("not a DICOM file (no 'DICM' marker, no DICOM data set)", path) from None
                fh.seek(0)
                ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            pos = fh.tell()
            tag = fh.read(4)
            offset = pos if tag == b"\xe0\x7f\x10\x00" else None
    except (NotDicomError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # pydicom raises a zoo of types (EOFError, struct.error, ValueError, ...)
        raise DicomReadError(f"cannot parse DICOM header ({type(exc).__name__}: {exc}); truncated?", path) from exc
    return ds, offset


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
    ds, offset = _open(path)
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not ts:
        ts = "1.2.840.10008.1.2" if ds.is_implicit_VR else "1.2.840.10008.1.2.1"
    sop_class = str(_get(ds, "SOPClassUID") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    if offset is None and "Rows" not in ds and "Image Storage" in UID(sop_class).name:
        raise DicomReadError(
            f"an image object ({UID(sop_class).name}) that ends before its Pixel Data (7FE0,0010): truncated", path
        )
    try:
        return _header_from_dataset(path, ds, ts, sop_class, offset)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise DicomReadError(f"malformed DICOM attribute ({type(exc).__name__}: {exc})", path) from exc


def _header_from_dataset(path: str, ds: Dataset, ts: str, sop_class: str, offset: int | None) -> FileHeader:
    image_type = tuple(str(v).upper() for v in _multi(_get(ds, "ImageType")))
    description = str(_get(ds, "SeriesDescription") or "")
    localizer = "LOCALIZER" in image_type or bool(_LOCALIZER_WORDS.search(description))
    modality = str(_get(ds, "Modality") or "OT")
    number_of_frames = int(_get(ds, "NumberOfFrames") or 1)
    rows = int(_get(ds, "Rows") or 0)
    columns = int(_get(ds, "Columns") or 0)
    series_number = _get(ds, "SeriesNumber")
    windows = _window_presets(ds)
    unit = _value_unit(ds, modality)
    sidecar: dict[str, Any] = {}
    for kw in SIDECAR_KEYWORDS:
        value = _get(ds, kw)
        if value is None:
            continue
        sidecar[kw] = _jsonable(value)
    header = FileHeader(
        path=path,
        sop_class=sop_class,
        transfer_syntax=ts,
        series_uid=str(_get(ds, "SeriesInstanceUID") or ""),
        modality=modality,
        description=description,
        series_number=None if series_number in (None, "") else int(series_number),
        image_type=image_type,
        localizer=localizer,
        number_of_frames=number_of_frames,
        has_pixels=rows > 0 and columns > 0,
        bits_allocated=int(_get(ds, "BitsAllocated") or 0),
        bits_stored=int(_get(ds, "BitsStored") or _get(ds, "BitsAllocated") or 0),
        pixel_representation=int(_get(ds, "PixelRepresentation") or 0),
        samples_per_pixel=int(_get(ds, "SamplesPerPixel") or 1),
        photometric=str(_get(ds, "PhotometricInterpretation") or ""),
        pixel_data_offset=offset,
        has_modality_lut_sequence=_get(ds, "ModalityLUTSequence") is not None,
        value_unit=unit,
        window_presets=windows,
        sidecar=sidecar,
    )
    if not header.has_pixels:
        return header
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    per_frame = _get(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) > 0:
        header.frames = [
            _enhanced_frame(header, i, rows, columns, per_frame[i], shared, ds) for i in range(len(per_frame))
        ]
        return header
    iop = _floats(_get(ds, "ImageOrientationPatient"), 6)
    ipp = _floats(_get(ds, "ImagePositionPatient"), 3)
    spacing = _positive(_floats(_get(ds, "PixelSpacing"), 2)) or _positive(_floats(_get(ds, "ImagerPixelSpacing"), 2))
    slope = float(_get(ds, "RescaleSlope") or 1)
    intercept = float(_get(ds, "RescaleIntercept") or 0)
    dose_scaling = _get(ds, "DoseGridScaling") if modality == "RTDOSE" else None
    if dose_scaling:
        slope *= float(dose_scaling)  # (3004,000E): stored value x scaling = dose in Gy
        header.value_unit = str(_get(ds, "DoseUnits") or "GY")
    common: dict[str, Any] = {
        "rows": rows,
        "columns": columns,
        "iop": iop,
        "pixel_spacing": spacing,  # type: ignore[dict-item]
        "slope": slope,
        "intercept": intercept,
        "acquisition": _str(_get(ds, "AcquisitionNumber")),
        "echo": _str(_get(ds, "EchoNumbers")),
        "temporal": _str(_get(ds, "TemporalPositionIdentifier")),
    }
    offsets = _floats_list(_get(ds, "GridFrameOffsetVector"))
    if number_of_frames > 1 and iop is not None and ipp is not None and offsets is not None:
        # RT Dose and friends: frames are parallel planes at IPP + offset * normal (PS3.3 C.8.8.3.2).
        normal = np.cross(iop[:3], iop[3:])
        header.frames = [
            Frame(header=header, index=i, ipp=tuple(np.add(ipp, offsets[i] * normal).tolist()), **common)  # type: ignore[arg-type]
            for i in range(min(number_of_frames, len(offsets)))
        ]
    elif number_of_frames > 1:
        header.frames = [Frame(header=header, index=i, ipp=None, **common) for i in range(number_of_frames)]
    else:
        header.frames = [Frame(header=header, index=None, ipp=ipp, **common)]  # type: ignore[arg-type]
    return header


def _floats_list(value: Any) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _enhanced_frame(
    header: FileHeader, i: int, rows: int, columns: int, fg: Dataset, shared: Dataset | None, ds: Dataset
) -> Frame:
    """One frame of an enhanced multi-frame object: per-frame functional groups override shared ones."""

    def group(kw: str) -> Dataset | None:
        return _first(fg, kw) or _first(shared, kw)

    orient = group("PlaneOrientationSequence")
    position = group("PlanePositionSequence")
    measures = group("PixelMeasuresSequence")
    transform = group("PixelValueTransformationSequence")
    content = _first(fg, "FrameContentSequence")
    if transform is not None and "RescaleSlope" in transform:
        slope = float(transform.RescaleSlope)
        intercept = float(transform.get("RescaleIntercept", 0) or 0)
    elif "RescaleSlope" in ds:
        slope, intercept = float(_get(ds, "RescaleSlope")), float(_get(ds, "RescaleIntercept") or 0)
    else:
        slope, intercept = _real_world_hu(group("RealWorldValueMappingSequence"), header.modality)
    return Frame(
        header=header,
        index=i,
        rows=rows,
        columns=columns,
        iop=_floats(orient.get("ImageOrientationPatient") if orient else None, 6),
        ipp=_floats(position.get("ImagePositionPatient") if position else None, 3),  # type: ignore[arg-type]
        pixel_spacing=_positive(_floats(measures.get("PixelSpacing") if measures else None, 2)),  # type: ignore[arg-type]
        slope=slope,
        intercept=intercept,
        acquisition=_str(content.get("FrameAcquisitionNumber")) if content else None,
        temporal=_str(content.get("TemporalPositionIndex")) if content else None,
        stack=_str(content.get("StackID")) if content else None,
    )


def _value_unit(ds: Dataset, modality: str) -> str:
    """What the modality LUT output means: Rescale Type (0028,1054) when given (top level or in the shared
    Pixel Value Transformation functional group), else HU for CT (PS3.3 C.11.1.1.2) and stored values otherwise."""
    rescale_type = _get(ds, "RescaleType")
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
    centers, widths = _get(ds, "WindowCenter"), _get(ds, "WindowWidth")
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
