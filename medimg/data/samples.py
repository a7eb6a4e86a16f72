"""Sample data that ships inside installed packages: nothing here downloads anything.

* pydicom's test files (``pydicom.data``) and the pydicom-data package: real DICOM, including a messy folder
  (``dicomdirtests``) with localizers, uneven gaps and radial slices, and an enhanced multi-frame CT.
* nilearn's MNI152 2009 template (T1 and grey/white-matter maps), shipped inside the nilearn wheel.
* real scanner files shipped in nibabel's wheel (``nibabel/nicom/tests/data``): a Siemens DTI series stored as
  mosaics (b=0 and b=1000) and a Philips enhanced multi-frame MPRAGE.
"""

from __future__ import annotations

from pathlib import Path

from medimg.errors import MedimgError

__all__ = ["SCANNER_FILES", "messy_dicom_folder", "mni152_paths", "pydicom_file", "pydicom_folder", "scanner_files"]

#: The real scanner files nibabel ships (gzipped DICOM), by what they are.
SCANNER_FILES = {
    "siemens_dwi_b0": "siemens_dwi_0.dcm.gz",  # Siemens DTI mosaic, 896 x 896 = 48 tiles of 128 x 128, b=0
    "siemens_dwi_b1000": "siemens_dwi_1000.dcm.gz",  # the same series' b=1000 volume
    "philips_mprage": "philips_mprage.dcm.gz",  # Philips enhanced MR multi-frame, 176 x 256 x 256
}


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


def scanner_files(names: list[str], dest: str | Path) -> Path:
    """Decompress the named :data:`SCANNER_FILES` into the folder ``dest`` (created) and return it."""
    import gzip
    import shutil

    import nibabel

    base = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = base / SCANNER_FILES[name]
        if not src.is_file():
            raise MedimgError(f"nibabel's sample {src.name} is missing; reinstall nibabel", src)
        with gzip.open(src, "rb") as fin, open(folder / src.name.removesuffix(".gz"), "wb") as fout:
            shutil.copyfileobj(fin, fout)
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


def messy_dicom_folder(dest: str | Path, *, with_mni_series: bool = True) -> Path:
    """Build a realistic "hospital export" under ``dest``: pydicom's sample tree (several patients, localizers,
    a CT with a hole, radial MR, a DICOMDIR, non-DICOM files) plus, optionally, the MNI152 T1 written by medimg
    as an oblique-free axial MR series with shuffled file names. Returns ``dest``."""
    import shutil

    import numpy as np

    from medimg.io import load
    from medimg.io.dicom.write import write_series

    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(pydicom_folder("dicomdirtests"), dest / "pydicom_samples")
    shutil.copy(pydicom_file("eCT_Supplemental.dcm"), dest / "enhanced_ct.dcm")
    (dest / "notes.txt").write_text("export log: not an image\n")
    if with_mni_series:
        t1 = load(mni152_paths()["t1"])
        arr = np.asarray(t1.array, dtype=np.float64)
        write_series(
            t1,
            dest / "mni152_t1",
            modality="MR",
            series_description="T1 MPRAGE (MNI152 template)",
            series_number=301,
            rescale=(max(float(arr.max()) / 30000.0, 1e-6), 0.0),
            shuffle_names=True,
        )
    return dest
