"""DICOM SEG and Parametric Map out and back in, held against highdicom's reader and validated by dciodvfy.

Sources are small synthetic DICOM series made here: axial single-frame, oblique single-frame, and an enhanced
(legacy converted) multi-frame MR made from the same slices by highdicom. Every SEG and Parametric Map a test
writes goes through ``dciodvfy`` (Debian ``dicom3tools``, installed with apt when missing): no "Error" lines.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from debian_support import apt_install
from pydicom.uid import generate_uid
from tests_support import assert_same_image, oblique_affine

from medimg.errors import ImageValueError, MedimgError, SeriesGeometryError, SeriesSelectionError
from medimg.io import Volume, load
from medimg.io.derived import AlgorithmInfo, derived_objects, derived_table, read_seg, write_seg
from medimg.io.derived.parametric_map import read_parametric_map, write_parametric_map
from medimg.io.dicom.write import write_series
from medimg.io.orientation import lps_to_ras_affine
from medimg.viz.tables import scan_text

SHAPE = (20, 24, 9)
LABELS = {0: "background", 1: "spleen", 2: "liver", 3: "my lesion class"}
# identifiers put into the source series; they must reach the SEG and never a log line or an error message
PATIENT_NAME, PATIENT_ID = "DOE^JANE", "MRN8675309"
ALGO = AlgorithmInfo("medimg unet", "0.1.0", {"net": "unet", "checkpoint_sha256": "ab" * 32})


# ---------------------------------------------------------------------------------------------- dciodvfy
def _ensure_dciodvfy() -> str:
    why = apt_install(["dicom3tools"], lambda: shutil.which("dciodvfy") is not None)
    if why:
        pytest.skip(why)
    return str(shutil.which("dciodvfy"))


@pytest.fixture(scope="session")
def dciodvfy():
    """``check(path)``: run dciodvfy, fail on any "Error" line, print the warnings."""
    exe = _ensure_dciodvfy()

    def check(path: Path) -> None:
        proc = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False, timeout=120)
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        warnings = [line for line in lines if line.startswith("Warning")]
        print(f"dciodvfy {path.name}: {len(errors)} error(s), {len(warnings)} warning(s)")
        for line in warnings:
            print("   ", line)
        assert not errors, "\n".join(errors)

    return check


# ---------------------------------------------------------------------------------------------- sources
def _image(affine: np.ndarray, seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(rng.integers(0, 1000, size=SHAPE).astype(np.int16), affine)


def _series(folder: Path, kind: str) -> Path:
    """Write a source series; returns what medimg.load takes (the folder, or the one multi-frame file)."""
    affine = (
        np.diag([0.8, 0.9, 2.0, 1.0])
        if kind == "axial"
        else oblique_affine((20, -15, 30), (0.8, 0.9, 2.5), (10, -20, 5))
    )
    extra = {"PatientName": PATIENT_NAME, "PatientID": PATIENT_ID, "PatientBirthDate": "19700101", "PatientSex": "F",
             "StudyID": "1", "AccessionNumber": "A1", "StudyDate": "20260101", "StudyTime": "120000",
             "ReferringPhysicianName": ""}  # fmt: skip
    files = write_series(_image(affine), folder / "single", shuffle_names=True, extra=extra)
    if kind != "multiframe":
        return folder / "single"
    datasets = [pydicom.dcmread(f) for f in files]
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        datasets,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    (folder / "mf").mkdir()
    enhanced.save_as(folder / "mf" / "enhanced.dcm")
    return folder / "mf" / "enhanced.dcm"


def _mask(seed: int = 1, n_classes: int = 3) -> np.ndarray:
    """Labels 1..n_classes as boxes (some touching the volume's edges), the rest background."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    for label in range(1, n_classes + 1):
        lo = rng.integers(0, np.array(SHAPE) - 2)
        hi = lo + rng.integers(2, 8, size=3)
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = label
    mask[0, 0, 0] = 1  # the first voxel: catches a flipped axis or an off-by-one slice
    return mask


def _hd_seg_as_nifti(path: Path) -> nib.Nifti1Image:
    """highdicom's own reading of a SEG (its volume, LPS, axes (slice, row, column)) as a RAS NIfTI image."""
    vol = hd.seg.segread(path).get_volume(combine_segments=True, relabel=False)
    return _hd_volume_as_nifti(vol)


def _hd_volume_as_nifti(vol: hd.Volume) -> nib.Nifti1Image:
    array = np.transpose(np.asarray(vol.array), (2, 1, 0))
    affine = np.asarray(vol.affine, dtype=float)[:, [2, 1, 0, 3]]
    return nib.Nifti1Image(array.astype(np.float64), lps_to_ras_affine(affine))


_same_image = assert_same_image


def _frames_sit_on_their_source_instances(seg_path: Path, source: Path, image: Volume, mask: np.ndarray) -> None:
    """Every SEG frame: the source instance (frame) it references has the frame's Image Position (Patient)
    (0020,0032), and its pixels are that slice of the mask for the frame's segment."""
    seg = pydicom.dcmread(seg_path)
    files = sorted(source.iterdir()) if source.is_dir() else [source]
    src = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    inv = np.linalg.inv(image.affine)
    for f, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ref = group.DerivationImageSequence[0].SourceImageSequence[0]
        ds = src[str(ref.ReferencedSOPInstanceUID)]
        if "ReferencedFrameNumber" in ref:  # multi-frame source: the referenced frame's plane position
            pffg = ds.PerFrameFunctionalGroupsSequence[int(ref.ReferencedFrameNumber) - 1]
            source_ipp = pffg.PlanePositionSequence[0].ImagePositionPatient
        else:
            source_ipp = ds.ImagePositionPatient
        seg_ipp = group.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose([float(v) for v in seg_ipp], [float(v) for v in source_ipp], atol=1e-4)
        ras = np.array([-float(source_ipp[0]), -float(source_ipp[1]), float(source_ipp[2]), 1.0])
        k = round(float((inv @ ras)[2]))
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        np.testing.assert_array_equal(frames[f].T, (mask[:, :, k] == number).astype(np.uint8))


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["axial", "oblique", "multiframe"])
def test_seg_round_trip_is_exact_and_valid(kind, tmp_path, dciodvfy, caplog):
    caplog.set_level(logging.DEBUG)
    source = _series(tmp_path, kind)
    image = load(source)
    mask = _mask()
    out = write_seg(Volume(mask, image.affine), source, tmp_path / "seg.dcm", labels=LABELS, algorithm=ALGO)
    dciodvfy(out)

    back = load(out)  # no reference needed: a medimg SEG has a frame for every source slice
    np.testing.assert_array_equal(back.array, mask)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-3)
    assert back.meta["segments"][1]["type"] == "SCT:78961009 Spleen"
    assert back.meta["segments"][3]["type"] == "SCT:85756007 Tissue"  # unmatched name -> generic code
    assert back.meta["segments"][3]["label"] == "my lesion class"
    assert back.meta["segments"][1]["algorithm"] == "medimg unet 0.1.0"
    with_reference = load(out, reference=source if kind != "multiframe" else source.parent)
    np.testing.assert_array_equal(with_reference.array, mask)
    np.testing.assert_allclose(with_reference.affine, image.affine, atol=1e-3)

    _same_image(Volume(mask, image.affine), _hd_seg_as_nifti(out))  # highdicom agrees, independently
    _frames_sit_on_their_source_instances(out, source, image, mask)

    seg = pydicom.dcmread(out)
    first = pydicom.dcmread(source if source.is_file() else sorted(source.iterdir())[0], stop_before_pixels=True)
    assert seg.PatientName == PATIENT_NAME and seg.PatientID == PATIENT_ID  # the viewer files it under the patient
    assert seg.StudyInstanceUID == first.StudyInstanceUID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    params = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert "checkpoint_sha256" in params and "ab" * 32 in params
    assert PATIENT_NAME not in caplog.text and PATIENT_ID not in caplog.text


@pytest.mark.parametrize(("kind", "encoding"), [("oblique", "float32"), ("multiframe", "uint16")])
def test_parametric_map_round_trip_correlates(kind, encoding, tmp_path, dciodvfy):
    source = _series(tmp_path, kind)
    image = load(source)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    heat = np.exp(-((ii - 12) ** 2 + (jj - 8) ** 2 + (kk - 3) ** 2) / 30.0).astype(np.float32)
    out = write_parametric_map(
        Volume(heat, image.affine),
        source,
        tmp_path / "heat.dcm",
        method="hirescam",
        label=1,
        layer="net.model.1.submodule.1.submodule.0.conv.unit0.conv",
        label_name="spleen",
        encoding=encoding,
    )
    dciodvfy(out)
    back = load(out)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-3)
    assert np.corrcoef(back.array.ravel(), heat.ravel())[0, 1] >= 0.999
    assert back.meta["value_unit"] == "arbitrary unit"
    assert back.meta["content_description"].startswith("hirescam class 1 (spleen) layer ")
    np.testing.assert_allclose(read_parametric_map(out).array, back.array)

    pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(out))
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.LUTLabel == "ATTENTION" and "hirescam" in mapping.LUTExplanation
    ref = _hd_volume_as_nifti(pm.get_volume())
    ours = nib.as_closest_canonical(Volume(heat, image.affine).to_nifti())
    ref = nib.as_closest_canonical(ref)
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    stored = ref.get_fdata() * float(mapping.RealWorldValueSlope)
    assert np.corrcoef(stored.ravel(), np.asarray(ours.dataobj).ravel())[0, 1] >= 0.999


def test_sparse_seg_needs_its_reference(tmp_path, dciodvfy):
    """A SEG with empty frames omitted (as most tools write them) loads only onto its source grid."""
    source = _series(tmp_path, "oblique")
    image = load(source)
    mask = _mask()
    datasets = sorted((pydicom.dcmread(f) for f in source.iterdir()), key=lambda d: int(d.InstanceNumber))
    frames = np.stack([(mask[:, :, k].T == 2).astype(np.uint8) for k in range(SHAPE[2])])
    sparse = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type="BINARY",
        segment_descriptions=[
            hd.seg.SegmentDescription(
                1,
                "liver",
                hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
                hd.sr.CodedConcept("10200004", "SCT", "Liver"),
                "MANUAL",
            ),
        ],
        series_instance_uid=generate_uid(),
        series_number=5,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="other tool",
        manufacturer_model_name="x",
        software_versions="1",
        device_serial_number="1",
        omit_empty_frames=True,
    )
    path = tmp_path / "sparse.dcm"
    sparse.save_as(path)
    dciodvfy(path)
    assert int(sparse.NumberOfFrames) < SHAPE[2]
    with pytest.raises(SeriesGeometryError, match="reference="):
        load(path)
    placed = load(path, reference=source)
    np.testing.assert_array_equal(placed.array, (mask == 2).astype(np.uint8))
    np.testing.assert_allclose(placed.affine, image.affine, atol=1e-3)


# ---------------------------------------------------------------------------------------------- policies
def test_empty_mask_writes_empty_segments(tmp_path, dciodvfy):
    """Documented policy: "nothing found" is a result; every class is a segment, all frames empty."""
    source = _series(tmp_path, "axial")
    image = load(source)
    out = write_seg(Volume(np.zeros(SHAPE, np.uint8), image.affine), source, tmp_path / "empty.dcm", labels=LABELS)
    dciodvfy(out)
    back = load(out)
    assert not back.array.any() and back.shape == SHAPE
    assert sorted(back.meta["segments"]) == [1, 2, 3]


def test_forty_classes_become_forty_segments(tmp_path, dciodvfy):
    source = _series(tmp_path, "axial")
    image = load(source)
    mask = np.zeros(SHAPE, np.uint8)
    mask.reshape(-1)[: 40 * 50] = np.repeat(np.arange(1, 41, dtype=np.uint8), 50)
    labels = {0: "background", **{k: f"structure {k}" for k in range(1, 41)}}
    out = write_seg(Volume(mask, image.affine), source, tmp_path / "forty.dcm", labels=labels)
    dciodvfy(out)
    back = load(out)
    np.testing.assert_array_equal(back.array, mask)
    assert len(back.meta["segments"]) == 40


def test_overlapping_segments_are_reported_not_merged(tmp_path):
    source = _series(tmp_path, "axial")
    datasets = sorted((pydicom.dcmread(f) for f in source.iterdir()), key=lambda d: int(d.InstanceNumber))
    stacked = np.zeros((SHAPE[2], SHAPE[1], SHAPE[0], 2), np.uint8)
    stacked[2:5, 3:9, 4:10, 0] = 1
    stacked[4:7, 5:12, 6:14, 1] = 1  # shares voxels with segment 1 on slice 4
    tissue = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
    seg = hd.seg.Segmentation(
        datasets, stacked, "BINARY", [hd.seg.SegmentDescription(n, f"s{n}", tissue, tissue, "MANUAL") for n in (1, 2)],
        generate_uid(), 5, generate_uid(), 1, "other", "x", "1", "1", omit_empty_frames=False,
    )  # fmt: skip
    seg.save_as(tmp_path / "overlap.dcm")
    expected = int((stacked[..., 0] & stacked[..., 1]).sum())
    with pytest.raises(ImageValueError, match=f"segments 1 and 2 share {expected} voxels"):
        load(tmp_path / "overlap.dcm")
    both = read_seg(tmp_path / "overlap.dcm", overlap="stack")
    assert both.shape == (*SHAPE, 2)
    np.testing.assert_array_equal(both.array[..., 1], np.transpose(stacked[..., 1], (2, 1, 0)))


# ---------------------------------------------------------------------------------------------- bad input
def _no_new_files(folder: Path, before: set[Path]) -> None:
    assert set(folder.iterdir()) == before, "a refused write left a file behind"


def test_bad_input_is_refused_in_one_line_without_identifiers(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    source = _series(tmp_path, "axial")
    image = load(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = set(out_dir.iterdir())
    cases: list[tuple[type[MedimgError], str, object]] = [
        # a mask label that is not a class of the model
        (ImageValueError, "only classes", lambda: write_seg(Volume(_mask(n_classes=3), image.affine), source,
                                                             out_dir / "a.dcm", labels={0: "bg", 1: "a", 2: "b"})),
        # a mask on another grid than the source's
        (SeriesGeometryError, "affine differs", lambda: write_seg(
            Volume(_mask(), image.affine @ np.diag([1, 1, 1.5, 1])), source, out_dir / "b.dcm")),
        # NIfTI input
        (MedimgError, "DICOM SEG needs the DICOM source series", lambda: write_seg(
            Volume(_mask(), image.affine), image.save(tmp_path / "img.nii.gz"), out_dir / "c.dcm")),
        # heatmap with NaN
        (ImageValueError, "NaN", lambda: write_parametric_map(
            Volume(np.full(SHAPE, np.nan, np.float32), image.affine), source, out_dir / "d.dcm",
            method="gradcam", label=1, layer="x")),
    ]  # fmt: skip
    for error, text, call in cases:
        with pytest.raises(error, match=text) as info:
            call()  # type: ignore[operator]
        message = str(info.value)
        assert "\n" not in message and PATIENT_NAME not in message and PATIENT_ID not in message
    _no_new_files(out_dir, before)
    assert PATIENT_NAME not in caplog.text and PATIENT_ID not in caplog.text


def test_mixed_frame_of_reference_is_refused(tmp_path):
    source = _series(tmp_path, "axial")
    image = load(source)
    victim = sorted(source.iterdir())[3]
    ds = pydicom.dcmread(victim)
    ds.FrameOfReferenceUID = generate_uid()
    ds.save_as(victim)
    with pytest.raises(SeriesGeometryError, match=r"mixes 2 Frames of Reference \(0020,0052\)"):
        write_seg(Volume(_mask(), image.affine), source, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_gantry_tilt_is_refused_not_resampled_into_a_seg(tmp_path):
    affine = np.diag([0.8, 0.9, 2.0, 1.0])
    positions = [(-0.0 * 0, -(0.0 + 0.5 * k), 2.0 * k) for k in range(SHAPE[2])]  # LPS: y shifts with z
    write_series(_image(affine), tmp_path / "tilt", positions_lps=positions)
    image = load(tmp_path / "tilt")
    assert image.meta.get("resampled")
    with pytest.raises(SeriesGeometryError, match="gantry tilt"):
        write_seg(Volume(_mask(), image.affine, {"resampled": image.meta["resampled"]}), tmp_path / "tilt",
                  tmp_path / "x.dcm")  # fmt: skip
    assert not (tmp_path / "x.dcm").exists()


def test_seg_of_another_series_or_off_the_slices_is_refused(tmp_path):
    source = _series(tmp_path / "a", "axial")
    other = _series(tmp_path / "b", "axial")
    image = load(source)
    out = write_seg(Volume(_mask(), image.affine), source, tmp_path / "seg.dcm", labels=LABELS)
    with pytest.raises(SeriesSelectionError, match="which is not in this folder"):
        load(out, reference=other)
    ds = pydicom.dcmread(out)
    ipp = ds.PerFrameFunctionalGroupsSequence[4].PlanePositionSequence[0].ImagePositionPatient
    ipp[2] = float(ipp[2]) + 0.7  # between two slices
    ds.save_as(tmp_path / "shifted.dcm")
    with pytest.raises(SeriesGeometryError, match=r"frame 5 of shifted\.dcm .* matches no slice"):
        load(tmp_path / "shifted.dcm", reference=source)
    with pytest.raises(SeriesGeometryError):
        load(tmp_path / "shifted.dcm")


def test_scan_listing_names_the_referenced_series(tmp_path):
    from medimg.io import scan

    source = _series(tmp_path, "axial")
    image = load(source)
    write_seg(Volume(_mask(), image.affine), source, tmp_path / "seg.dcm", labels=LABELS)
    write_parametric_map(Volume(np.ones(SHAPE, np.float32), image.affine), source, tmp_path / "heat.dcm",
                         method="gradcam", label=2, layer="net.conv")  # fmt: skip
    (series,) = scan(source).series
    found = derived_objects([*source.iterdir(), tmp_path / "seg.dcm", tmp_path / "heat.dcm"], [series])
    assert [(d.kind, Path(d.path).name, d.referenced_keys) for d in found] == [
        ("PM", "heat.dcm", (series.key,)),
        ("SEG", "seg.dcm", (series.key,)),
    ]
    assert found[1].content == ("spleen", "liver", "my lesion class")
    table = derived_table(found)
    assert "SEG  seg.dcm  27 frames  [spleen, liver, my lesion class]" in table
    # the same through scan() of a folder holding the image series and both objects
    for name in ("seg.dcm", "heat.dcm"):
        (tmp_path / name).rename(source / name)
    result = scan(source)
    assert [s.key for s in result.series] == [series.key]  # SEG and PM are not image series
    assert [(d.kind, d.referenced_keys) for d in result.derived] == [("PM", (series.key,)), ("SEG", (series.key,))]
    assert "SEG  seg.dcm  27 frames" in scan_text(result)
    np.testing.assert_array_equal(load(source).array, image.array)  # one image series: load() needs no key


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small untrained 3D U-Net checkpoint (what it predicts does not matter here, only what is written),
    saved as Lightning saves one, with its data module's dataset.json naming class 1 "spleen"."""
    import json

    import pytorch_lightning as pl
    import torch

    from medimg.tasks.segmentation import SegmentationTask
    from medimg.transforms.pipelines import Preprocessing

    root = tmp_path_factory.mktemp("ckpt")
    (root / "data").mkdir()
    (root / "data" / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "spleen"}}))
    prep = Preprocessing(spacing=(1.6, 1.8, 4.0), intensity="ct", ct_window=(0.0, 1000.0), patch_size=(16, 16, 16))
    torch.manual_seed(0)
    task = SegmentationTask(net="unet", net_kwargs={"channels": [4, 8], "strides": [2], "num_res_units": 0},
                            roi_size=(16, 16, 16), preprocessing=prep.as_dict())  # fmt: skip
    path = root / "tiny.ckpt"
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            "datamodule_hyper_parameters": {"dataset_dir": str(root / "data")},
            "pytorch-lightning_version": pl.__version__,
        },
        path,
    )
    return path


def test_cli_segment_and_explain_write_dicom(checkpoint, tmp_path, dciodvfy, capsys):
    from medimg.cli import main
    from medimg.inference import segment

    source = _series(tmp_path, "oblique")
    nifti = load(source).save(tmp_path / "image.nii.gz")
    assert main(["segment", str(checkpoint), str(nifti), str(tmp_path / "x.dcm")]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "DICOM SEG needs the DICOM source series" in err
    assert not (tmp_path / "x.dcm").exists()
    assert main(["explain", "--ckpt", str(checkpoint), "--input", str(nifti), "--out", str(tmp_path / "x.dcm")]) == 2
    assert "Parametric Map needs the DICOM source series" in capsys.readouterr().err

    assert main(["segment", str(checkpoint), str(source), str(tmp_path / "seg.dcm")]) == 0
    out = capsys.readouterr()
    assert PATIENT_NAME not in out.out + out.err and PATIENT_ID not in out.out + out.err
    dciodvfy(tmp_path / "seg.dcm")
    expected = segment(checkpoint, source, device="cpu")
    back = load(tmp_path / "seg.dcm")
    np.testing.assert_array_equal(back.array, expected.array)
    np.testing.assert_allclose(back.affine, expected.affine, atol=1e-3)
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.SegmentSequence[0].SegmentLabel == "spleen"  # the name from the training dataset.json
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "medimg unet"
    assert hashlib_sha256(checkpoint) in algo.AlgorithmParameters

    out_pm = tmp_path / "heat.dcm"
    assert main(["explain", "--ckpt", str(checkpoint), "--input", str(source), "--out", str(out_pm)]) == 0
    dciodvfy(out_pm)
    heat = load(out_pm)
    np.testing.assert_allclose(heat.affine, expected.affine, atol=1e-3)
    assert heat.meta["content_description"].startswith("hirescam class 1 (spleen) layer ")


def hashlib_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_dataset_label_may_be_a_dicom_seg(tmp_path):
    """A case {"image": DICOM series, "label": SEG of it} loads like a NIfTI label on the image's grid."""
    from medimg.transforms.pipelines import LoadVolumed

    source = _series(tmp_path, "oblique")
    image = load(source)
    mask = _mask()
    seg = write_seg(Volume(mask, image.affine), source, tmp_path / "seg.dcm", labels=LABELS)
    case = LoadVolumed(["image", "label"])({"image": str(source), "label": str(seg)})
    np.testing.assert_array_equal(case["label"][0].numpy(), mask.astype(np.float32))
    np.testing.assert_allclose(case["label"].affine.numpy(), image.affine, atol=1e-3)


def test_review_answers_leave_as_a_key_object_selection(checkpoint, tmp_path, dciodvfy):
    """export_report(..., dicom_dir=...) writes SEG + Parametric Map + a KOS that points at both."""
    from medimg.explain.api import explain_case
    from medimg.review import FeedbackStore, export_report
    from medimg.review.store import Feedback

    source = _series(tmp_path, "axial")
    ex = explain_case(checkpoint, source, 1, sanity_check=False)
    store = FeedbackStore(tmp_path / "reviews.sqlite")
    store.add(Feedback("case 1", "Reader^One", "partly", ex.checkpoint_sha256, ex.input_sha256, ex.method, ex.layer,
                       localisation=4, comment="misses the lower pole"))  # fmt: skip
    export_report([("case 1", ex)], tmp_path / "review.html", store, dicom_dir=tmp_path / "dicom")
    seg, heat, kos = (tmp_path / "dicom" / f"case_1_{s}.dcm" for s in ("seg", "heatmap", "review_ko"))
    for path in (seg, heat, kos):
        dciodvfy(path)
    np.testing.assert_array_equal(load(seg).array, ex.prediction.array)
    ko = pydicom.dcmread(kos)
    selected = {str(i.ReferencedSOPInstanceUID) for study in ko.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}  # fmt: skip
    assert selected == {str(pydicom.dcmread(p).SOPInstanceUID) for p in (seg, heat)}
    text = next(item.TextValue for item in ko.ContentSequence if item.ValueType == "TEXT")
    assert "verdict partly; localisation 4/5" in text and "misses the lower pole" in text
    assert ko.PatientID == PATIENT_ID  # filed under the patient of the source study


def _count_opens(monkeypatch, path):
    """How many times ``path`` is opened (``open`` and ``io.open``: what torch.load and Path.read_bytes use)."""
    import builtins
    import io

    real_open, opened = builtins.open, []

    def counting(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == os.path.abspath(path):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    monkeypatch.setattr(io, "open", counting)
    return opened


def test_segment_to_dicom_opens_the_checkpoint_once_and_scans_the_folder_once(checkpoint, tmp_path, monkeypatch):
    import importlib

    from medimg.cli import main

    scan_module = importlib.import_module(
        "medimg.io.dicom.scan"
    )  # the module (medimg.io.dicom.scan is also the function)
    source = _series(tmp_path, "axial")
    scans = []
    real_read_headers = scan_module.read_headers

    def counting_read_headers(paths, workers=None):
        scans.append(len(paths))
        return real_read_headers(paths, workers)

    monkeypatch.setattr(scan_module, "read_headers", counting_read_headers)
    opened = _count_opens(monkeypatch, checkpoint)
    assert main(["segment", str(checkpoint), str(source), str(tmp_path / "seg.dcm")]) == 0
    assert len(opened) == 1, f"checkpoint opened {len(opened)} times"
    assert len(scans) == 1, f"DICOM folder scanned {len(scans)} times"
    assert (tmp_path / "seg.dcm").is_file()


def test_explain_cases_reads_and_hashes_the_checkpoint_once_for_the_worklist(checkpoint, tmp_path, monkeypatch):
    from medimg.explain.batch import explain_cases

    image = load(_series(tmp_path, "axial"))
    cases = [(f"case{k}", image.save(tmp_path / f"case{k}.nii.gz")) for k in range(3)]
    opened = _count_opens(monkeypatch, checkpoint)
    report = explain_cases(checkpoint, cases, tmp_path / "out", progress=False)
    assert sorted(report.written) == ["case0", "case1", "case2"] and not report.failed
    assert len(opened) == 1, f"checkpoint opened {len(opened)} times for 3 cases"
    assert sorted(report.seconds) == sorted(report.written) and min(report.seconds.values()) > 0  # logged per case


def test_segment_reports_every_stage_with_the_network_counted_apart(checkpoint, tmp_path, capsys):
    import json

    from medimg.cli import main
    from medimg.inference import open_model
    from medimg.inference.timings import STAGES

    source = _series(tmp_path, "axial")
    volume = open_model(checkpoint, device="cpu").segment(source)
    t = volume.meta["timings"]
    assert set(t["seconds"]) == set(STAGES) and all(v >= 0 for v in t["seconds"].values())
    assert t["seconds"]["network"] > 0 and t["network_calls"] >= 1 and t["network_voxels_per_s"] > 0
    assert t["total_s"] == pytest.approx(sum(t["seconds"].values()), abs=1e-3)
    assert (
        main(
            ["segment", str(checkpoint), str(source), str(tmp_path / "m.nii.gz"), "--timings", str(tmp_path / "t.json")]
        )
        == 0
    )
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("timings (s):")]
    assert len(line) == 1 and "network" in line[0] and "peak RSS" in line[0]
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["seconds"]["load"] > 0 and record["peak_rss_bytes"] > 0


def test_evaluate_predicts_first_with_a_model_then_scores_every_case(checkpoint, tmp_path, capsys):
    from medimg.cli import main

    image = load(_series(tmp_path, "axial"))
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for k in range(2):
        image.save(tmp_path / "images" / f"case{k}.nii.gz")
        truth = np.zeros(image.shape[:3], np.uint8)
        truth[4:12, 4:10, 2 + k : 6 + k] = 1
        Volume(truth, image.affine).save(tmp_path / "labels" / f"case{k}.nii.gz")
    pred, out = tmp_path / "pred", tmp_path / "table.csv"
    args = [str(pred), str(tmp_path / "labels"), "--ckpt", str(checkpoint), "--cases", str(tmp_path / "images")]
    assert main(["evaluate", *args, "--out", str(out)]) == 0
    assert sorted(p.name for p in pred.iterdir()) == ["case0.nii.gz", "case1.nii.gz"]
    rows = list(csv.DictReader(out.open()))
    assert sorted({r["case_id"] for r in rows}) == ["case0", "case1"]
    assert "predicted case0" in capsys.readouterr().out
    assert main(["evaluate", *args]) == 0  # resumes: nothing predicted again
    assert "predicted" not in capsys.readouterr().out
    assert main(["evaluate", str(pred), str(tmp_path / "labels"), "--ckpt", str(checkpoint)]) == 2
