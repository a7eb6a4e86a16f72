"""The raw element layer under the header model: cutting a Part 10 file into elements, and reading values cheaply.

pydicom's ``util/leanread.py`` is the model: a folder scan needs a dozen attributes of each file, not a full parse.
:func:`open_dataset` reads the header of one file (stopping before Pixel Data (7FE0,0010) and recording where that
element starts); :func:`get_value` reads one top-level attribute by keyword, decoding the common value
representations straight from the raw bytes. Everything unusual falls back to pydicom.
"""

from __future__ import annotations

import struct
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian

from medimg.errors import DicomReadError, MedimgError, NotDicomError

__all__ = ["QUICK_PARSE", "get_value", "open_dataset", "quick_parse"]

_TAGS: dict[str, BaseTag] = {}
_SLOW = object()
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"})
_BINARY_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_VR_CACHE: dict[int, str] = {}

#: Read the common case (Part 10, Explicit VR Little Endian, defined lengths) with :func:`quick_parse`.
QUICK_PARSE = True
_QUICK_BYTES = 1 << 16
_LONG_QUICK_BYTES = 1 << 20  # vendors' private headers (Toshiba: ~80 kB) before Pixel Data
_LONG_HEADERS = [False]  # whether the last file needed the long read (files of one folder come alike)
#: The private groups medimg reads (Siemens CSA (0029) and MR header (0019), GE (0019/0021/0043), Philips
#: (2001/2005), see medimg.io.dicom.vendor_tags); other vendors' private elements -- often most of a GE or
#: Toshiba header -- are skipped by the quick reader (their Private Creators (gggg,0010-00FF) are kept).
PRIVATE_GROUPS_READ = frozenset({0x0019, 0x0021, 0x0029, 0x0043, 0x2001, 0x2005})
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_PIXEL_DATA = 0x7FE00010
_PIXEL_DATA_LE = b"\xe0\x7f\x10\x00"


def get_value(ds: Dataset, keyword: str) -> Any:
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
        except (ValueError, OverflowError):
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


def quick_parse(data: bytes) -> tuple[Dataset, int | None] | None:
    """Split the first bytes of a Part 10 file into raw top-level elements, up to Pixel Data (7FE0,0010).

    Hand-written because pydicom's reader spends most of a folder scan building element objects we never
    look at; this only cuts the byte stream into (tag, VR, value) records -- pydicom still converts every value
    that is read. Anything unusual returns None and the caller uses pydicom: another transfer syntax than
    Explicit VR Little Endian, an undefined length other than a sequence's (encapsulated data, a malformed
    sequence), a header longer than the bytes given, or no Pixel Data element. ``tests/test_io_quick_parse.py``
    checks that both readers agree on every sample file (and on the real scanner sample where present).
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
            if str(meta.get("TransferSyntaxUID", "")) != ExplicitVRLittleEndian:
                return None
            target = ds
        if tag == _PIXEL_DATA:
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
        start = pos + header
        if length == 0xFFFFFFFF and vr == b"SQ":
            # An undefined-length sequence (Philips, Toshiba): find its delimiter and hand pydicom the items'
            # bytes as a defined-length value (pydicom's SQ conversion reads items of either kind from it).
            stop = _sequence_end(data, start)
            if stop is None:
                return None
            length, after = stop - start, stop + 8
        elif length == 0xFFFFFFFF or start + length > end or not vr.isalpha():
            return None
        else:
            after = start + length
        if not (group & 1) or group in PRIVATE_GROUPS_READ or element < 0x0100:
            key = BaseTag(tag)
            target._dict[key] = RawDataElement(
                key, vr.decode("ascii"), length, data[start : start + length], start, False, True
            )
        pos = after
    return None


_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def _sequence_end(data: bytes, pos: int, depth: int = 0) -> int | None:
    """Offset of the Sequence Delimitation Item (FFFE,E0DD) that closes the undefined-length sequence whose
    items start at ``pos`` (Explicit VR Little Endian, items of defined or undefined length, nested sequences);
    None when the bytes end first or the structure is not that."""
    unpack, end = struct.unpack_from, len(data)
    while pos + 8 <= end and depth < 8:
        group, element, length = unpack("<HHI", data, pos)
        tag = (group << 16) | element
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            return None
        if length != 0xFFFFFFFF:
            pos += 8 + length
            continue
        item_end = _item_end(data, pos + 8, depth + 1)
        if item_end is None:
            return None
        pos = item_end + 8
    return None


def _item_end(data: bytes, pos: int, depth: int) -> int | None:
    """Offset of the Item Delimitation Item (FFFE,E00D) closing an undefined-length item whose elements start
    at ``pos``."""
    unpack, end = struct.unpack_from, len(data)
    while pos + 8 <= end:
        group, element = unpack("<HH", data, pos)
        if (group << 16) | element == _ITEM_END:
            return pos
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > end:
                return None
            (length,) = unpack("<I", data, pos + 8)
            start = pos + 12
        else:
            (length,) = unpack("<H", data, pos + 6)
            start = pos + 8
        if length == 0xFFFFFFFF:
            if vr != b"SQ":
                return None
            stop = _sequence_end(data, start, depth)
            if stop is None:
                return None
            pos = stop + 8
        else:
            pos = start + length
    return None


def open_dataset(path: str) -> tuple[Dataset, int | None]:
    """Parse the header of ``path``; return it and the offset of Pixel Data (if the parse reached it).

    Raises :class:`NotDicomError` for a file that is not DICOM and :class:`DicomReadError` for a damaged one --
    whatever pydicom raised underneath (it raises a zoo of types: EOFError, struct.error, ValueError,
    NotImplementedError for an unknown VR, ...).
    """
    try:
        with open(path, "rb") as fh:
            first = _QUICK_BYTES if not _LONG_HEADERS[0] else _LONG_QUICK_BYTES
            quick = quick_parse(fh.read(first)) if QUICK_PARSE else None
            if quick is None and QUICK_PARSE and fh.tell() == _QUICK_BYTES:  # a header longer than the first read
                fh.seek(0)
                quick = quick_parse(fh.read(_LONG_QUICK_BYTES))
                _LONG_HEADERS[0] = quick is not None  # the next file of this folder likely needs it too
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
            offset = pos if tag == _PIXEL_DATA_LE else None
    except (MedimgError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:
        raise DicomReadError(f"cannot parse DICOM header ({type(exc).__name__}: {exc}); truncated?", path) from exc
    return ds, offset
