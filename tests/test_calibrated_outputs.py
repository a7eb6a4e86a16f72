"""Calibration where a researcher reads it: ``medimg evaluate --ckpt`` reports the ECE before and after the model's
temperature with the reliability diagrams (and :mod:`medimg.viz.calibration` draws them), and ``medimg segment
--probabilities`` writes the calibrated probability of a class as a DICOM Parametric Map that dciodvfy accepts
and highdicom reads back.

One small member (the planned CPU UNet, see tests/test_uncertainty.py) is trained for a few seconds on site A of
the two-site phantom and calibrated on two of site B's training cases.
"""

from __future__ import annotations

import csv
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch
from test_dicom_seg import dciodvfy  # noqa: F401 (the fixture: dciodvfy from Debian's dicom3tools, via apt)
from test_export import save_checkpoint
from test_uncertainty import PREP, _task, _train

from medimg.cli import main
from medimg.data.phantoms import make_two_site_phantom
from medimg.errors import MedimgError
from medimg.inference.calibrate import calibrate, case_logits, write_calibrated
from medimg.inference.ensemble import Ensemble
from medimg.inference.model import open_model
from medimg.io import Volume, load
from medimg.io.derived.parametric_map import read_parametric_map
from medimg.io.dicom.write import write_series
from medimg.metrics.calibration import apply_temperature, calibration
from medimg.viz.calibration import plot_reliability, save_reliability_plot


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Path:
    return make_two_site_phantom(tmp_path_factory.mktemp("c") / "TwoSites", 4, 2, shape=(32, 32, 24), seed=0)


@pytest.fixture(scope="module")
def models(sites, tmp_path_factory) -> tuple[Path, Path]:
    """(plain, calibrated): one member trained on site A, and the same weights with a temperature fitted on two
    of site B's training cases."""
    from medimg.transforms.pipelines import Preprocessing, preprocessing

    pp = preprocessing(Preprocessing.from_dict(PREP), keys=["image", "label"])
    cases = [pp({"image": str(p), "label": str(sites / "labelsTr" / "A" / p.name)})
             for p in sorted((sites / "imagesTr" / "A").glob("*.nii.gz"))]  # fmt: skip
    x = torch.stack([torch.as_tensor(c["image"]) for c in cases]).float()
    y = torch.stack([torch.as_tensor(c["label"]) for c in cases]).float()
    folder = tmp_path_factory.mktemp("models")
    plain = save_checkpoint(_train(_task(0), x, y, 0), folder / "plain.ckpt")
    val = sorted((sites / "imagesTr" / "B").glob("*.nii.gz"))[:2]
    fit = calibrate(open_model(plain), [(p, sites / "labelsTr" / "B" / p.name) for p in val])
    assert fit.temperature != 1.0
    return plain, write_calibrated(plain, fit, folder / "calibrated.ckpt")


def _held_out(sites: Path, folder: Path) -> tuple[Path, Path, list[tuple[Path, Path]]]:
    """A worklist CSV of the held-out cases of both sites, a flat folder of their labels, and the pairs."""
    labels = folder / "labels"
    labels.mkdir(parents=True)
    pairs = []
    for image in sorted((sites / "imagesTs").glob("*/*.nii.gz")):
        label = sites / "labelsTs" / image.parent.name / image.name
        (labels / image.name).symlink_to(label)
        pairs.append((image, label))
    listing = folder / "cases.csv"
    listing.write_text("case_id,image\n" + "".join(f"{p.name.split('.')[0]},{p}\n" for p, _ in pairs))
    return listing, labels, pairs


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_reports_ece_before_and_after_the_temperature(sites, models, tmp_path, capsys):
    plain, calibrated = models
    listing, labels, pairs = _held_out(sites, tmp_path)
    out = tmp_path / "scores.csv"
    args = ["evaluate", str(tmp_path / "pred"), str(labels), "--ckpt", str(calibrated), "--cases", str(listing)]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "calibration on 4 case(s): temperature" in printed and "run medimg calibrate" not in printed
    rows = _table(tmp_path / "scores_calibration.csv")
    assert [r["scaling"] for r in rows] == ["before"] * 15 + ["after"] * 15
    # the same figures from the logits and labels directly (the region: what the reference or the model calls
    # foreground), at T = 1 and at the checkpoint's temperature
    model = open_model(calibrated)
    z, y = (np.concatenate(a) for a in zip(*(case_logits(model, i, lab) for i, lab in pairs), strict=True))
    for scaling, t in (("before", 1.0), ("after", model.recipe.temperature)):
        part = [r for r in rows if r["scaling"] == scaling]
        ref = calibration(apply_temperature(z, t), y)
        assert float(part[0]["temperature"]) == pytest.approx(t, rel=1e-5)
        assert float(part[0]["ece"]) == pytest.approx(ref.ece, rel=1e-4, abs=1e-6)
        assert [int(r["count"]) for r in part] == [b.count for b in ref.bins] and ref.voxels > 0
        n = sum(int(r["count"]) for r in part)  # the ECE is the count-weighted gap of the bins written
        gap = sum(int(r["count"]) / n * abs(float(r["accuracy"]) - float(r["confidence"])) for r in part
                  if int(r["count"]))  # fmt: skip
        assert gap == pytest.approx(float(part[0]["ece"]), rel=1e-3, abs=1e-5)
    fig = plot_reliability(tmp_path / "scores_calibration.csv")
    assert [ax.get_title().split(" ")[0] for ax in fig.axes] == ["before", "after"]
    png = save_reliability_plot(tmp_path / "scores_calibration.csv")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(MedimgError, match="not a reliability table"):
        plot_reliability(out)  # the per-case scores, not the calibration table
    # an uncalibrated model: T = 1, both the same, and the fix named
    assert main([*args[:3], "--ckpt", str(plain), "--cases", str(listing)]) == 0
    assert "the model carries no temperature: run medimg calibrate" in capsys.readouterr().out


def _dicom_case(sites: Path, folder: Path) -> Path:
    """A held-out site-B case as a DICOM MR series, on the model's own grid (so no resampling blurs the check)."""
    image = load(sites / "imagesTs" / "B" / "PhantomB_004.nii.gz")
    values = np.rint(np.asarray(image.array)).astype(np.int16)
    write_series(Volume(values, image.affine), folder, modality="MR")
    return folder


def test_calibrated_probabilities_as_a_parametric_map(sites, models, tmp_path, dciodvfy, capsys):  # noqa: F811
    plain, calibrated = models
    series = _dicom_case(sites, tmp_path / "series")
    prob = {}
    for name, ckpt in (("plain", plain), ("calibrated", calibrated)):
        out = tmp_path / f"{name}_prob.dcm"
        mask = tmp_path / f"{name}.nii.gz"
        assert main(["segment", str(ckpt), str(series), str(mask), "--probabilities", str(out)]) == 0
        assert f"wrote probabilities: {out}" in capsys.readouterr().out
        dciodvfy(out)
        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(out))
        mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert mapping.LUTLabel == "PROBABILITY" and "class 1 (organ)" in mapping.LUTExplanation
        assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "1"
        back = read_parametric_map(out, reference=series)
        expected = Ensemble([open_model(ckpt)]).segment(series, probability_class=1).probability
        assert expected is not None
        np.testing.assert_allclose(back.affine, load(series).affine, atol=1e-4)
        np.testing.assert_allclose(back.array, expected.array, atol=1e-6)  # float32: no quantisation
        hd_values = np.asarray(pm.get_volume().array)  # highdicom's reading, axes (slice, row, column)
        assert sorted(hd_values.ravel()) == pytest.approx(sorted(np.asarray(back.array).ravel()), abs=1e-6)
        on_mask = np.asarray(load(mask).array) > 0
        assert on_mask.any()
        assert (np.asarray(back.array)[on_mask] >= 0.5 - 1e-3).all()  # the mask is where class 1 is the argmax
        prob[name] = np.clip(np.asarray(back.array, dtype=np.float64), 1e-6, 1 - 1e-6)
    # two classes on the model's grid: logit(p) = (z1 - z0) / T, so the calibrated map is the plain one at 1 / T
    t = open_model(calibrated).recipe.temperature
    logit = {k: np.log(v / (1 - v)) for k, v in prob.items()}
    sure = np.abs(logit["plain"]) < 10  # away from the clip
    np.testing.assert_allclose(logit["calibrated"][sure] * t, logit["plain"][sure], atol=2e-3)
    code = main(["segment", str(plain), str(sites / "imagesTs" / "B" / "PhantomB_004.nii.gz"),
                 str(tmp_path / "n.nii.gz"), "--probabilities", str(tmp_path / "n.dcm")])  # fmt: skip
    assert code == 2 and "DICOM" in capsys.readouterr().err and not (tmp_path / "n.nii.gz").exists()
