"""Siemens specifics: the CSA private headers and the mosaic format.

A Siemens *mosaic* (ImageType (0008,0008) contains ``MOSAIC``) stores the N slices of one volume as tiles of one
2D image, row by row, in a square grid of ``ceil(sqrt(N))`` tiles a side; most research fMRI, DWI and perfusion
is stored this way. Three facts are needed to unpack one, and the standard attributes give none of them right:

* the number of tiles: CSA image header ``NumberOfImagesInMosaic`` (fallback: private (0019,100A));
* the slice direction: CSA ``SliceNormalVector``, whose *sign* says in which order the tiles were stacked
  (the cross product of Image Orientation (Patient) (0020,0037) only gives the axis);
* the position of the first tile: Image Position (Patient) (0020,0032) of a mosaic is that of the top-left pixel
  of the whole tiled image as if it were one slice, not of the first tile; the correction is half the difference
  between the mosaic and the tile size along rows and columns (nibabel's ``MosaicWrapper.image_position`` and
  dcm2niix's ``nii_dicom.c`` document the same rule).

CSA headers are parsed with ``nibabel.nicom.csareader`` (a dependency already); only the arithmetic is here.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from medimg.errors import DicomReadError
from medimg.io.dicom.vendor_tags import private_value

__all__ = [
    "MosaicLayout",
    "csa_image_header",
    "csa_scalar",
    "csa_vector",
    "mosaic_layout",
    "mosaic_tile_positions",
    "private_value",
    "unpack_mosaic",
]

#: Private creator of the Siemens MR private group (0019,00xx).
SIEMENS_MR_HEADER = "SIEMENS MR HEADER"
#: (0019,100A) NumberOfImagesInMosaic, offset within the SIEMENS MR HEADER block.
N_MOSAIC_OFFSET = 0x0A


@dataclass(frozen=True)
class MosaicLayout:
    """How the tiles of one mosaic image are laid out.

    ``n_tiles`` slices, ``tiles_per_side`` tiles per mosaic row and column, each tile ``tile_rows`` x
    ``tile_columns`` pixels; the mosaic image itself is ``mosaic_rows`` x ``mosaic_columns``.
    """

    n_tiles: int
    tiles_per_side: int
    tile_rows: int
    tile_columns: int
    mosaic_rows: int
    mosaic_columns: int


def csa_image_header(ds: Dataset, path: str) -> dict[str, Any] | None:
    """The parsed CSA image header (0029,xx10) of ``ds``, or None when the file has none.

    Raises :class:`DicomReadError` when the element is there but cannot be parsed (damaged file).
    """
    with warnings.catch_warnings():  # nibabel.nicom warns on import that its *wrappers* are experimental
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import csareader

    try:
        csa: dict[str, Any] | None = csareader.get_csa_header(ds, "image")
    except Exception as exc:  # nibabel raises CSAReadError, struct.error, UnicodeDecodeError, ValueError ...
        raise DicomReadError(
            f"Siemens CSA image header (0029,1010) is damaged ({type(exc).__name__}: {exc})", path
        ) from exc
    return csa


def csa_scalar(csa: dict[str, Any] | None, name: str) -> Any:
    """The first item of CSA field ``name``, or None."""
    if csa is None:
        return None
    items = csa.get("tags", {}).get(name, {}).get("items") or []
    return items[0] if items else None


def csa_vector(csa: dict[str, Any] | None, name: str, n: int) -> tuple[float, ...] | None:
    """CSA field ``name`` as ``n`` finite floats, or None when absent or not ``n`` numbers."""
    if csa is None:
        return None
    items = csa.get("tags", {}).get(name, {}).get("items") or []
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(math.isfinite(v) for v in values):
        return None
    return values


def _tile_count(csa: dict[str, Any] | None, ds: Dataset) -> Any:
    n = csa_scalar(csa, "NumberOfImagesInMosaic")
    if n in (None, 0, ""):
        n = private_value(ds, 0x0019, SIEMENS_MR_HEADER, N_MOSAIC_OFFSET)
    return n


def mosaic_layout(ds: Dataset, csa: dict[str, Any] | None, rows: int, columns: int, path: str) -> MosaicLayout:
    """The tile layout of a mosaic image of ``rows`` x ``columns`` pixels; refuse a layout that does not fit.

    Raises:
        DicomReadError: the CSA image header is missing (the slice order cannot be known), the number of tiles is
            missing or not a positive integer, or the mosaic is not divisible into that many square-gridded tiles.
    """
    if csa is None:
        raise DicomReadError(
            "Siemens mosaic (ImageType MOSAIC) without its CSA image header (0029,1010): the number of tiles and "
            "the slice direction are unknown, refused (was the file anonymised with private tags removed?)",
            path,
        )
    raw = _tile_count(csa, ds)
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = 0
    if n <= 0:
        raise DicomReadError(
            f"Siemens mosaic without a valid number of tiles (CSA NumberOfImagesInMosaic / (0019,100A) = {raw!r})",
            path,
        )
    side = math.ceil(math.sqrt(n))
    # The tiles are the mosaic divided by the tile grid, by integer division: a mosaic may carry a few padding
    # pixels on its right and bottom (256 x 256 holding 7 x 7 tiles of 36), as dcm2niix reads it.
    layout = MosaicLayout(n, side, rows // side, columns // side, rows, columns)
    matrix = _acquired_matrix(csa)
    fits = layout.tile_rows > 0 and layout.tile_columns > 0
    too_small = matrix is not None and max(layout.tile_rows, layout.tile_columns) < max(matrix)
    if not fits or (too_small and (rows % side or columns % side)):
        raise DicomReadError(
            f"Siemens mosaic of {rows} x {columns} pixels cannot hold {n} tiles in a {side} x {side} grid "
            "(CSA NumberOfImagesInMosaic contradicts Rows (0028,0010) / Columns (0028,0011)); refused",
            path,
        )
    if too_small:
        text = csa_scalar(csa, "AcquisitionMatrixText")
        raise DicomReadError(
            f"CSA AcquisitionMatrixText {text!r} does not match the {layout.tile_rows} x {layout.tile_columns} "
            f"tiles that NumberOfImagesInMosaic = {n} implies for this {rows} x {columns} mosaic: the tiles would "
            "be smaller than the acquired matrix; refused",
            path,
        )
    return layout


def _acquired_matrix(csa: dict[str, Any]) -> tuple[int, int] | None:
    """CSA ``AcquisitionMatrixText`` (e.g. ``"128p*128"``, ``"45*90"``) as numbers: the *acquired* matrix.

    It is not the tile size: partial Fourier and reduced phase resolution acquire fewer lines than the image
    has (``45*90`` in 90 x 90 tiles), and interpolation doubles the image. What it does bound is the tile from
    below: a reconstructed tile is never smaller than the larger acquired dimension (the readout), so a wrong
    tile count, whose tiles come out smaller, is caught by it.
    """
    numbers = [int(v) for v in re.findall(r"\d+", str(csa_scalar(csa, "AcquisitionMatrixText") or ""))]
    return (numbers[0], numbers[1]) if len(numbers) == 2 and min(numbers) > 0 else None


def mosaic_slice_normal(iop: tuple[float, ...], csa: dict[str, Any] | None, path: str) -> npt.NDArray[np.float64]:
    """The unit slice normal of a mosaic in LPS+: the axis of ``row x column`` with the sign of CSA SliceNormalVector.

    Raises :class:`DicomReadError` when CSA ``SliceNormalVector`` is missing or not parallel to the normal of
    Image Orientation (Patient) (0020,0037).
    """
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    csa_normal = csa_vector(csa, "SliceNormalVector", 3)
    if csa_normal is None:
        raise DicomReadError(
            "Siemens mosaic without CSA SliceNormalVector: the order of its tiles along the slice axis is unknown",
            path,
        )
    dot = float(np.dot(normal, csa_normal) / (np.linalg.norm(csa_normal) or 1.0))
    if abs(abs(dot) - 1.0) > 1e-3:
        raise DicomReadError(
            f"CSA SliceNormalVector {list(csa_normal)} is not perpendicular to Image Orientation (Patient) "
            "(0020,0037); the mosaic's geometry is contradictory, refused",
            path,
        )
    return normal if dot > 0 else -normal


def mosaic_tile_positions(
    ipp: tuple[float, float, float],
    iop: tuple[float, ...],
    pixel_spacing: tuple[float, float],
    layout: MosaicLayout,
    normal: npt.NDArray[np.float64],
    slice_step: float,
) -> npt.NDArray[np.float64]:
    """(n_tiles, 3) LPS+ positions of the first pixel of each tile.

    Args:
        ipp: Image Position (Patient) (0020,0032) as written in the mosaic file (refers to the whole image).
        iop: Image Orientation (Patient) (0020,0037).
        pixel_spacing: Pixel Spacing (0028,0030), (row spacing, column spacing) mm.
        layout: the tile layout.
        normal: unit slice normal with the CSA sign (:func:`mosaic_slice_normal`); tile k sits ``k * slice_step``
            mm along it from tile 0.
        slice_step: distance between tile centres, mm (Spacing Between Slices (0018,0088)).
    """
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    shift_rows = (layout.mosaic_rows - layout.tile_rows) / 2.0  # pixels down the columns
    shift_cols = (layout.mosaic_columns - layout.tile_columns) / 2.0  # pixels along the rows
    first = np.asarray(ipp, float) + col * pixel_spacing[0] * shift_rows + row * pixel_spacing[1] * shift_cols
    return first + np.outer(np.arange(layout.n_tiles) * slice_step, normal)


def unpack_mosaic(image: npt.NDArray[Any], layout: MosaicLayout) -> npt.NDArray[Any]:
    """(mosaic_rows, mosaic_columns[, samples]) -> (n_tiles, tile_rows, tile_columns[, samples]), tiles row by row
    (padding pixels on the right and bottom of the tile grid are dropped)."""
    side, tr, tc = layout.tiles_per_side, layout.tile_rows, layout.tile_columns
    rest = image.shape[2:]
    image = image[: side * tr, : side * tc]  # drop the padding beyond the tile grid
    blocks = image.reshape(side, tr, side, tc, *rest).swapaxes(1, 2).reshape(side * side, tr, tc, *rest)
    return blocks[: layout.n_tiles]
