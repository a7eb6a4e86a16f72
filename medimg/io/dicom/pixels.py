"""Reading the pixels of a :class:`~medimg.io.dicom.series.Series` into one array, with the modality LUT applied.

Native little-endian pixels are read straight from the byte offset the header pass recorded (no second header
parse: this is why medimg's series read is faster than a plain pydicom loop). Everything else -- JPEG, JPEG-LS,
JPEG 2000, RLE, deflate, big endian -- is decoded by pydicom's pixel backend and its pylibjpeg plugins.
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import uid

from medimg.errors import DicomReadError, MedimgError, NoPixelDataError, UnsupportedTransferSyntaxError
from medimg.io.dicom.header import FileHeader, Frame
from medimg.io.dicom.siemens import unpack_mosaic

__all__ = ["NATIVE_LE", "decoder_problem", "output_dtype", "read_frames", "read_volumes"]

#: Transfer syntaxes whose pixels medimg reads itself, straight from the file (little endian, not encapsulated).
NATIVE_LE = frozenset({str(uid.ImplicitVRLittleEndian), str(uid.ExplicitVRLittleEndian)})

#: Which PyPI package brings a decoder for a transfer syntax pydicom cannot decode on its own.
_DECODER_PACKAGES = {
    uid.JPEGBaseline8Bit: "pylibjpeg-libjpeg",
    uid.JPEGExtended12Bit: "pylibjpeg-libjpeg",
    uid.JPEGLossless: "pylibjpeg-libjpeg",
    uid.JPEGLosslessSV1: "pylibjpeg-libjpeg",
    uid.JPEGLSLossless: "pylibjpeg-libjpeg",
    uid.JPEGLSNearLossless: "pylibjpeg-libjpeg",
    uid.JPEG2000Lossless: "pylibjpeg-openjpeg",
    uid.JPEG2000: "pylibjpeg-openjpeg",
    uid.HTJ2KLossless: "pylibjpeg-openjpeg",
    uid.HTJ2KLosslessRPCL: "pylibjpeg-openjpeg",
    uid.HTJ2K: "pylibjpeg-openjpeg",
    uid.RLELossless: "pylibjpeg-rle",
}


def decoder_problem(transfer_syntax: str) -> str | None:
    """``None`` if pydicom can decode pixel data of this Transfer Syntax (0002,0010), else what to install."""
    if not transfer_syntax or transfer_syntax in NATIVE_LE:
        return None
    from pydicom.pixels.decoders.base import get_decoder

    ts = uid.UID(transfer_syntax)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return f"no pixel-data decoder exists in pydicom for transfer syntax {ts.name} ({ts})"
    if decoder.is_available:
        return None
    package = _DECODER_PACKAGES.get(ts, "python-gdcm")
    return f"no decoder installed for transfer syntax {ts.name} ({ts}); install '{package}' (pip install {package})"


def _stored_range(h: FileHeader) -> tuple[int, int]:
    bits = h.bits_stored or h.bits_allocated or 16
    if h.pixel_representation == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def output_dtype(frames: list[Frame]) -> np.dtype[Any]:
    """The smallest dtype that holds every frame's modality-LUT output exactly.

    Integer slopes and intercepts keep integers (CT: int16 Hounsfield units for 12-bit data); anything else,
    a Modality LUT Sequence (0028,3000), or float pixel data gives float32.
    """
    h = frames[0].header
    if h.has_modality_lut_sequence or h.bits_allocated not in (8, 16, 32) or h.samples_per_pixel != 1:
        return (
            np.dtype(np.float32)
            if h.samples_per_pixel == 1
            else np.dtype(np.uint8 if h.bits_allocated == 8 else np.uint16)
        )
    lo_s, hi_s = _stored_range(h)
    lo, hi = 0.0, 0.0
    for f in frames:
        if f.slope != int(f.slope) or f.intercept != int(f.intercept):
            return np.dtype(np.float32)
        a, b = lo_s * f.slope + f.intercept, hi_s * f.slope + f.intercept
        lo, hi = min(lo, a, b), max(hi, a, b)
    for dt in (np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.float64)


def _native_ok(h: FileHeader) -> bool:
    return (
        h.transfer_syntax in NATIVE_LE
        and h.pixel_data_offset is not None
        and h.samples_per_pixel == 1
        and h.bits_allocated in (8, 16, 32)
        and h.number_of_frames == 1
    )


def _read_native(h: FileHeader, rows: int, columns: int) -> npt.NDArray[Any]:
    """Read uncompressed little-endian pixels of a single-frame file from the recorded offset."""
    assert h.pixel_data_offset is not None
    n = rows * columns
    signed = h.pixel_representation == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{h.bits_allocated // 8}")
    with open(h.path, "rb") as fh:
        fh.seek(h.pixel_data_offset)
        tag = fh.read(8)
        # explicit VR: tag(4) VR(2) reserved(2) length(4); implicit VR: tag(4) length(4)
        if h.transfer_syntax == uid.ExplicitVRLittleEndian:
            length = int.from_bytes(fh.read(4), "little")
        else:
            length = int.from_bytes(tag[4:8], "little")
        if length == 0xFFFFFFFF or length < n * dtype.itemsize:
            raise DicomReadError(
                f"Pixel Data (7FE0,0010) holds {length} bytes but Rows x Columns = {rows} x {columns} needs "
                f"{n * dtype.itemsize}; the file is truncated or its header is wrong",
                h.path,
            )
        data = np.fromfile(fh, dtype=dtype, count=n)
    if data.size != n:
        raise DicomReadError(f"file ends inside Pixel Data ({data.size} of {n} pixels); truncated", h.path)
    bits = h.bits_stored
    if bits and bits < h.bits_allocated:
        # bits above Bits Stored (0028,0101) are not pixel data: mask them, sign-extend signed values
        shift = h.bits_allocated - bits
        data = (data << shift) >> shift if signed else data & ((1 << bits) - 1)
    return data.reshape(rows, columns)


#: Refuse to allocate more than this for one series: a damaged header that declares absurd dimensions must give an
#: error, not exhaust the machine's memory.
MAX_SERIES_BYTES = 1 << 34


def _check_size(shape: tuple[int, ...], dtype: np.dtype[Any], path: str) -> None:
    nbytes = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if nbytes > MAX_SERIES_BYTES:
        raise DicomReadError(
            f"the headers declare {' x '.join(map(str, shape))} voxels ({nbytes / 2**30:.0f} GiB): absurd dimensions, "
            "the file is damaged",
            path,
        )


def _is_fatal(exc: BaseException) -> bool:
    """Exceptions that must stop the program rather than become a file error."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


def _decode_file(h: FileHeader) -> npt.NDArray[Any]:
    """Decode every frame of a file with pydicom: shape (frames, rows, columns[, samples])."""
    problem = decoder_problem(h.transfer_syntax)
    if problem:
        raise UnsupportedTransferSyntaxError(problem, h.path)
    import pydicom

    try:
        ds = pydicom.dcmread(h.path)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise NoPixelDataError("the file has no Pixel Data (7FE0,0010)", h.path)
        arr = ds.pixel_array
    except (DicomReadError, NoPixelDataError):
        raise
    except BaseException as exc:
        # BaseException, not Exception: the Rust-backed decoders raise pyo3's PanicException on some damaged
        # streams, and it derives from BaseException.
        if _is_fatal(exc):
            raise
        raise DicomReadError(
            f"cannot decode pixel data ({h.transfer_syntax_name}): {type(exc).__name__}: {exc}", h.path
        ) from exc
    if h.number_of_frames == 1:
        arr = arr[np.newaxis]
    return np.asarray(arr)


def _modality_lut(values: npt.NDArray[Any], frame: Frame, out_dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    if frame.header.has_modality_lut_sequence:
        import pydicom
        from pydicom.pixels.processing import apply_modality_lut

        ds = pydicom.dcmread(frame.path, stop_before_pixels=True)
        return np.asarray(apply_modality_lut(values, ds), dtype=out_dtype)
    if frame.slope == 1 and frame.intercept == 0:
        return values.astype(out_dtype, copy=False)
    work = np.dtype(np.float64 if out_dtype == np.float64 else np.float32)
    scaled: npt.NDArray[Any] = values.astype(work) * np.asarray(frame.slope, work) + np.asarray(frame.intercept, work)
    if out_dtype.kind in "iu":
        scaled = np.rint(scaled)
    return scaled.astype(out_dtype, copy=False)


def read_frames(frames: list[Frame], workers: int | None = None) -> npt.NDArray[Any]:
    """Read ``frames`` (already in slice order) into an array of shape (columns, rows, n[, samples]).

    The returned array is a transposed view of a C-ordered (n, rows, columns) block: index ``[i, j, k]`` is
    column ``i``, row ``j`` of the k-th frame, as :class:`~medimg.io.volume.Volume` documents.
    """
    block: npt.NDArray[Any] = _read_block([frames], workers)[0]
    samples = frames[0].header.samples_per_pixel
    return block.transpose((2, 1, 0) + ((3,) if samples > 1 else ()))


def read_volumes(volumes: list[list[Frame]], workers: int | None = None) -> npt.NDArray[Any]:
    """Read the volumes of a 4D series (each a list of frames in slice order) into (columns, rows, n, t).

    One C-ordered (t, n, rows, columns) block, returned transposed (no copy): every file is read once, straight
    into its place, with the same threads as :func:`read_frames`. Single-sample images only.
    """
    if volumes[0][0].header.samples_per_pixel != 1:
        raise DicomReadError("a 4D series of colour images is not supported", volumes[0][0].path)
    return _read_block(volumes, workers).transpose(3, 2, 1, 0)


def _read_block(volumes: list[list[Frame]], workers: int | None) -> npt.NDArray[Any]:
    """(t, n, rows, columns[, samples]) for volumes of equally many frames of one size."""
    first = volumes[0][0]
    rows, columns, samples = first.rows, first.columns, first.header.samples_per_pixel
    out_dtype = output_dtype([f for v in volumes for f in v])
    shape = (len(volumes), len(volumes[0]), rows, columns) + ((samples,) if samples > 1 else ())
    _check_size(shape, out_dtype, first.path)
    out = np.empty(shape, dtype=out_dtype)

    # decode each multi-frame file once, however many of its frames we need
    by_file: dict[str, list[tuple[tuple[int, int], Frame]]] = defaultdict(list)
    for t, frames in enumerate(volumes):
        for k, f in enumerate(frames):
            by_file[f.path].append(((t, k), f))

    def one(path: str) -> None:
        try:
            read_file(path)
        except MedimgError:
            raise
        except BaseException as exc:  # see _decode_file: nothing foreign leaves the reader
            if _is_fatal(exc):
                raise
            raise DicomReadError(f"cannot read pixel data ({type(exc).__name__}: {exc})", path) from exc

    def read_file(path: str) -> None:
        items = by_file[path]
        h = items[0][1].header
        if h.mosaic is not None:
            image = _read_native(h, h.rows, h.columns) if _native_ok(h) else _decode_file(h)[0]
            tiles = unpack_mosaic(image, h.mosaic)
            for where, f in items:
                out[where] = _modality_lut(tiles[f.index or 0], f, out_dtype)
            return
        if _native_ok(h):
            where, f = items[0]
            out[where] = _modality_lut(_read_native(h, rows, columns), f, out_dtype)
            return
        block = _decode_file(h)
        for where, f in items:
            frame = block[f.index or 0]
            if frame.shape[:2] != (rows, columns):
                raise DicomReadError(
                    f"decoded frame is {frame.shape[:2]} but the header declares {rows} x {columns}", h.path
                )
            out[where] = _modality_lut(frame, f, out_dtype)

    n = workers or min(4, (os.cpu_count() or 1) + 1)
    paths = list(by_file)
    if n <= 1 or len(paths) < 8:
        for p in paths:
            one(p)
    else:
        # numpy reads and decoders release the GIL, so threads overlap I/O and decoding
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(one, paths))
    return out
