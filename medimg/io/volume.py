"""The :class:`Volume` type: voxels, their geometry and de-identified metadata, travelling together."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimg.errors import ImageValueError, MedimgError
from medimg.io.atomic import atomic_path
from medimg.io.orientation import affine_axcodes

__all__ = ["Volume", "is_nifti", "read_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | os.PathLike[str]) -> bool:
    """True for a name :func:`medimg.load` reads as NIfTI: ``.nii`` or ``.nii.gz``, in any letter case."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


#: Largest difference (mm) between two affines' entries for them to describe the same voxel grid.
GRID_TOLERANCE_MM = 1e-3


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D (or 3D + channels/time) image with its geometry.

    The contract, stated once:

    * ``array`` axis order is **(i, j, k[, t])** with ``i`` the DICOM *column* index (along the first direction
      cosine of Image Orientation (Patient) (0020,0037)), ``j`` the DICOM *row* index, and ``k`` the slice index,
      slices sorted by increasing position along the slice normal ``row_dir x col_dir``. This is nibabel's and
      dcm2niix's voxel order, and MONAI's once a channel axis is put in front.
    * ``affine`` is a 4x4 ``float64`` matrix mapping a voxel index ``(i, j, k, 1)`` to **RAS+ millimetres**,
      exactly like ``nibabel.Nifti1Image.affine``. Index ``(0, 0, 0)`` is the *centre* of the first voxel
      (the centre of the first transmitted pixel of the slice with the lowest position along the normal).
    * ``spacing`` is derived from ``affine`` (column norms), in the same axis order as ``array``, in mm.
    * ``meta`` holds de-identified descriptive metadata only (modality, series UID, description, window
      presets, problems found, ...): never a patient's name, ID, birth date or an institution.

    CT voxels are Hounsfield units (the modality LUT is already applied). Other modalities keep the scale the
    modality LUT gives (MR: the stored values, unless the file declares a rescale).
    """

    array: npt.NDArray[Any]
    affine: npt.NDArray[np.float64]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise MedimgError(f"a Volume affine must be 4x4, got shape {affine.shape}")
        if self.array.ndim < 3:
            raise MedimgError(f"a Volume array must have at least 3 axes (i, j, k), got shape {self.array.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (i, j, k): the lengths of the affine's first three columns."""
        s = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(s[0]), float(s[1]), float(s[2]))

    @property
    def orientation(self) -> str:
        """Axis codes of the array axes, e.g. ``"LPS"`` for a DICOM axial series (see :func:`affine_axcodes`)."""
        return affine_axcodes(self.affine)

    @property
    def modality(self) -> str | None:
        value = self.meta.get("modality")
        return None if value is None else str(value)

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing=({spacing}) mm, "
            f"orientation={self.orientation}, modality={self.modality})"
        )

    def to_nifti(self) -> Any:
        """This volume as a ``nibabel.Nifti1Image`` (sform and qform set to the affine, units mm)."""
        import nibabel as nib

        img = nib.Nifti1Image(np.asanyarray(self.array), self.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.set_sform(self.affine, code=1)  # 1 = scanner anatomical coordinates
        img.set_qform(self.affine, code=1)
        descrip = str(self.meta.get("modality", ""))[:79]
        img.header["descrip"] = descrip.encode("ascii", "replace")
        return img

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the volume as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically; returns the path written.

        ``medimg.io.load`` of the written file gives back the same array (same dtype) and affine.
        """
        import nibabel as nib

        path = Path(path)
        if not path.name.endswith(NIFTI_SUFFIXES):
            raise MedimgError("a Volume is saved as NIfTI: use a .nii or .nii.gz file name", path)
        with atomic_path(path) as tmp:
            nib.save(self.to_nifti(), tmp)
        return path


def read_nifti(path: str | os.PathLike[str], *, allow_nonfinite: bool = False) -> Volume:
    """Read a NIfTI-1/2 file into a :class:`Volume` (affine from the sform, else the qform, as nibabel does).

    Integer data without scaling keeps its dtype; scaled data (``scl_slope``/``scl_inter``) is returned as
    floating point with the scaling applied.

    Raises:
        ImageValueError: the voxels hold NaN or infinite values (pass ``allow_nonfinite=True`` to accept them,
            e.g. for statistical maps).
        MedimgError: the file is not readable NIfTI (truncated, absurd dimensions).
    """
    import nibabel as nib

    try:
        img = nib.load(os.fspath(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise MedimgError(f"not a NIfTI image (nibabel read it as {type(img).__name__})", path)
        n_voxels = int(np.prod(img.shape, dtype=np.float64))
        if n_voxels > 2**34:
            raise MedimgError(f"header declares absurd dimensions {img.shape}; the file is corrupt", path)
        array = np.asanyarray(img.dataobj)
    except MedimgError:
        raise
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise MedimgError(f"cannot read NIfTI ({type(exc).__name__}: {exc}); is the file complete?", path) from exc
    if array.ndim < 3:
        array = array.reshape(array.shape + (1,) * (3 - array.ndim))
    if array.dtype.kind == "f" and not allow_nonfinite:
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise ImageValueError(f"{bad} voxels are NaN or infinite; fix the file or pass allow_nonfinite=True", path)
    meta: dict[str, Any] = {"source_format": "nifti"}
    descrip = img.header.get("descrip")
    if descrip is not None:
        text = bytes(np.asarray(descrip).tobytes()).split(b"\0")[0].decode("ascii", "replace").strip()
        if text in {"CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA"}:
            meta["modality"] = text
    return Volume(array=array, affine=np.asarray(img.affine, dtype=np.float64), meta=meta)
