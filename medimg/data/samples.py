"""Sample data that ships inside installed packages: nothing here downloads anything.

* pydicom's test files (``pydicom.data``) and the pydicom-data package: real DICOM, including a messy folder
  (``dicomdirtests``) with localizers, uneven gaps and radial slices, and an enhanced multi-frame CT.
* nilearn's MNI152 2009 template (T1 and grey/white-matter maps), shipped inside the nilearn wheel.
"""

from __future__ import annotations

from pathlib import Path

from medimg.errors import MedimgError

__all__ = ["mni152_paths", "pydicom_file", "pydicom_folder"]


def pydicom_file(name: str) -> Path:
    """Path of a test file shipped with pydicom or pydicom-data, e.g. ``"CT_small.dcm"``."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        raise MedimgError(f"sample {name!r} is not installed (it comes with pydicom / pydicom-data)")
    return Path(path)


def pydicom_folder(name: str = "dicomdirtests") -> Path:
    """A folder of pydicom's test files, e.g. ``"dicomdirtests"`` (several patients, studies and series)."""
    folder = pydicom_file("CT_small.dcm").parent / name
    if not folder.is_dir():
        raise MedimgError(f"pydicom sample folder {name!r} not found", folder)
    return folder


def mni152_paths() -> dict[str, Path]:
    """The MNI152 2009 T1 template and its grey/white-matter probability maps, as shipped by nilearn."""
    import nilearn.datasets

    base = Path(nilearn.datasets.__file__).parent / "data"
    paths = {
        "t1": base / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "gm": base / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
        "wm": base / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    }
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise MedimgError(f"nilearn's MNI152 files are missing: {', '.join(missing)}; reinstall nilearn")
    return paths
