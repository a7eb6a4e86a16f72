"""Siemens mosaics: unpacked to the volume they tile, with the affine dcm2niix computes; or refused with the reason.

Written mosaics (tests/mosaic_writer.py) come from known volumes, so the voxels and the affine are checked against
the truth *and* against dcm2niix; the real Siemens DTI files nibabel ships are checked against dcm2niix.
"""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from mosaic_writer import write_mosaics
from tests_support import assert_same_image, oblique_affine

from medimg.data.samples import scanner_files
from medimg.errors import DicomReadError
from medimg.io import load, scan

MOSAIC_CASES = [
    ((0, 0, 0), (1.8, 1.8, 3.0), False),  # axial, tiles bottom-up
    ((0, 0, 0), (1.8, 1.8, 3.0), True),  # axial, tiles top-down (CSA SliceNormalVector reversed)
    ((17, -23, 41), (2.0, 2.2, 2.5), False),  # oblique in all three axes
    ((90, 10, 0), (1.5, 1.5, 4.0), True),  # coronal-ish, descending
]


@pytest.mark.parametrize(("angles", "spacing", "descending"), MOSAIC_CASES)
def test_written_mosaic_unpacks_to_the_volume_and_matches_dcm2niix(
    angles, spacing, descending, phantom, tmp_path, dcm2niix
):
    truth = phantom(shape=(20, 24, 7), affine=oblique_affine(angles, spacing, (-30, 12, 40)))
    folder = tmp_path / "mosaic"
    assert len(write_mosaics(truth, folder, descending=descending)) == 1
    (series,) = scan(folder)
    assert series.shape == (20, 24, 7)  # 3 x 3 grid of 24-row x 20-column tiles, 7 tiles used
    volume = load(folder)
    np.testing.assert_array_equal(volume.array, truth.array)
    np.testing.assert_allclose(volume.affine, truth.affine, atol=1e-3)
    (ref,) = dcm2niix(folder)
    assert_same_image(volume, nib.load(ref))


def test_real_siemens_dti_mosaic_matches_dcm2niix(tmp_path, dcm2niix):
    folder = scanner_files(["siemens_dwi_b1000"], tmp_path / "dwi")
    volume = load(folder)
    assert volume.shape == (128, 128, 48)  # not 896 x 896 x 1
    assert volume.spacing == pytest.approx((1.796875, 1.796875, 3.0), abs=1e-4)
    (ref,) = dcm2niix(folder)
    assert_same_image(volume, nib.load(ref))


def test_real_philips_enhanced_mprage_matches_dcm2niix(tmp_path, dcm2niix):
    folder = scanner_files(["philips_mprage"], tmp_path / "mprage")
    volume = load(folder)
    (ref,) = dcm2niix(folder)
    assert_same_image(volume, nib.load(ref))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"csa": False}, r"without its CSA image header \(0029,1010\)"),
        ({"n_tiles_override": 17}, r"cannot hold 17 tiles in a 5 x 5 grid"),
        ({"n_tiles_override": 10}, r"AcquisitionMatrixText .24p\*20. does not match the 18 x 15 tiles"),
    ],
)
def test_damaged_mosaic_is_refused_naming_file_and_field(kwargs, match, phantom, tmp_path):
    (path,) = write_mosaics(phantom(shape=(20, 24, 7)), tmp_path / "bad", **kwargs)
    with pytest.raises(DicomReadError, match=match) as info:
        load(path)
    assert info.value.path == str(path)
    proc = subprocess.run(
        [sys.executable, "-m", "medimg", "convert", str(path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-written
