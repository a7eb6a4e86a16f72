"""medimg's DICOM SEG and Parametric Map read by an independent toolkit: dcmqi (DCMTK-based; the reader of 3D
Slicer's Quantitative Reporting and the Imaging Data Commons), its ``segimage2itkimage`` and ``paramap2itkimage``
converting each object to NIfTI, held against medimg's own volume voxel for voxel, affine included.

The Parametric Map case is the one a new user hit: dcmqi 1.5.7 died on medimg's map (no Frame Anatomy
functional group) and, once past that, read it upside down (frames not in slice order); see
:mod:`medimg.io.derived.pm_readers`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from tests_support import oblique_affine

from medimg.io import Volume, load
from medimg.io.derived import write_seg
from medimg.io.derived.parametric_map import write_parametric_map
from medimg.io.dicom.write import write_series

SHAPE = (20, 24, 9)
BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
EXTRA = {"PatientID": "P1", "PatientName": "DOE^JANE", "StudyID": "1", "AccessionNumber": "A1",
         "StudyDate": "20260101", "StudyTime": "120000", "ReferringPhysicianName": "", "PatientBirthDate": "19700101",
         "PatientSex": "F"}  # fmt: skip
AFFINES = {
    "axial": np.array([[0.8, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 2.0, 5], [0, 0, 0, 1]]),
    "oblique": oblique_affine((20, -15, 30), (0.8, 0.9, 2.5), (10, -20, 5)),
}


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(BIN / name)
    if not Path(exe).exists():
        pytest.skip(f"dcmqi's {name} is not installed (pip dcmqi, pinned in requirements-dev.txt)")
    return exe


def _run(tool: str, dcm: Path, out: Path) -> None:
    out.mkdir()
    proc = subprocess.run([_tool(tool), "--inputDICOM", str(dcm), "--outputDirectory", str(out), "-t", "nifti"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, f"{tool} exit {proc.returncode}: {proc.stdout[-800:]} {proc.stderr[-800:]}"


@pytest.fixture(params=sorted(AFFINES))
def source(request, tmp_path):
    rng = np.random.default_rng(4)
    image = Volume(rng.integers(0, 1000, size=SHAPE).astype(np.int16), AFFINES[request.param])
    write_series(image, tmp_path / "src", shuffle_names=True, extra=EXTRA)
    return tmp_path / "src", load(tmp_path / "src")


def test_dcmqi_reads_medimg_seg_exactly(source, tmp_path):
    folder, image = source
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[2:8, 3:9, 1:5] = 1
    mask[10:15, 12:20, 4:9] = 2
    mask[0, 0, 0] = 1  # the first voxel: catches a flipped axis or an off-by-one slice
    seg = write_seg(Volume(mask, image.affine), folder, tmp_path / "seg.dcm", labels={1: "liver", 2: "spleen"})
    _run("segimage2itkimage", seg, tmp_path / "dcmqi")
    for label in (1, 2):
        theirs = nib.load(tmp_path / "dcmqi" / f"{label}.nii.gz")
        np.testing.assert_array_equal(np.asarray(theirs.dataobj) > 0, mask == label)
        np.testing.assert_allclose(theirs.affine, image.affine, atol=1e-4)


def test_dcmqi_reads_medimg_parametric_map_exactly(source, tmp_path):
    folder, image = source
    heat = Volume(np.random.default_rng(7).random(SHAPE).astype(np.float32), image.affine)
    pm = write_parametric_map(heat, folder, tmp_path / "pm.dcm", method="gradcam", label=1, layer="enc.3")
    _run("paramap2itkimage", pm, tmp_path / "dcmqi")
    theirs = nib.load(tmp_path / "dcmqi" / "pmap.nii.gz")
    np.testing.assert_array_equal(np.asarray(theirs.dataobj, dtype=np.float32), heat.array)
    np.testing.assert_allclose(theirs.affine, image.affine, atol=1e-4)
