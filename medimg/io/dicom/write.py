"""Writing a :class:`Volume` as a classic single-frame DICOM series (one file per slice).

Used to make realistic test and demo data (an MR series from the MNI152 template, phantoms with oblique
orientations, gaps or tilt) and by the benchmarks. The files are valid Part 10 objects (MR Image Storage or
CT Image Storage), uncompressed Explicit VR Little Endian unless another transfer syntax is asked for, with
synthetic, non-identifying patient attributes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimg.errors import MedimgError
from medimg.io.orientation import ras_to_lps_affine
from medimg.io.volume import Volume

__all__ = ["file_names", "series_attributes", "slice_positions", "stored_values", "write_series"]

_SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def write_series(
    volume: Volume,
    folder: str | os.PathLike[str],
    *,
    modality: str = "MR",
    series_description: str = "medimg phantom",
    series_number: int = 1,
    series_uid: str | None = None,
    study_uid: str | None = None,
    positions_lps: Sequence[Sequence[float]] | None = None,
    rescale: tuple[float, float] = (1.0, 0.0),
    shuffle_names: bool = False,
    seed: int = 0,
    transfer_syntax: str | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``volume`` (integer voxels, shape (i, j, k)) as one DICOM file per slice ``k``.

    Args:
        volume: the voxels and RAS affine to encode. Its first two affine columns give Image Orientation
            (Patient) and Pixel Spacing; slice ``k`` is placed at ``affine @ (0, 0, k)`` unless ``positions_lps``
            gives each slice's Image Position (Patient) explicitly (to make gaps, tilt or duplicates).
        rescale: (slope, intercept) written as Rescale Slope/Intercept; stored = (value - intercept) / slope.
        shuffle_names: give files random names so that neither name nor write order tells slice order.
        transfer_syntax: e.g. ``pydicom.uid.RLELossless`` to write compressed data (encoded by pydicom).
        extra: additional top-level attributes by keyword (e.g. ``{"ImageType": [...]}``).
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    affine_lps = ras_to_lps_affine(volume.affine)
    arr = np.asarray(volume.array)
    if arr.ndim != 3:
        raise MedimgError(f"write_series needs a 3D array, got shape {arr.shape}")
    stored = stored_values(arr, rescale)
    n = arr.shape[2]
    positions = slice_positions(affine_lps, n, positions_lps)
    names, order = file_names(n, shuffle_names, seed)
    shared = series_attributes(affine_lps, arr.shape, rescale)
    shared.update(
        StudyInstanceUID=study_uid or generate_uid(),
        SeriesInstanceUID=series_uid or generate_uid(),
        FrameOfReferenceUID=generate_uid(),
        Modality=modality,
        SeriesDescription=series_description,
        SeriesNumber=series_number,
    )
    written: list[Path] = []
    for k in order:
        path = folder / names[k]
        ds = _slice_dataset(path, modality, {**shared, **(extra or {})}, k, positions[k], stored[:, :, k])
        if transfer_syntax is not None:
            ds.compress(transfer_syntax, encoding_plugin="pydicom" if transfer_syntax.endswith("5") else "")
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def stored_values(array: npt.NDArray[Any], rescale: tuple[float, float]) -> npt.NDArray[np.int16]:
    """The stored pixel values of ``array`` (i, j, k) for a (slope, intercept) modality LUT: same shape, int16.

    stored = round((value - intercept) / slope); a value outside 16-bit signed storage is an error.
    """
    slope, intercept = rescale
    stored = np.rint((array.astype(np.float64) - intercept) / slope)
    if stored.min() < -32768 or stored.max() > 32767:
        raise MedimgError("values do not fit 16-bit signed storage with this rescale")
    return stored.astype(np.int16)


def slice_positions(
    affine_lps: npt.NDArray[np.float64], n: int, positions_lps: Sequence[Sequence[float]] | None = None
) -> npt.NDArray[np.float64]:
    """Image Position (Patient) of each of ``n`` slices: (n, 3) LPS mm.

    ``affine_lps`` (4, 4) maps voxel (i, j, k) to LPS mm; slice ``k`` sits at ``affine_lps @ (0, 0, k)`` unless
    ``positions_lps`` gives the (n, 3) positions explicitly.
    """
    positions = (
        np.asarray(positions_lps, dtype=float)
        if positions_lps is not None
        else np.array([(affine_lps @ np.array([0.0, 0.0, k, 1.0]))[:3] for k in range(n)])
    )
    if positions.shape != (n, 3):
        raise MedimgError(f"positions_lps must be ({n}, 3), got {positions.shape}")
    return positions


def file_names(n: int, shuffle: bool, seed: int = 0) -> tuple[list[str], list[int]]:
    """File name of each of ``n`` slices and the order to write them in.

    Unshuffled: ``IM00000.dcm``... written in slice order. Shuffled: random hex names, written in a random
    order (both from ``seed``), so that neither name nor write order tells slice order.
    """
    rng = random.Random(seed)
    if not shuffle:
        return [f"IM{k:05d}.dcm" for k in range(n)], list(range(n))
    names = [f"{rng.getrandbits(40):010x}" for _ in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    return names, order


def series_attributes(
    affine_lps: npt.NDArray[np.float64], shape: tuple[int, ...], rescale: tuple[float, float]
) -> dict[str, Any]:
    """Attributes every slice shares, by keyword: synthetic patient, geometry and pixel description.

    ``affine_lps`` (4, 4): its first two columns give Image Orientation (Patient) (0020,0037) and Pixel Spacing
    (0028,0030), its third Slice Thickness (0018,0050); ``shape`` (i, j, k): Columns = i, Rows = j.
    """
    dx, dy = np.linalg.norm(affine_lps[:3, 0]), np.linalg.norm(affine_lps[:3, 1])
    row_dir, col_dir = affine_lps[:3, 0] / dx, affine_lps[:3, 1] / dy
    slope, intercept = rescale
    return {
        "PatientName": "PHANTOM^MEDIMG",
        "PatientID": "PHANTOM",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "ImageOrientationPatient": [f"{v:.8f}" for v in (*row_dir, *col_dir)],
        "PixelSpacing": [f"{dy:.8f}", f"{dx:.8f}"],  # (row spacing, column spacing)
        "SliceThickness": f"{float(np.linalg.norm(affine_lps[:3, 2])):.6f}",
        "Rows": int(shape[1]),
        "Columns": int(shape[0]),
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 1,
        "RescaleSlope": f"{slope:g}",
        "RescaleIntercept": f"{intercept:g}",
    }


def _slice_dataset(
    path: Path,
    modality: str,
    attributes: dict[str, Any],
    k: int,
    position: npt.NDArray[np.float64],
    stored: npt.NDArray[np.int16],
) -> Any:
    """The Part 10 dataset of slice ``k``: ``attributes``, its own SOP Instance UID, Instance Number and Image
    Position (Patient) (``position``, 3 LPS mm), and ``stored`` (i, j) as Pixel Data (rows = j)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(_SOP_CLASS.get(modality, _SOP_CLASS["MR"]))
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(stored.T).tobytes()
    return ds
