"""Bad input gets a MedimgError subclass whose message names the file and says what is wrong."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from tests_support import oblique_affine

from medimg import errors
from medimg.data.samples import pydicom_file
from medimg.io import Volume, load, scan
from medimg.io.dicom.write import write_series


def _expect(exc_type, path, match):
    with pytest.raises(exc_type, match=match) as info:
        load(path)
    assert isinstance(info.value, errors.MedimgError)
    assert str(path) in str(info.value)
    assert "PHANTOM" not in str(info.value) and "CompressedSamples" not in str(info.value)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.dcm"
    p.write_bytes(b"")
    _expect(errors.NotDicomError, p, "empty file")


def test_not_dicom(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("radiology report, not an image\n")
    _expect(errors.NotDicomError, p, "not a DICOM file")


def test_truncated_header(tmp_path):
    src = pydicom_file("CT_small.dcm").read_bytes()
    p = tmp_path / "cut.dcm"
    p.write_bytes(src[:700])
    _expect(errors.DicomReadError, p, "truncated")


def test_truncated_pixel_data(tmp_path):
    p = tmp_path / "MR_truncated.dcm"
    shutil.copy(pydicom_file("MR_truncated.dcm"), p)
    _expect(errors.DicomReadError, p, "truncated")


@pytest.mark.parametrize("sample", ["test-SR.dcm", "rtstruct.dcm"])
def test_objects_without_pixels(sample, tmp_path):
    p = tmp_path / sample
    shutil.copy(pydicom_file(sample), p)
    _expect(errors.NoPixelDataError, p, "no image")


def test_slices_of_different_sizes_are_split_not_stacked(phantom, tmp_path):
    uid = pydicom.uid.generate_uid()
    write_series(phantom(shape=(16, 16, 4)), tmp_path / "s", series_uid=uid)
    big = phantom(shape=(20, 20, 3), affine=oblique_affine((0, 0, 0), (1, 1, 1), (0, 0, 10)))
    write_series(big, tmp_path / "s2", series_uid=uid)
    found = scan(tmp_path)
    assert [s.shape for s in found] == [(16, 16, 4), (20, 20, 3)]
    assert all(any(p.code == "split" and "mixed_sizes" in p.detail for p in s.problems) for s in found)
    with pytest.raises(errors.SeriesSelectionError, match="2 series"):
        load(tmp_path)


def test_corrupt_compressed_frame(tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small_jp2klossless.dcm"))
    frames = bytearray(ds.PixelData)
    soc = frames.find(b"\xff\x4f\xff\x51")  # JPEG 2000 codestream: SOC then the SIZ marker segment
    assert soc > 0
    frames[soc + 4 : soc + 40] = b"\x00" * 36  # image size, tiles, components: all zero
    ds.PixelData = bytes(frames)
    p = tmp_path / "bad_j2k.dcm"
    ds.save_as(p)
    _expect(errors.DicomReadError, p, "cannot decode pixel data")


def test_header_declaring_absurd_dimensions(tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.Rows = 60000
    ds.Columns = 60000
    p = tmp_path / "huge.dcm"
    ds.save_as(p)
    _expect(errors.DicomReadError, p, "60000 x 60000")


def test_nifti_with_nan(tmp_path):
    arr = np.ones((4, 4, 4), dtype=np.float32)
    arr[1, 2, 3] = np.nan
    p = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), p)
    _expect(errors.ImageValueError, p, "1 voxels are NaN")
    assert np.isnan(load(p, allow_nonfinite=True).array).sum() == 1


def test_nifti_with_absurd_dimensions(tmp_path):
    p = tmp_path / "absurd.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), p)
    raw = bytearray(p.read_bytes())
    raw[42:48] = np.array([30000, 30000, 30000], dtype="<i2").tobytes()
    p.write_bytes(bytes(raw))
    _expect(errors.MedimgError, p, "absurd dimensions")


def test_missing_decoder_names_the_syntax_and_package(tmp_path, monkeypatch):
    from pydicom.pixels.decoders.base import get_decoder

    p = tmp_path / "j2k.dcm"
    shutil.copy(pydicom_file("MR_small_jp2klossless.dcm"), p)
    decoder = get_decoder(pydicom.uid.JPEG2000Lossless)
    monkeypatch.setattr(type(decoder), "is_available", property(lambda self: False))
    (series,) = scan(p)
    assert [pr.code for pr in series.problems] == ["missing_decoder"]
    _expect(
        errors.UnsupportedTransferSyntaxError, p, "JPEG 2000 Image Compression \\(Lossless Only\\).*pylibjpeg-openjpeg"
    )


def test_duplicate_positions_are_refused(phantom, tmp_path):
    v = phantom(shape=(8, 8, 4))
    positions = [[0, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 2]]
    write_series(v, tmp_path / "dup", positions_lps=positions)
    with pytest.raises(errors.SeriesGeometryError, match="duplicate_positions"):
        load(tmp_path / "dup")


def test_volume_rejects_bad_affine():
    with pytest.raises(errors.MedimgError, match="4x4"):
        Volume(np.zeros((2, 2, 2)), np.eye(3))
