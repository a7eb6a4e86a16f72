"""Test support: write a known volume as Siemens mosaic files, the way the scanner does.

Each volume becomes one MR image whose tiles are its slices, row by row, in a square grid; the CSA image header
(0029,1010) carries ``NumberOfImagesInMosaic``, ``SliceNormalVector`` (its sign tells the stacking order),
``B_value`` and ``DiffusionGradientDirection``; Image Position (Patient) is written for the *whole* tiled image, as
the scanner writes it (the first tile's position shifted by half the mosaic-minus-tile size). The CSA encoder is
the inverse of ``nibabel.nicom.csareader`` (CSA2, "SV10").
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from medimg.io import Volume
from medimg.io.orientation import ras_to_lps_affine


def csa2(fields: dict[str, tuple[str, Sequence[str]]]) -> bytes:
    """Encode CSA2 tags: name -> (VR, item strings)."""
    out = bytearray(b"SV10\x04\x03\x02\x01" + struct.pack("<2I", len(fields), 77))
    for name, (vr, items) in fields.items():
        out += struct.pack("<64si4s3i", name.encode(), len(items), vr.encode(), 0, len(items), 77)
        for item in items:
            raw = item.encode() + b"\x00"
            out += struct.pack("<4i", len(raw), len(raw), 77, len(raw)) + raw + b"\x00" * (-len(raw) % 4)
    return bytes(out)


def write_mosaics(
    volume: Volume,
    folder: Path,
    *,
    n_volumes: int = 1,
    b_values: Sequence[float] | None = None,
    gradients_lps: Sequence[Sequence[float] | None] | None = None,
    descending: bool = False,
    csa: bool = True,
    n_tiles_override: int | None = None,
    drop_tile: tuple[int, int] | None = None,
    matrix_text: str | None = None,
    pad: int = 0,
    seed: int = 0,
) -> list[Path]:
    """Write ``n_volumes`` mosaics of ``volume`` (volume t has ``t`` added to the voxels, so each is distinct).

    Args:
        descending: stack the tiles from the highest slice down (CSA SliceNormalVector opposite to row x column).
        csa: False leaves out the CSA image header (a badly anonymised file).
        n_tiles_override: write a wrong NumberOfImagesInMosaic.
        drop_tile: (volume, tile) to blank out of the CSA count -- that volume has one slice fewer.
        matrix_text: CSA AcquisitionMatrixText instead of the tile size (e.g. partial Fourier ``"12*24"``).
        pad: padding pixels on the mosaic's right and bottom (a mosaic larger than its tile grid).
    """
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(volume.array)
    ni, nj, nk = arr.shape
    a = ras_to_lps_affine(volume.affine)
    dx, dy, dz = (float(np.linalg.norm(a[:3, c])) for c in range(3))
    row_dir, col_dir, normal = a[:3, 0] / dx, a[:3, 1] / dy, a[:3, 2] / dz
    cross = np.cross(row_dir, col_dir)
    assert np.allclose(cross, normal, atol=1e-6), "the volume's k axis must be row x column (a right-handed stack)"
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for t in range(n_volumes):
        n_tiles = nk
        slices = [arr[:, :, k] + t for k in range(nk)]
        first = a[:3, 3]
        csa_normal = normal
        if descending:
            slices = slices[::-1]
            first = a[:3, 3] + (nk - 1) * dz * normal
            csa_normal = -normal
        if drop_tile is not None and drop_tile[0] == t:
            slices = slices[: drop_tile[1]] + slices[drop_tile[1] + 1 :]
            n_tiles = nk - 1
            if drop_tile[1] == 0:
                first = first + dz * csa_normal
        side = math.ceil(math.sqrt(n_tiles))
        mosaic = np.zeros((side * nj + pad, side * ni + pad), dtype=np.int16)
        for k, s in enumerate(slices):
            r, c = divmod(k, side)
            mosaic[r * nj : (r + 1) * nj, c * ni : (c + 1) * ni] = s.T
        rows, columns = mosaic.shape
        ipp = first - col_dir * dy * (rows - nj) / 2 - row_dir * dx * (columns - ni) / 2
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = folder / f"MOSAIC{t:04d}.dcm"
        ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID = "PHANTOM^MOSAIC", "PHANTOM"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality, ds.Manufacturer = "MR", "SIEMENS"
        ds.SeriesDescription, ds.SeriesNumber = "ep2d_diff_mosaic", 7
        ds.InstanceNumber = t + 1
        ds.AcquisitionNumber = t + 1
        ds.AcquisitionTime = f"12{t // 60:02d}{t % 60:02d}.000000"
        diffusion = b_values is not None
        ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION" if diffusion else "M", "ND", "MOSAIC"]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.PixelSpacing = [f"{dy:.8f}", f"{dx:.8f}"]
        ds.SliceThickness = f"{dz * 0.8:.6f}"
        ds.SpacingBetweenSlices = f"{dz:.6f}"
        ds.Rows, ds.Columns = mosaic.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        fields: dict[str, tuple[str, Sequence[str]]] = {
            "NumberOfImagesInMosaic": ("US", [str(n_tiles_override or n_tiles)]),
            "SliceNormalVector": ("FD", [f"{v:.8f}" for v in csa_normal]),
            "AcquisitionMatrixText": ("SH", [matrix_text or f"{nj}p*{ni}"]),
        }
        if diffusion:
            fields["B_value"] = ("IS", [f"{b_values[t]:g}"])
            g = None if gradients_lps is None else gradients_lps[t]
            if g is not None:
                fields["DiffusionGradientDirection"] = ("FD", [f"{v:.8f}" for v in g])
        if csa:
            block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
            block.add_new(0x10, "OB", csa2(fields))
        ds.PixelData = mosaic.tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
