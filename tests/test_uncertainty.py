"""Knowing when the model is wrong: ensembles and flips give uncertainty maps and a risk per case, temperature
scaling calibrates the probabilities, the worklist can show the riskiest case first, and ``medimg adapt`` works on
the networks ``medimg plan`` makes.

Three small members (the plan's CPU UNet with fewer channels; instance norm without affine, as planned) are
trained in plain torch on site A of the two-site phantom for a few seconds each, from different seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax as scipy_softmax
from test_export import save_checkpoint

from medimg.cli import main
from medimg.data.phantoms import make_two_site_phantom
from medimg.errors import ConfigError, ModelError
from medimg.inference.calibrate import calibrate, write_calibrated
from medimg.inference.ensemble import Ensemble, open_ensemble
from medimg.inference.model import model_from_task, open_model
from medimg.inference.uncertainty import pairwise_dice, uncertainty_maps
from medimg.io import load
from medimg.io.volume import Volume
from medimg.metrics.calibration import apply_temperature, calibration, fit_temperature
from medimg.plan.network import network
from medimg.plan.topology import Topology
from medimg.review.store import Feedback, FeedbackStore
from medimg.review.study.orders import read_orders
from medimg.review.study.reading import ExplanationSource, ReadingSession
from medimg.review.study.study_report import study_html
from medimg.review.study.worklist import CaseRisk, read_worklist

PREP = {"spacing": [1.5, 1.5, 2.0], "intensity": "mr", "ct_window": [-57.0, 164.0], "crop_foreground": False,
        "patch_size": [32, 32, 24]}  # fmt: skip
ROI = (32, 32, 24)


def planned_kwargs() -> dict[str, object]:
    """The CPU network `medimg plan` makes for three stages, with fewer channels and residual units (speed)."""
    topo = Topology(kernels=((3, 3, 3),) * 3, strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)), pools_per_axis=(2, 2, 2))
    name, kwargs, _ = network("cpu", topo)
    assert name == "unet" and kwargs["norm"] == "instance"  # what adapt must work on
    return {**kwargs, "channels": [8, 16, 32], "num_res_units": 1}


def _task(seed: int, prep: dict[str, object] = PREP, num_classes: int = 2):
    from medimg.tasks.segmentation import SegmentationTask

    torch.manual_seed(seed)
    return SegmentationTask(net="unet", net_kwargs=planned_kwargs(), num_classes=num_classes, roi_size=ROI,
                            sw_batch_size=1, preprocessing=prep, labels={1: "organ"})  # fmt: skip


def _train(task, x: torch.Tensor, y: torch.Tensor, seed: int, steps: int = 45):
    opt = torch.optim.Adam(task.net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    task.train()
    for step in range(steps):
        pick = torch.randint(0, len(x), (2,), generator=g)
        xb, yb = x[pick], y[pick]
        if step % 2:
            xb, yb = xb.flip(2), yb.flip(2)
        loss = task.loss_fn(task.net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return task.eval()


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Path:
    return make_two_site_phantom(tmp_path_factory.mktemp("u") / "TwoSites", 4, 2, shape=(32, 32, 24), seed=0)


@pytest.fixture(scope="module")
def members(sites, tmp_path_factory) -> list[Path]:
    """Three checkpoints trained on site A's four training cases."""
    from medimg.transforms.pipelines import Preprocessing, preprocessing

    pp = preprocessing(Preprocessing.from_dict(PREP), keys=["image", "label"])
    cases = [pp({"image": str(p), "label": str(sites / "labelsTr" / "A" / p.name)})
             for p in sorted((sites / "imagesTr" / "A").glob("*.nii.gz"))]  # fmt: skip
    x = torch.stack([torch.as_tensor(c["image"]) for c in cases]).float()
    y = torch.stack([torch.as_tensor(c["label"]) for c in cases]).float()
    folder = tmp_path_factory.mktemp("members")
    return [save_checkpoint(_train(_task(s), x, y, s), folder / f"fold{s}.ckpt") for s in range(3)]


def _failures(sites: Path, folder: Path) -> dict[str, Path]:
    """A clean held-out site-A case and two injected failures of it: a foreign structure with the organ's
    intensity, and the organ's contrast cut to 15 %."""
    from medimg.data.phantoms import _ellipsoid

    clean = load(sites / "imagesTs" / "A" / "PhantomA_004.nii.gz")
    a = np.asarray(clean.array, dtype=np.float32)
    foreign = a.copy()
    foreign[_ellipsoid(a.shape, (8, 22, 12), (4, 4, 9))] = 520.0
    body = 300.0
    low = np.where(a > 150, body + 0.15 * (a - body), a)
    folder.mkdir()
    return {
        name: Volume(arr.astype(np.float32), clean.affine, {"modality": "MR"}).save(folder / f"{name}.nii.gz")
        for name, arr in (("clean", a), ("foreign", foreign), ("lowcontrast", low))
    }


def _dice(mask: Path, label: Path) -> float:
    m, t = np.asarray(load(mask).array) > 0, np.asarray(load(label).array) > 0
    return float(2 * (m & t).sum() / max(m.sum() + t.sum(), 1))


def test_injected_failures_rank_above_the_clean_case(sites, members, tmp_path, capsys):
    images = _failures(sites, tmp_path / "images")
    out = tmp_path / "pred"
    for name, image in images.items():
        code = main(["segment", *map(str, members), str(image), str(out / f"{name}.nii.gz")])
        assert code == 0
        assert "ensemble: 3 probability maps" in capsys.readouterr().out
    label = sites / "labelsTs" / "A" / "PhantomA_004.nii.gz"
    truth = {name: _dice(out / f"{name}.nii.gz", label) for name in images}
    assert truth["clean"] > 0.8 and max(truth["foreign"], truth["lowcontrast"]) < 0.7, truth  # real failures
    risks = {n: json.loads((out / f"{n}_risk.json").read_text()) for n in images}
    assert risks["foreign"]["risk"] > risks["clean"]["risk"] and risks["lowcontrast"]["risk"] == 1.0, risks
    assert risks["clean"]["members"] == 3 and risks["clean"]["volume_ml"] > 0
    uncertainty = load(out / "clean_uncertainty.nii.gz")
    assert uncertainty.shape == load(images["clean"]).shape and float(np.asarray(uncertainty.array).max()) > 0

    # triage: the worklist of these cases by risk, highest first, at every sitting and for every reader
    listing = tmp_path / "cases.csv"
    rows = [f"{n},{p}" for n, p in images.items()]
    listing.write_text("case_id,image\n" + "\n".join(reversed(rows)) + "\n")
    worklist = read_worklist(listing, order="risk", risk=out)
    order = [c.case_id for c in worklist.for_reader("ann")]
    assert order[-1] == "clean" and order[0] == "lowcontrast", order
    assert [c.case_id for c in read_worklist(listing, order="risk", risk=out).for_reader("bob")] == order


def test_flips_and_identical_members(sites, members, tmp_path):
    model = open_model(members[0])
    image = sites / "imagesTs" / "A" / "PhantomA_004.nii.gz"
    same = Ensemble([model, model]).segment(image, tmp_path / "same.nii.gz")
    assert float(np.asarray(same.disagreement.array).max()) == 0.0
    assert same.risk.pairwise_dice == 1.0 and same.risk.volume_ml_spread == 0.0
    assert np.array_equal(same.mask.array, model.segment(image).array)  # the mean of equal maps is the map
    tta = model.segment_uncertain(image)
    assert tta.risk.source == "tta" and tta.risk.members == 4 and 0 < tta.risk.pairwise_dice <= 1
    with pytest.raises(ModelError, match="the same model is given twice"):
        open_ensemble([members[0], members[0]])


def test_voxel_maps_by_hand():
    p = np.zeros((2, 2, 2, 1, 1), dtype=np.float32)  # 2 members, 2 classes, 2 voxels
    p[:, 0, 0] = 1.0  # voxel 0: both members certain of background
    p[0, 1, 1] = 1.0
    p[1, 0, 1] = 1.0  # voxel 1: each member certain, of different classes
    maps = uncertainty_maps(p)
    assert maps.entropy[0, 0, 0] == 0.0 and maps.entropy[1, 0, 0] == pytest.approx(np.log(2), abs=1e-5)
    assert maps.mutual_information[1, 0, 0] == pytest.approx(np.log(2), abs=1e-5)  # all of it is disagreement
    assert maps.disagreement[0, 0, 0] == 0.0 and maps.disagreement[1, 0, 0] == 0.5
    masks = np.zeros((3, 4, 4, 4), dtype=np.uint8)
    masks[:, 1:3, 1:3, 1:3] = 1
    assert pairwise_dice(masks, 2) == 1.0
    masks[2, 1] = 0  # one member loses half its voxels: Dice 8 / 12 with each of the others
    assert pairwise_dice(masks, 2) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_temperature_scaling():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, size=(20000, 3))
    labels = np.array([rng.choice(3, p=p) for p in scipy_softmax(z, axis=1)])  # calibrated at T = 1
    np.testing.assert_allclose(apply_temperature(z, 1.0), scipy_softmax(z, axis=1), rtol=1e-12)
    confident = 4.0 * z  # an over-confident model: the same ranking, logits four times too large
    t = fit_temperature(confident, labels)
    assert t == pytest.approx(4.0, rel=0.1)
    before = calibration(apply_temperature(confident, 1.0), labels, region="all")
    after = calibration(apply_temperature(confident, t), labels, region="all")
    assert after.ece < before.ece / 2 and after.region == "all" and sum(b.count for b in after.bins) == 20000
    assert np.array_equal(apply_temperature(confident, t).argmax(1), confident.argmax(1))  # labels never change


def test_calibrated_checkpoint_carries_its_temperature(sites, members, tmp_path, capsys):
    listing = tmp_path / "val.csv"
    val = sorted((sites / "imagesTr" / "B").glob("*.nii.gz"))[:2]
    listing.write_text("case_id,image,label\n" + "".join(
        f"{p.name.split('.')[0]},{p},{sites / 'labelsTr' / 'B' / p.name}\n" for p in val))  # fmt: skip
    out = tmp_path / "calibrated.ckpt"
    assert main(["calibrate", str(members[1]), str(listing), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ECE (foreground voxels" in printed and "wrote" in printed
    model = open_model(out)
    fit = calibrate(open_model(members[1]), [(p, sites / "labelsTr" / "B" / p.name) for p in val])
    assert model.recipe.temperature == pytest.approx(fit.temperature) and fit.temperature != 1.0
    assert fit.after.ece <= fit.before.ece  # fitted on these voxels: never worse on them
    assert open_model(members[1]).recipe.temperature == 1.0  # a checkpoint without calibration reads as T = 1
    write_calibrated(members[1], fit, tmp_path / "again.ckpt")
    image = val[0]
    plain = Ensemble([model_from_task(_task(0))]).segment(image)  # one member, no flips: temperature 1
    assert plain.risk.source == "single" and plain.risk.pairwise_dice == 1.0


def test_members_with_other_recipes_are_refused(tmp_path, capsys, sites):
    image = str(sites / "imagesTs" / "A" / "PhantomA_004.nii.gz")
    a = save_checkpoint(_task(0), tmp_path / "a.ckpt")
    spacing = save_checkpoint(_task(1, {**PREP, "spacing": [1.0, 1.0, 1.0]}), tmp_path / "b.ckpt")
    classes = save_checkpoint(_task(2, num_classes=3), tmp_path / "c.ckpt")
    for other, needle in ((spacing, "differ in preprocessing.spacing ([1.5, 1.5, 2.0] vs [1.0, 1.0, 1.0])"),
                          (classes, "differ in num_classes (2 vs 3)")):  # fmt: skip
        code = main(["segment", str(a), str(other), image, str(tmp_path / "out.nii.gz")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
        assert "a.ckpt and" in err
    assert not (tmp_path / "out.nii.gz").exists()


def test_worklist_order_is_recorded_for_the_study_report(tmp_path):
    for name in ("c1", "c2", "c3"):
        Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)).save(tmp_path / f"{name}.nii.gz")
    risks = {"c1": CaseRisk(0.2, "members agree"), "c2": CaseRisk(0.2, "members agree"), "c3": CaseRisk(0.9, "x")}
    by_risk = read_worklist(tmp_path, order="risk", risk=risks)
    assert [c.case_id for c in by_risk.for_reader("ann")] == ["c3", "c1", "c2"]  # ties by case id
    blinded = read_worklist(tmp_path)
    assert blinded.order == "blinded"
    assert [c.case_id for c in blinded.for_reader("ann")] == [c.case_id for c in blinded.for_reader("ann ")]
    with pytest.raises(ConfigError, match="needs the risk records"):
        read_worklist(tmp_path, order="risk")
    store = FeedbackStore(tmp_path / "reviews.sqlite")
    source = ExplanationSource(precomputed=tmp_path)
    ReadingSession(by_risk, "ann", store, source)
    ReadingSession(blinded, "bob", store, source)
    assert read_orders(store.path) == {"ann": "by risk, highest first", "bob": "blinded random"}
    for reader in ("ann", "bob"):
        store.add(Feedback("c1", reader, "agree", "0" * 64, "0" * 64, "gradcam", "layer"))
    page = "".join(study_html(store.all(), ["c1", "c2", "c3"], (), read_orders(store.path)))
    assert "<td>ann</td><td>by risk, highest first</td>" in page and "<td>bob</td><td>blinded random</td>" in page


def test_adapt_works_on_a_planned_network(sites, members, tmp_path):
    from medimg.tasks.adapt import adapt, adapt_checkpoint
    from medimg.tasks.checkpoint import load_task

    task = load_task(members[0])
    assert not any(p for m in task.net.modules() if isinstance(m, torch.nn.InstanceNorm3d) for p in m.parameters())
    images = sorted((sites / "imagesTr" / "B").glob("*.nii.gz"))[:2]
    report = adapt(task, images, windows_per_image=2, tent_steps=3)  # the default picks what applies
    assert report.method == "tent"
    norms = [m for m in task.net.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert norms and all(m.affine for m in norms) and any(float((m.weight.detach() - 1).abs().max()) > 0 for m in norms)
    assert task.hparams["net_kwargs"]["norm"] == ["instance", {"affine": True}]
    # the written checkpoint opens like any other: with an identity affine (no TENT step) the proxy is unchanged,
    # so it is written, and it segments exactly as the checkpoint it came from
    two = tmp_path / "two_images"
    two.mkdir()
    for image in images:
        (two / image.name).symlink_to(image)
    out = tmp_path / "adapted.ckpt"
    assert adapt_checkpoint(members[0], two, out, windows_per_image=1, tent_steps=0).method == "tent"
    adapted = open_model(out)  # rebuilt with affine instance norms, weights loaded strictly
    assert adapted.hparams["net_kwargs"]["norm"] == ["instance", {"affine": True}]
    assert np.array_equal(adapted.segment(images[0]).array, open_model(members[0]).segment(images[0]).array)
