"""4D series: diffusion (b-values and gradients), time series, multi-echo; never stacked when the volumes differ.

The diffusion encoding is checked against dcm2niix's ``.bval``/``.bvec``: both express the gradients in the voxel
frame of their own NIfTI (FSL's convention), so each is turned back into a RAS direction with its own affine
before comparing; where both files have the same voxel order the numbers themselves must be equal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from mosaic_writer import write_mosaics
from tests_support import assert_same_diffusion, assert_same_image, dcm2niix_executable, oblique_affine

from medimg.data.samples import scanner_files
from medimg.errors import ModelError, SeriesGeometryError, SeriesSelectionError
from medimg.io import Volume, load, scan
from medimg.io.dicom.convert import convert
from medimg.io.dicom.write import write_series


def _run_dcm2niix(folder: Path, out: Path) -> Path:
    out.mkdir()
    proc = subprocess.run(
        [dcm2niix_executable(), "-z", "n", "-f", "ref", "-o", str(out), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "ref.nii"


GRADIENTS = [None, (1.0, 0.0, 0.0), (0.0, 0.7071068, 0.7071068), (0.26726124, -0.53452248, 0.80178373), None]
BVALUES = [0, 1000, 1000, 2000, 0]


@pytest.mark.parametrize("angles", [(0, 0, 0), (17, -23, 41)])
def test_dwi_mosaics_become_one_4d_volume_with_dcm2niix_bvals_and_bvecs(angles, phantom, tmp_path):
    truth = phantom(shape=(16, 18, 5), affine=oblique_affine(angles, (2.0, 2.0, 3.0), (-20, 10, 30)))
    folder = tmp_path / "dwi"
    write_mosaics(truth, folder, n_volumes=5, b_values=BVALUES, gradients_lps=GRADIENTS)
    (series,) = scan(folder)
    assert series.shape == (16, 18, 5, 5)
    assert series.summary()["volumes"] == 5 and series.summary()["b_values"] == [0, 1000, 2000]
    assert "4D: 5 volumes (b 0, 1000, 2000)" in series.summary()["problems"][0]["detail"]
    volume = load(folder)
    assert volume.shape == (16, 18, 5, 5)
    for t in range(5):
        np.testing.assert_array_equal(volume.array[..., t], truth.array + t)
    assert [v["b_value"] for v in volume.meta["volumes"]] == BVALUES
    report = convert(folder, tmp_path / "ours")
    (nifti,) = report.written
    ref = _run_dcm2niix(folder, tmp_path / "ref")
    assert_same_image(Volume(np.asarray(nib.load(nifti).dataobj), nib.load(nifti).affine), nib.load(ref))
    assert_same_diffusion(nifti, ref)


def test_real_siemens_b0_b1000_pair_is_one_4d_volume_like_dcm2niix(tmp_path):
    folder = scanner_files(["siemens_dwi_b0", "siemens_dwi_b1000"], tmp_path / "dwi")
    volume = load(folder)
    assert volume.shape == (128, 128, 48, 2)
    report = convert(folder, tmp_path / "ours")
    (nifti,) = report.written
    ref = _run_dcm2niix(folder, tmp_path / "ref")
    ours, theirs = nib.as_closest_canonical(nib.load(nifti)), nib.as_closest_canonical(nib.load(ref))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
    assert_same_diffusion(nifti, ref)


def test_split_4d_writes_one_file_per_volume(phantom, tmp_path):
    folder = tmp_path / "dwi"
    write_mosaics(phantom(shape=(16, 18, 5)), folder, n_volumes=3, b_values=[0, 1000, 1000], gradients_lps=GRADIENTS)
    report = convert(folder, tmp_path / "out", split_4d=True)
    assert [p.name for p in report.written] == [f"007_MR_ep2d_diff_mosaic_vol{t:04d}.nii.gz" for t in range(3)]
    sidecar = json.loads((tmp_path / "out" / "007_MR_ep2d_diff_mosaic_vol0002.json").read_text())
    assert sidecar["Volumes"][0]["b_value"] == 1000


def _time_series(truth: Volume, folder: Path, n: int, *, attr: str, shift=None, echo=False) -> None:
    from pydicom.uid import generate_uid

    uid = generate_uid()
    for t in range(n):
        arr = truth.array + 10 * t
        affine = truth.affine.copy()
        if shift is not None:
            affine[:3, 3] += np.asarray(shift) * t
        extra = {attr: t + 1}
        if echo:
            extra["EchoTime"] = 10.0 * (t + 1)
        write_series(Volume(arr, affine), folder / f"t{t}", series_uid=uid, extra=extra, seed=t)


def test_fmri_time_series_is_stacked_in_time_order(phantom, tmp_path):
    truth = phantom(shape=(12, 10, 6), affine=oblique_affine((5, 0, 10), (3.0, 3.0, 3.5), (0, 0, 0)))
    _time_series(truth, tmp_path / "bold", 4, attr="TemporalPositionIdentifier")
    volume = load(tmp_path / "bold")
    assert volume.shape == (12, 10, 6, 4)
    for t in range(4):
        np.testing.assert_array_equal(volume.array[..., t], truth.array + 10 * t)
    assert [v["temporal_position"] for v in volume.meta["volumes"]] == ["1", "2", "3", "4"]
    np.testing.assert_allclose(volume.affine, truth.affine, atol=1e-4)


def test_multi_echo_gives_one_volume_per_echo(phantom, tmp_path):
    truth = phantom(shape=(12, 10, 6))
    _time_series(truth, tmp_path / "me", 2, attr="EchoNumbers", echo=True)
    found = scan(tmp_path / "me")
    assert [s.shape for s in found] == [(12, 10, 6), (12, 10, 6)]
    report = convert(tmp_path / "me", tmp_path / "out")
    names = sorted(p.name for p in report.written)
    assert names == ["001_MR_medimg_phantom_e1.nii.gz", "001_MR_medimg_phantom_e2.nii.gz"]


def test_volumes_at_different_positions_are_not_stacked(phantom, tmp_path):
    truth = phantom(shape=(12, 10, 6), affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    _time_series(truth, tmp_path / "moved", 2, attr="AcquisitionNumber", shift=(0, 0, 4.0))  # overlap 4 slices
    found = scan(tmp_path / "moved")
    assert [s.shape for s in found] == [(12, 10, 6), (12, 10, 6)]
    assert all(s.volumes is None for s in found)


def test_4d_series_with_a_missing_slice_is_refused_naming_the_file(phantom, tmp_path):
    folder = tmp_path / "dwi"
    write_mosaics(
        phantom(shape=(16, 18, 5)), folder, n_volumes=3, b_values=[0, 1000, 1000], gradients_lps=GRADIENTS,
        drop_tile=(1, 4),
    )  # fmt: skip
    with pytest.raises(SeriesGeometryError, match=r"volume 2 has 4 \(first file .*MOSAIC0001\.dcm\)"):
        load(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "medimg", "convert", str(folder), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "MOSAIC0001.dcm" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_dwi_without_readable_encoding_says_so_and_writes_no_bval(phantom, tmp_path):
    from pydicom.uid import generate_uid

    uid = generate_uid()
    for t in range(3):
        extra = {
            "AcquisitionNumber": t + 1,
            "Manufacturer": "Philips",
            "ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION"],
        }
        write_series(phantom(shape=(8, 8, 4)), tmp_path / "dwi" / f"t{t}", series_uid=uid, extra=extra, seed=t)
    volume = load(tmp_path / "dwi")
    assert volume.shape == (8, 8, 4, 3)
    codes = [p["code"] for p in volume.meta["problems"]]
    assert "no_diffusion_encoding" in codes
    report = convert(tmp_path / "dwi", tmp_path / "out")
    assert any("no .bval/.bvec" in n for n in next(iter(report.notes.values())))
    assert not list((tmp_path / "out").glob("*.bval"))


def test_three_plane_view_shows_one_volume_of_a_4d_image(phantom, tmp_path):
    from medimg.viz.planes import figure_png, pick_volume, render_planes

    write_mosaics(phantom(shape=(16, 18, 5)), tmp_path / "dwi", n_volumes=3, b_values=[0, 1000, 1000],
                  gradients_lps=GRADIENTS)  # fmt: skip
    volume = load(tmp_path / "dwi")
    one, caption = pick_volume(volume, 2)
    np.testing.assert_array_equal(one.array, volume.array[..., 2])
    assert caption == "volume 3 of 3 (b 1000)"
    assert figure_png(render_planes(volume, volume=1))[:4] == b"\x89PNG"
    with pytest.raises(SeriesSelectionError, match=r"volumes 0\.\.2"):
        render_planes(volume, volume=3)


def test_segment_and_explain_refuse_a_4d_image_for_a_one_channel_model(phantom, tmp_path):
    import torch

    from medimg.explain.api import explain_case
    from medimg.inference import segment
    from medimg.tasks import SegmentationTask
    from medimg.transforms.pipelines import Preprocessing

    write_mosaics(phantom(shape=(16, 18, 5)), tmp_path / "dwi", n_volumes=3, b_values=[0, 1000, 1000],
                  gradients_lps=GRADIENTS)  # fmt: skip
    task = SegmentationTask(net="unet", net_kwargs={"channels": [4, 8], "strides": [2], "num_res_units": 0},
                            num_classes=2, roi_size=(16, 16, 8))  # fmt: skip
    task.hparams["preprocessing"] = Preprocessing(
        spacing=(2.0, 2.0, 3.0), intensity="mr", patch_size=(16, 16, 8)
    ).as_dict()
    with pytest.raises(ModelError, match=r"3 channels or volumes .* model takes 1; pass one volume"):
        segment(task, tmp_path / "dwi", tmp_path / "mask.nii.gz")
    # explain_case (and the review built on it) load through the same prepare(): a checkpoint shows it
    ckpt = tmp_path / "model.ckpt"
    torch.save(
        {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "pytorch-lightning_version": "2.6.6"},
        ckpt,
    )
    with pytest.raises(ModelError, match=r"3 channels or volumes"):
        explain_case(ckpt, tmp_path / "dwi", 1)
    assert not (tmp_path / "mask.nii.gz").exists()
