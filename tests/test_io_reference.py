"""medimg.io.load against independent references: dcm2niix (PyPI) and SimpleITK.

Both sides are brought to the closest canonical (RAS) orientation with nibabel, then the affines must agree
within 1e-3 mm and the voxels must be identical (after the modality LUT on both sides).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from tests_support import assert_same_image, oblique_affine

from medimg.data.samples import pydicom_file, pydicom_folder
from medimg.errors import SeriesGeometryError
from medimg.io import Volume, load
from medimg.io.dicom.write import write_series


def _copy(src: Path | list[Path], dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in [src] if isinstance(src, Path) else src:
        shutil.copy(f, dst / f.name)
    return dst


@pytest.mark.parametrize(
    "sample",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "eCT_Supplemental.dcm",
    ],
)
def test_pydicom_samples_match_dcm2niix(sample, tmp_path, dcm2niix):
    folder = _copy(pydicom_file(sample), tmp_path / "in")
    (ref,) = dcm2niix(folder)
    assert_same_image(load(folder / sample), nib.load(ref))


def test_pydicom_ct_folder_matches_dcm2niix_and_simpleitk(tmp_path, dcm2niix):
    # dicomdirtests/98892001/CT5N: 5 axial CT slices written in reverse position order
    folder = _copy(sorted((pydicom_folder() / "98892001" / "CT5N").iterdir()), tmp_path / "ct5n")
    volume = load(folder)
    (ref,) = dcm2niix(folder)
    assert_same_image(volume, nib.load(ref))
    assert_same_as_simpleitk(volume, folder)


def assert_same_as_simpleitk(volume: Volume, folder: Path) -> None:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    # SimpleITK: array is (k, j, i), direction/origin in LPS
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    direction = np.array(img.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    ras = np.diag([-1, -1, 1, 1]) @ lps
    assert_same_image(volume, nib.Nifti1Image(arr.astype(np.float64), ras))


ORIENTATIONS = [
    ((0, 0, 0), (0.8, 0.8, 2.0)),  # axial
    ((90, 0, 0), (0.5, 0.6, 3.0)),  # coronal-ish
    ((0, 90, 0), (1.0, 1.0, 1.5)),  # sagittal-ish
    ((17, -23, 41), (0.7, 0.9, 2.5)),  # oblique in all three axes
    ((180, 0, 0), (1.0, 1.0, 1.0)),  # head-first vs feet-first flip
]


@pytest.mark.parametrize(("angles", "spacing"), ORIENTATIONS)
def test_written_series_match_dcm2niix_and_simpleitk(angles, spacing, phantom, tmp_path, dcm2niix):
    truth = phantom(affine=oblique_affine(angles, spacing, (-30, 12, 40)))
    folder = tmp_path / "series"
    write_series(truth, folder, modality="CT", rescale=(1.0, -1024.0), shuffle_names=True)
    volume = load(folder)
    np.testing.assert_array_equal(volume.array, truth.array)
    np.testing.assert_allclose(volume.affine, truth.affine, atol=1e-4)
    (ref,) = dcm2niix(folder)
    assert_same_image(volume, nib.load(ref))
    assert_same_as_simpleitk(volume, folder)


def test_two_series_in_one_folder_are_kept_apart(phantom, tmp_path):
    folder = tmp_path / "mixed"
    a = phantom(shape=(16, 16, 6), affine=oblique_affine((0, 0, 0), (1, 1, 2), (0, 0, 0)), seed=1)
    b = phantom(shape=(12, 14, 5), affine=oblique_affine((0, 90, 0), (1, 1, 3), (5, 5, 5)), seed=2)
    write_series(a, folder / "x", series_number=1, shuffle_names=True, seed=1)
    write_series(b, folder / "x", series_number=2, shuffle_names=True, seed=2)  # same folder, names interleave
    from medimg.errors import SeriesSelectionError
    from medimg.io import scan

    found = scan(folder)
    assert [s.shape for s in found] == [(16, 16, 6), (12, 14, 5)]
    with pytest.raises(SeriesSelectionError, match="2 series found"):
        load(folder)
    got = load(folder, series=found[1].key)
    np.testing.assert_array_equal(got.array, b.array)
    np.testing.assert_allclose(got.affine, b.affine, atol=1e-4)


def test_pydicom_uneven_ct_is_refused_with_gaps_and_resampled_on_request(tmp_path):
    from medimg.errors import SeriesGeometryError

    folder = pydicom_folder() / "77654033" / "CT2"
    with pytest.raises(SeriesGeometryError, match=r"202\.5, 1\.25, 1\.25"):
        load(folder)
    v = load(folder, uneven="resample")
    assert v.spacing[2] == pytest.approx(1.25, abs=1e-3)
    assert v.shape[2] == 165  # 206.25 mm / 1.25 mm + 1, no averaged 68.3 mm spacing
    assert "resampled" in v.meta


def test_radial_mr_is_refused():
    from medimg.errors import SeriesGeometryError

    with pytest.raises(SeriesGeometryError, match="non_parallel"):
        load(pydicom_folder() / "98892003" / "MR700")


def test_enhanced_ct_frames_are_rescaled_on_the_slice_axis():
    v = load(pydicom_file("eCT_Supplemental.dcm"))
    assert v.shape == (512, 512, 2)
    # a DERIVED perfusion map whose Pixel Value Transformation says Rescale Type "US": not claimed as HU
    assert v.meta["value_unit"] == "unspecified (Rescale Type US)"
    assert load(pydicom_file("CT_small.dcm")).meta["value_unit"] == "HU"
    assert v.array.min() == -1024  # Rescale Intercept from the Pixel Value Transformation functional group
    assert v.spacing == pytest.approx((0.388672, 0.388672, 10.0), abs=1e-4)


def test_gantry_tilt_is_resampled_onto_the_true_grid(tmp_path):
    # A smooth CT phantom written with a 12 degree tilt: slice k is shifted in y by k * step * tan(12).
    shape, spacing, tilt = (40, 40, 8), (1.0, 1.0, 2.0), 12.0
    ii, jj, kk = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    affine = np.diag([*spacing, 1.0])

    def field(x, y, z):
        return np.rint(500 * np.sin(x / 7) + 400 * np.cos(y / 9) + 30 * z).astype(np.int16)

    shift_mm = np.arange(shape[2]) * spacing[2] * np.tan(np.radians(tilt))
    # slice k's first pixel sits shift_k mm anterior (LPS y = -shift_k), so its pixel (i, j) lies at RAS
    # (i, j + shift_k, 2k): the acquired slice samples the field there
    acquired = field(ii, jj + shift_mm[kk.astype(int)], kk * 2.0)
    positions = [[0.0, -s, 2.0 * k] for k, s in enumerate(shift_mm)]
    folder = tmp_path / "tilt"
    write_series(Volume(acquired, affine), folder, modality="CT", positions_lps=positions)
    from medimg.io import scan

    (series,) = scan(folder)
    (problem,) = [p for p in series.problems if p.code == "gantry_tilt"]
    assert "12.00 degrees" in problem.detail
    v = load(folder)
    assert v.meta["gantry_tilt_deg"] == pytest.approx(tilt, abs=0.01)
    np.testing.assert_allclose(v.affine, affine, atol=1e-4)
    truth = field(ii, jj, kk * 2.0).astype(np.float32)
    inner = (slice(None), slice(4, None), slice(None))  # rows the shift brought into view in every slice
    assert np.abs(v.array[inner] - truth[inner]).max() < 15  # linear interpolation of a smooth field
    with pytest.raises(SeriesGeometryError, match="tilt"):
        load(folder, tilt="error")


@pytest.mark.parametrize(
    "sample",
    ["MR_small_jpeg_ls_lossless.dcm", "693_UNCI.dcm", "693_J2KR.dcm", "MR2_UNCI.dcm", "MR2_J2KR.dcm",
     "MR_small_implicit.dcm", "MR_small_expb.dcm"],
)  # fmt: skip
def test_more_samples_and_transfer_syntaxes_match_dcm2niix(sample, tmp_path, dcm2niix):
    folder = _copy(pydicom_file(sample), tmp_path / "in")
    (ref,) = dcm2niix(folder)
    ours = nib.as_closest_canonical(load(folder / sample).to_nifti())
    theirs = nib.as_closest_canonical(nib.load(ref))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    # MR2 carries Rescale Slope 3.774: ours is float32, dcm2niix's scl_slope is applied in float64
    np.testing.assert_allclose(np.asarray(ours.dataobj, dtype=np.float64), theirs.get_fdata(), rtol=1e-6, atol=1e-3)


def test_deflate_decodes_like_pydicom():
    import pydicom

    path = pydicom_file("image_dfl.dcm")  # Deflated Explicit VR Little Endian (dcm2niix writes nothing for it)
    np.testing.assert_array_equal(load(path).array[:, :, 0].T, pydicom.dcmread(path).pixel_array)


def test_undecodable_jpeg_names_the_syntax():
    from medimg.errors import DicomReadError

    # 12-bit JPEG Extended: neither Pillow nor the installed pylibjpeg plugin decodes this sample
    with pytest.raises(DicomReadError, match="JPEG Extended"):
        load(pydicom_file("JPEG-lossy.dcm"))


def test_zero_pixel_spacing_is_reported_not_used():
    from medimg.io import scan

    (series,) = scan(pydicom_file("RG1_UNCI.dcm"))
    assert any(p.code == "no_geometry" for p in series.problems)
    v = load(pydicom_file("RG1_UNCI.dcm"))
    assert v.spacing[:2] == (1.0, 1.0) and np.linalg.det(v.affine) != 0
