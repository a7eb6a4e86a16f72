"""Volume contract, NIfTI round trip, scan behaviour (one open per file, DICOMDIR, junk files), property test."""

from __future__ import annotations

import builtins
import os
from collections import Counter

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests_support import oblique_affine

from medimg.data.samples import pydicom_folder
from medimg.io import Volume, load, scan
from medimg.io.dicom.write import write_series


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_nifti_round_trip_keeps_array_dtype_and_affine(tmp_path, suffix, dtype):
    affine = oblique_affine((10, 20, 30), (0.7, 0.8, 3.0), (1, 2, 3))
    arr = (np.arange(5 * 6 * 7) % 200).reshape(5, 6, 7).astype(dtype)
    path = Volume(arr, affine, {"modality": "CT"}).save(tmp_path / f"v{suffix}")
    back = load(path)
    assert back.array.dtype == arr.dtype
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    assert back.modality == "CT"
    assert nib.load(path).header.get_sform(coded=True)[1] == 1


def test_save_is_atomic_and_leaves_nothing_on_failure(tmp_path):
    bad = Volume(np.zeros((2, 2, 2), dtype=object), np.eye(4))  # nibabel cannot store object arrays
    with pytest.raises(Exception):  # noqa: B017 - any error; the point is what is left on disk
        bad.save(tmp_path / "x.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_volume_reports_spacing_and_orientation():
    v = Volume(np.zeros((2, 3, 4)), np.diag([-0.5, -0.5, 2.0, 1.0]))
    assert v.spacing == (0.5, 0.5, 2.0)
    assert v.orientation == "LPS"


def test_scan_opens_every_file_once(phantom, tmp_path, monkeypatch):
    write_series(phantom(shape=(8, 8, 6)), tmp_path / "a", shuffle_names=True)
    write_series(phantom(shape=(8, 8, 4)), tmp_path / "b" / "deep", series_number=2)
    (tmp_path / "b" / "README.txt").write_text("not dicom")
    opened: Counter[str] = Counter()
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and str(file).startswith(str(tmp_path)):
            opened[str(file)] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    found = scan(tmp_path, workers=1)
    assert len(found) == 2
    assert len(opened) == 11
    assert set(opened.values()) == {1}
    assert list(found.skipped) == [str(tmp_path / "b" / "README.txt")]


def test_dicomdir_is_followed():
    found = scan(pydicom_folder() / "DICOMDIR")
    assert len(found) >= 5
    assert {s.modality for s in found} >= {"CT", "MR"}


def test_localizers_are_set_aside_and_not_picked(phantom, tmp_path):
    uid = "1.2.3.4.5"
    write_series(phantom(shape=(10, 10, 5)), tmp_path, series_uid=uid)
    scout = phantom(shape=(10, 10, 1), affine=oblique_affine((90, 0, 0), (1, 1, 1), (0, 0, 0)))
    write_series(scout, tmp_path / "scout", series_uid=uid, extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    found = scan(tmp_path)
    assert sorted(s.localizer for s in found) == [False, True]
    assert load(tmp_path).shape == (10, 10, 5)


def test_compressed_series_decodes_like_uncompressed(phantom, tmp_path):
    from pydicom.uid import RLELossless

    truth = phantom(shape=(12, 10, 4))
    write_series(truth, tmp_path / "rle", transfer_syntax=RLELossless, shuffle_names=True)
    v = load(tmp_path / "rle")
    assert v.meta["transfer_syntax"] == "RLE Lossless"
    np.testing.assert_array_equal(v.array, truth.array)


unit = st.floats(-1, 1, allow_nan=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    angles=st.tuples(st.floats(-180, 180), st.floats(-89, 89), st.floats(-180, 180)),
    spacing=st.tuples(st.floats(0.2, 3), st.floats(0.2, 3), st.floats(0.5, 6)),
    origin=st.tuples(st.floats(-300, 300), st.floats(-300, 300), st.floats(-300, 300)),
    n_slices=st.integers(2, 7),
    against_normal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_load_recovers_any_written_geometry(tmp_path_factory, angles, spacing, origin, n_slices, against_normal, seed):
    folder = tmp_path_factory.mktemp("prop")
    rng = np.random.default_rng(seed)
    truth = Volume(
        rng.integers(-500, 500, size=(5, 6, n_slices)).astype(np.int16), oblique_affine(angles, spacing, origin)
    )
    if against_normal:  # slices stacked opposite to row x column: load must sort them the other way round
        flip = np.diag([1.0, 1.0, -1.0, 1.0])
        flip[2, 3] = n_slices - 1
        truth = Volume(truth.array, truth.affine @ flip)
    write_series(truth, folder, shuffle_names=True, seed=seed)
    got = load(folder)
    expected_array, expected_affine = truth.array, truth.affine
    if against_normal:
        expected_array, expected_affine = truth.array[:, :, ::-1], truth.affine @ flip
    np.testing.assert_allclose(got.affine, expected_affine, atol=1e-4)
    np.testing.assert_array_equal(got.array, expected_array)


def test_parallel_scan_finds_the_same_series_as_sequential(phantom, tmp_path):
    for s in range(3):
        write_series(phantom(shape=(6, 6, 90), seed=s), tmp_path / f"s{s}", series_number=s + 1, shuffle_names=True)
    sequential = [s.summary() for s in scan(tmp_path, workers=1)]
    parallel = [s.summary() for s in scan(tmp_path, workers=2)]  # 270 files: the forked path when allowed
    assert parallel == sequential
    assert [s["n_files"] for s in parallel] == [90, 90, 90]
