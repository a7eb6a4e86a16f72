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

__all__ = ["write_series"]

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
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    a = ras_to_lps_affine(volume.affine)
    dx, dy = np.linalg.norm(a[:3, 0]), np.linalg.norm(a[:3, 1])
    row_dir, col_dir = a[:3, 0] / dx, a[:3, 1] / dy
    arr = np.asarray(volume.array)
    if arr.ndim != 3:
        raise MedimgError(f"write_series needs a 3D array, got shape {arr.shape}")
    slope, intercept = rescale
    stored = np.rint((arr.astype(np.float64) - intercept) / slope)
    if stored.min() < -32768 or stored.max() > 32767:
        raise MedimgError("values do not fit 16-bit signed storage with this rescale")
    stored16: npt.NDArray[np.int16] = stored.astype(np.int16)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    n = arr.shape[2]
    positions = (
        np.asarray(positions_lps, dtype=float)
        if positions_lps is not None
        else np.array([(a @ np.array([0.0, 0.0, k, 1.0]))[:3] for k in range(n)])
    )
    if positions.shape != (n, 3):
        raise MedimgError(f"positions_lps must be ({n}, 3), got {positions.shape}")
    rng = random.Random(seed)
    names = [f"IM{k:05d}.dcm" for k in range(n)]
    if shuffle_names:
        names = [f"{rng.getrandbits(40):010x}" for _ in range(n)]
    order = list(range(n))
    if shuffle_names:
        rng.shuffle(order)
    thickness = float(np.linalg.norm(a[:3, 2]))
    written: list[Path] = []
    for k in order:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(_SOP_CLASS.get(modality, _SOP_CLASS["MR"]))
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = folder / names[k]
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = "PHANTOM^MEDIMG"
        ds.PatientID = "PHANTOM"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.PixelSpacing = [f"{dy:.8f}", f"{dx:.8f}"]  # (row spacing, column spacing)
        ds.SliceThickness = f"{thickness:.6f}"
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[0])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(stored16[:, :, k].T).tobytes()
        if transfer_syntax is not None:
            ds.compress(transfer_syntax, encoding_plugin="pydicom" if transfer_syntax.endswith("5") else "")
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written
