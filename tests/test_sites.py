"""Sites: per-site metrics, grouped and leave-one-site-out splits, the scanner-shift preset, `medimg adapt`.

A two-site phantom (site B: bias field, 40 % less contrast, twice the noise) is trained on site A only, twice:
with the default augmentation and with the ``scanner_shift`` preset. Short CPU runs, so batch-norm momentum is
0.5 (the running statistics must follow weights that move fast over 3 epochs; the default 0.1 lags them).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from tests_support import SMALL_FIT

from medimg.cli import main
from medimg.data.datasets import kfold_split, leave_one_site_out, read_csv_manifest, read_msd, split_cases
from medimg.data.phantoms import make_phantom_msd, make_two_site_phantom
from medimg.errors import ConfigError
from medimg.io.dicom.sites import propose_site
from medimg.tasks.checkpoint import load_task
from medimg.tasks.lightning_cli import run_cli
from medimg.tasks.site_metrics import score_cases, site_table
from medimg.transforms.pipelines import augmentation
from medimg.viz.sites import save_site_plot

SITE_FIT = [
    *SMALL_FIT,
    "--data.intensity", "mr",
    "--data.patch_size", "[24, 24, 24]",
    "--model.roi_size", "[24, 24, 24]",
    "--model.net_kwargs", "{channels: [8, 16, 32], strides: [2, 2], num_res_units: 1, norm: [batch, {momentum: 0.5}]}",
    "--data.epoch_length", "16",
    "--trainer.max_epochs", "3",
    "--trainer.check_val_every_n_epoch", "3",
    "--seed_everything", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory) -> Path:
    return make_two_site_phantom(tmp_path_factory.mktemp("sites") / "TwoSites", 4, 2, shape=(32, 32, 24), seed=0)


def _fit(root: Path, out: Path, augment: str) -> Path:
    args = ["fit", *SITE_FIT, "--data.dataset_dir", str(root), "--data.held_out_site", "B", "--data.augment", augment]
    run_cli([*args, "--trainer.default_root_dir", str(out)])
    return out


@pytest.fixture(scope="module")
def runs(two_sites, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("site_runs")
    return {aug: _fit(two_sites, base / aug, aug) for aug in ("default", "scanner_shift")}


def _held_out(root: Path) -> list[dict[str, str]]:
    return [{**c, "label": c["image"].replace("imagesTs", "labelsTs")} for c in read_msd(root).test]


def _dice_by_site(ckpt: Path | object, root: Path) -> dict[str, float]:
    task = load_task(ckpt) if isinstance(ckpt, Path) else ckpt
    return {r["site"]: r["dice"] for r in site_table(score_cases(task, _held_out(root)), ("dice", "hd95_mm"))}


def test_per_site_table_shows_the_shift_and_what_recovers_it(two_sites, runs, tmp_path, capsys):
    default, preset = runs["default"], runs["scanner_shift"]
    # validation during fit: leave-one-site-out, so site B only, in the logs, a CSV and a plot
    version = default / "lightning_logs" / "version_0"
    rows = list(csv.DictReader((version / "per_site_val.csv").open()))
    assert {r["site"] for r in rows} == {"B"} and rows[0]["class"] == "organ"
    assert save_site_plot(version / "per_site_val.csv").stat().st_size > 1000  # drawn apart, by viz
    logged = list(csv.DictReader((version / "metrics.csv").open()))
    assert any(r.get("val/site_B/dice_class1") for r in logged)

    # `medimg validate` on the held-out cases of both sites: the table shows the drop on B, and the gap
    out = tmp_path / "validate"
    code = main([
        "validate", "--config", str(version / "config.yaml"), "--ckpt_path", str(default / "checkpoints" / "last.ckpt"),
        "--data.dataset_dir", "null", "--data.manifest", str(two_sites / "test_cases.csv"), "--data.num_folds", "1",
        "--data.held_out_site", "null", "--trainer.default_root_dir", str(out),
    ])  # fmt: skip
    assert code == 0
    table = {r["site"]: r for r in csv.DictReader(next(out.glob("**/per_site_val.csv")).open())}
    assert set(table) == {"A", "B"} and table["A"]["cases"] == "2"
    dice_a, dice_b = float(table["A"]["dice"]), float(table["B"]["dice"])
    assert dice_a > 0.7 and dice_a - dice_b > 0.2, table  # the scanner shift costs site B
    gap = [r["val/site_gap_dice"] for r in csv.DictReader(next(out.glob("**/metrics.csv")).open())]
    assert abs(float(gap[-1]) - (dice_a - dice_b)) < 1e-4

    unadapted = _dice_by_site(default / "checkpoints" / "last.ckpt", two_sites)
    assert unadapted["B"] == pytest.approx(dice_b, abs=1e-4)  # score_cases repeats what validate computes
    # the preset, trained on A only, does better on B
    assert _dice_by_site(preset / "checkpoints" / "last.ckpt", two_sites)["B"] > unadapted["B"]

    # `medimg adapt` (AdaBN) on site B's *training* images, unlabelled; scored on B's held-out cases
    adapted = tmp_path / "adapted.ckpt"
    capsys.readouterr()
    code = main(["adapt", str(default / "checkpoints" / "last.ckpt"), "--images", str(two_sites / "imagesTr" / "B"),
                 "--out", str(adapted)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "proxy before" in printed and "proxy after" in printed
    assert _dice_by_site(adapted, two_sites)["B"] > unadapted["B"]
    record = torch.load(adapted, map_location="cpu", weights_only=True)["adaptation"][-1]
    assert record["method"] == "adabn" and len(record["images"]) == 4 and len(record["images_digest"]) == 64
    assert record["after"]["flip_agreement"] >= record["before"]["flip_agreement"]


def test_adapt_refuses_what_the_proxy_says_is_worse(two_sites, runs, tmp_path, capsys):
    # entropy minimisation alone drives this small net towards "all background" (confident; a net that predicts
    # nothing agrees with itself under flips, which is why the proxy also guards the predicted foreground)
    out = tmp_path / "tent.ckpt"
    two = tmp_path / "two_images"  # two of site B's images are enough, and halve the proxy's cost
    two.mkdir()
    for name in ("PhantomB_000.nii.gz", "PhantomB_001.nii.gz"):
        (two / name).symlink_to(two_sites / "imagesTr" / "B" / name)
    ckpt = runs["default"] / "checkpoints" / "last.ckpt"
    code = main(["adapt", str(ckpt), "--images", str(two), "--out", str(out), "--method",
                 "tent"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "tent made the unlabelled proxy worse (" in err, err
    assert "before: flip agreement" in err and "after: flip agreement" in err


def test_adapt_bad_input_is_one_line(two_sites, runs, tmp_path, capsys):
    ckpt = str(runs["default"] / "checkpoints" / "last.ckpt")
    empty = tmp_path / "empty"
    empty.mkdir()
    ct = make_phantom_msd(tmp_path / "ct", n_cases=1, n_test=0, shape=(16, 16, 8)) / "imagesTr"
    two = tmp_path / "two_channels"
    two.mkdir()
    image = nib.load(two_sites / "imagesTr" / "B" / "PhantomB_000.nii.gz")
    data = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), image.affine), two / "case.nii.gz")
    for folder, expected in ((empty, "no images here"), (ct, "the image is CT but the model was trained on MR"),
                             (two, "the image has 2 channels")):  # fmt: skip
        code = main(["adapt", ckpt, "--images", str(folder), "--out", str(tmp_path / "x.ckpt")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "x.ckpt").exists()


def test_grouped_folds_never_split_a_patient(tmp_path):
    rng = np.random.default_rng(1)
    patients = [f"P{p}" for p in range(9) for _ in range(int(rng.integers(1, 4)))]  # 1-3 scans each
    for k in (2, 3, 5):
        seen: dict[str, set[int]] = {}
        for fold in range(k):
            train, val = kfold_split(len(patients), k, fold, seed=0, groups=patients)
            assert sorted(train + val) == list(range(len(patients)))
            assert not {patients[i] for i in train} & {patients[i] for i in val}
            for i in val:
                seen.setdefault(patients[i], set()).add(fold)
        assert all(len(f) == 1 for f in seen.values()) and len(seen) == 9  # each patient validated in one fold
    # one scan per patient: the grouped folds are the ungrouped ones
    assert kfold_split(7, 3, 1, seed=2, groups=list("abcdefg")) == kfold_split(7, 3, 1, seed=2)

    # the manifest's patient column drives the split the data modules use
    make_phantom_msd(tmp_path / "Task", n_cases=6, n_test=0, shape=(8, 8, 4))
    lines = ["image,label,site,patient"] + [
        f"Task/imagesTr/Phantom_{i:03d}.nii.gz,Task/labelsTr/Phantom_{i:03d}.nii.gz,{'AB'[i % 2]},P{i // 3}"
        for i in range(6)
    ]
    (tmp_path / "cases.csv").write_text("\n".join(lines) + "\n")
    cases = read_csv_manifest(tmp_path / "cases.csv").training
    assert [c["site"] for c in cases] == list("ABABAB") and cases[4]["patient"] == "P1"
    train, val = split_cases(cases, 2, 0)
    assert {cases[i]["patient"] for i in train}.isdisjoint(cases[i]["patient"] for i in val)
    train, val = split_cases(cases, 2, 0, held_out_site="A")
    assert [cases[i]["site"] for i in val] == ["A"] * 3 and [cases[i]["site"] for i in train] == ["B"] * 3


def test_leave_one_site_out_needs_two_sites(tmp_path, capsys):
    with pytest.raises(ConfigError, match="at least 2 sites; the 'site' column/field names only 'A'"):
        leave_one_site_out(["A", "A", "A"], "A")
    with pytest.raises(ConfigError, match="site 'C' is not in the data"):
        leave_one_site_out(["A", "B"], "C")
    make_phantom_msd(tmp_path / "Task", n_cases=3, n_test=0, shape=(16, 16, 8))
    lines = ["image,label,site"] + [
        f"Task/imagesTr/Phantom_{i:03d}.nii.gz,Task/labelsTr/Phantom_{i:03d}.nii.gz,A" for i in range(3)
    ]
    (tmp_path / "one_site.csv").write_text("\n".join(lines) + "\n")
    code = main(["fit", *SMALL_FIT, "--data.manifest", str(tmp_path / "one_site.csv"), "--data.held_out_site", "A",
                 "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("medimg: error: leave-one-site-out needs cases from at least 2 sites")


def test_scanner_shift_preset_is_off_by_default_and_keeps_labels():
    import monai.transforms as T

    names = {type(t).__name__ for t in augmentation((16, 16, 16)).transforms}
    assert "RandBiasFieldd" not in names  # off by default
    for modality, expect in (("MR", "RandGibbsNoised"), ("CT", "RandGaussianNoised")):
        pipe = augmentation((16, 16, 16), 2, preset="scanner_shift", modality=modality)
        assert expect in {type(t).__name__ for t in pipe.transforms}
        pipe.set_random_state(seed=0)
        image = torch.rand(1, 20, 20, 20)
        label = (image > 0.5).float()
        for out in pipe({"image": image, "label": label}):
            assert out["image"].shape == (1, 16, 16, 16) and set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
    assert "RandGibbsNoised" not in {type(t).__name__ for t in augmentation((16,) * 3, preset="scanner_shift",
                                                                             modality="CT").transforms}  # fmt: skip
    with pytest.raises(ConfigError, match="augmentation preset must be one of default, scanner_shift"):
        augmentation((16, 16, 16), preset="vendor_x")
    assert isinstance(augmentation((16, 16, 16)), T.Compose)


@pytest.mark.parametrize(
    ("header", "site"),
    [
        (
            {
                "Manufacturer": "SIEMENS",
                "ManufacturerModelName": "Skyra",
                "MagneticFieldStrength": 2.89362,
                "InstitutionName": "Hospital B",
            },
            "Hospital B | SIEMENS Skyra | 2.9T",
        ),
        (
            {
                "Manufacturer": "GE MEDICAL SYSTEMS",
                "ManufacturerModelName": "LightSpeed VCT",
                "ConvolutionKernel": "BONE",
            },
            "GE MEDICAL SYSTEMS LightSpeed VCT | BONE",
        ),
        (
            {"Manufacturer": "Philips", "ManufacturerModelName": "Philips Ingenia", "MagneticFieldStrength": "1.5"},
            "Philips Ingenia | 1.5T",
        ),
        ({"ConvolutionKernel": ["FC13", "AIDR 3D"]}, "FC13/AIDR 3D"),
        ({"PatientName": "DOE^JANE", "PatientID": "123"}, "unknown"),  # patient attributes are never read
    ],
)
def test_site_is_proposed_from_equipment_only(header, site):
    assert propose_site(header) == site
    import pydicom

    ds = pydicom.Dataset()
    for key, value in header.items():
        setattr(ds, key, value)
    assert propose_site(ds) == site


def test_site_and_patient_in_dataset_json(two_sites):
    cases = read_msd(two_sites)
    assert [c["site"] for c in cases.training] == ["A"] * 4 + ["B"] * 4
    assert len({c["patient"] for c in cases.training + cases.test}) == 12
    spec = json.loads((two_sites / "dataset.json").read_text())
    assert spec["test"][0]["site"] == "A" and cases.sites == ["A", "B"]


def test_classification_reports_per_site_accuracy(tmp_path):
    import pytorch_lightning as pl

    from medimg.data.classification import ClassificationDataModule
    from medimg.io import Volume
    from medimg.tasks.classification import ClassificationTask

    rng = np.random.default_rng(0)
    lines = ["image,label,site,patient"]
    for i in range(8):
        Volume(rng.random((16, 16, 1)).astype(np.float32), np.eye(4)).save(tmp_path / f"img{i}.nii.gz")
        lines.append(f"img{i}.nii.gz,{i % 2},{'AB'[i // 4]},P{i // 2}")
    (tmp_path / "cases.csv").write_text("\n".join(lines) + "\n")
    dm = ClassificationDataModule(str(tmp_path / "cases.csv"), image_size=(16, 16), num_folds=1, num_workers=0)
    task = ClassificationTask(num_classes=2)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(task, datamodule=dm, verbose=False)[0]
    acc_a, acc_b = logged["val/site_A/accuracy"], logged["val/site_B/accuracy"]
    assert logged["val/site_gap_accuracy"] == pytest.approx(abs(acc_a - acc_b))
    dm = ClassificationDataModule(str(tmp_path / "cases.csv"), image_size=(16, 16), held_out_site="B", num_workers=0)
    dm.setup()
    assert len(dm.train_ds) == 4 and len(dm.val_ds) == 4


def test_scan_proposes_a_site_per_series_without_patient_attributes(tmp_path):
    from pydicom.data import get_testdata_file

    from medimg.io.dicom.scan import scan

    src = get_testdata_file("CT_small.dcm")
    assert src is not None
    ds = pydicom.dcmread(src)
    ds.save_as(tmp_path / "ct.dcm")
    (summary,) = [s.summary() for s in scan(tmp_path).series]
    assert summary["site"] == propose_site(ds)
    assert str(ds.InstitutionName) in summary["site"] and str(ds.Manufacturer) in summary["site"]
    assert str(ds.PatientName) not in json.dumps(summary) and str(ds.PatientID) not in json.dumps(summary)
