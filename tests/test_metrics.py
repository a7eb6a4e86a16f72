"""medimg.metrics: analytic shapes at anisotropic spacing, the empty-mask policy, lesion matching, ``evaluate`` over
folders, the CLI, and cross-checks against MedPy and MONAI (both use the same surface rule: foreground voxels with
a 6-connected background neighbour, distances by exact Euclidean transform with the voxel spacing)."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from medimg.cli import main
from medimg.io import Volume
from medimg.metrics import (
    bootstrap_ci,
    case_scores,
    class_scores,
    lesion_scores,
    surface_distances,
    surface_voxels,
    worst_distance_mm,
)
from medimg.metrics.evaluate import CaseMatchError, GridMismatchError, evaluate_folders, write_csv

SPACING = (0.8, 0.8, 2.5)  # mm, (i, j, k): a typical abdominal CT grid
VOXEL_DIAGONAL = math.sqrt(sum(s * s for s in SPACING))  # 2.74 mm: how far the voxel surface rule may move a distance


def ball(shape: tuple[int, ...], radius_mm: float, spacing=SPACING, centre=None) -> np.ndarray:
    centre = [n // 2 for n in shape] if centre is None else centre
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True)) <= radius_mm**2


def box(shape, start, size) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, a + n) for a, n in zip(start, size, strict=True))] = True
    return m


SHAPE = (48, 48, 20)  # 38 x 38 x 50 mm
INNER, OUTER = ball(SHAPE, 10.0), ball(SHAPE, 12.0)

# a cube of side 24 mm on a (0.75, 1.0, 2.0) mm grid, and the same cube shifted 3 mm (4 voxels) along i
CUBE_SPACING = (0.75, 1.0, 2.0)
CUBE = box((48, 34, 18), (4, 5, 3), (32, 24, 12))
CUBE_SHIFTED = box((48, 34, 18), (8, 5, 3), (32, 24, 12))


# ---------------------------------------------------------------------------------------------- analytic shapes
@pytest.mark.parametrize(
    ("what", "tolerance_mm", "field", "expected", "within"),
    [
        # concentric spheres of radius 10 and 12 mm: every surface point of one is 2 mm from the other
        ("spheres", 2.0, "hd_mm", 2.0, VOXEL_DIAGONAL),
        ("spheres", 2.0, "hd95_mm", 2.0, VOXEL_DIAGONAL),
        ("spheres", 2.0, "masd_mm", 2.0, VOXEL_DIAGONAL),
        ("spheres", 2.0, "assd_mm", 2.0, VOXEL_DIAGONAL),
        ("spheres", 1.0, "nsd", 0.0, 0.15),  # 2 mm apart: almost nothing within 1 mm (voxel steps let a few in)
        ("spheres", 3.0, "nsd", 1.0, 1e-9),  # everything within 3 mm
        ("spheres", 2.0, "dice", 2 * 10**3 / (10**3 + 12**3), 0.02),  # volumes ~ r^3, nested
        ("spheres", 2.0, "volume_ref_ml", 4 / 3 * math.pi * 10**3 / 1000, 0.1),
        ("spheres", 2.0, "volume_pred_ml", 4 / 3 * math.pi * 12**3 / 1000, 0.1),
        # cube of side 24 mm shifted 3 mm: Dice = 1 - 3/24, IoU = 21/27, HD = 3 mm exactly on this grid
        ("cube", 2.0, "dice", 1 - 3 / 24, 0.01 * (1 - 3 / 24)),
        ("cube", 2.0, "iou", 21 / 27, 1e-9),
        ("cube", 2.0, "hd_mm", 3.0, 1e-9),
        ("cube", 2.0, "hd95_mm", 3.0, 1e-9),
        ("cube", 2.0, "volume_error_ml", 0.0, 1e-9),
    ],
)
def test_analytic_shapes(what, tolerance_mm, field, expected, within):
    if what == "spheres":
        got = class_scores(OUTER, INNER, SPACING, nsd_tolerance_mm=tolerance_mm)
    else:
        got = class_scores(CUBE_SHIFTED, CUBE, CUBE_SPACING, nsd_tolerance_mm=tolerance_mm)
    assert getattr(got, field) == pytest.approx(expected, abs=within), got
    assert got.status == "present"


def test_hd95_is_the_larger_directed_95th_percentile():
    d = surface_distances(OUTER, INNER, SPACING)
    got = class_scores(OUTER, INNER, SPACING)
    assert got.hd95_mm == max(np.percentile(d.pred_to_ref, 95), np.percentile(d.ref_to_pred, 95))
    assert got.masd_mm == pytest.approx((d.pred_to_ref.mean() + d.ref_to_pred.mean()) / 2)
    assert got.assd_mm == pytest.approx(np.concatenate([d.pred_to_ref, d.ref_to_pred]).mean())


@pytest.mark.parametrize(
    ("mask", "surface_count"),
    [
        (box((5, 5, 5), (1, 1, 1), (3, 3, 3)), 26),  # a 3^3 cube: all but its centre voxel
        (box((3, 3, 3), (0, 0, 0), (3, 3, 3)), 26),  # the same filling the image: outside the image is background
        (box((7, 7, 7), (1, 1, 1), (5, 5, 5)), 125 - 27),
        (np.zeros((4, 4, 4), bool), 0),
    ],
)
def test_surface_rule_six_connected(mask, surface_count):
    assert int(surface_voxels(mask).sum()) == surface_count


def test_bounding_box_crop_gives_the_whole_image_numbers():
    # two classes, one touching the image border: the per-class crop in case_scores changes nothing
    ref = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    ref[INNER], pred[OUTER] = 1, 1
    ref[:6, :, :4], pred[:5, :, :4] = 2, 2
    got = case_scores(pred, ref, SPACING, [1, 2], nsd_tolerance_mm={1: 1.0, 2: 3.0})
    for c, tol in ((1, 1.0), (2, 3.0)):
        whole = class_scores(pred == c, ref == c, SPACING, nsd_tolerance_mm=tol)
        assert got[c] == whole


# ---------------------------------------------------------------------------------------------- empty masks
DIAGONAL = worst_distance_mm(SHAPE, SPACING)


@pytest.mark.parametrize(
    ("pred", "ref", "status", "dice", "distance", "nsd"),
    [
        (np.zeros(SHAPE, bool), np.zeros(SHAPE, bool), "both_empty", 1.0, 0.0, 1.0),
        (np.zeros(SHAPE, bool), INNER, "missed", 0.0, DIAGONAL, 0.0),
        (INNER, np.zeros(SHAPE, bool), "false_positive", 0.0, DIAGONAL, 0.0),
    ],
)
def test_empty_mask_policy(pred, ref, status, dice, distance, nsd):
    got = class_scores(pred, ref, SPACING)
    assert (got.status, got.dice, got.iou, got.nsd) == (status, dice, dice, nsd)
    assert got.hd_mm == got.hd95_mm == got.masd_mm == got.assd_mm == pytest.approx(distance)
    assert pytest.approx(math.hypot(48 * 0.8, 48 * 0.8, 20 * 2.5)) == DIAGONAL


def test_missing_a_class_makes_mean_hd95_worse_not_better():
    """The bug this module fixes: with MONAI's HausdorffDistanceMetric an empty prediction is NaN and drops out of
    the mean, so a model that misses the hard case scores a *better* mean HD95. medimg scores it the diagonal."""
    import torch
    from monai.metrics import HausdorffDistanceMetric
    from monai.networks.utils import one_hot

    ref = np.zeros(SHAPE, np.uint8)
    ref[INNER] = 1
    good, sloppy, missed = ref.copy(), np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    sloppy[OUTER] = 1
    found = [good, sloppy]  # the model finds the organ in both cases
    misses = [good, missed]  # the model misses it in the second case

    def medimg_mean(preds):
        return float(np.mean([case_scores(p, ref, SPACING, [1])[1].hd95_mm for p in preds]))

    assert medimg_mean(misses) > medimg_mean(found) + 10.0

    def monai_mean(preds):
        metric = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="mean_batch")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for p in preds:
                metric(one_hot(torch.as_tensor(p)[None, None], 2), one_hot(torch.as_tensor(ref)[None, None], 2))
            return float(metric.aggregate()[0])

    assert monai_mean(misses) < monai_mean(found)  # MONAI's NaN-drop: missing the organ "improves" HD95


# ---------------------------------------------------------------------------------------------- lesions
def _lesion_set() -> tuple[np.ndarray, np.ndarray]:
    shape = (40, 40, 10)
    ref = box(shape, (2, 2, 2), (6, 6, 4)) | box(shape, (15, 2, 2), (6, 6, 4)) | box(shape, (30, 30, 2), (6, 6, 4))
    pred = (
        box(shape, (2, 2, 2), (6, 6, 4))  # A: exact (IoU 1)
        | box(shape, (18, 2, 2), (6, 6, 4))  # B shifted half a lesion: IoU 3/9 = 0.33
        | box(shape, (35, 35, 2), (2, 2, 4))  # touches C in one corner voxel column: IoU 4/152 < 0.1
        | box(shape, (30, 2, 2), (3, 3, 3))  # D: a false positive
    )
    return pred, ref


@pytest.mark.parametrize(
    ("iou", "matched", "sensitivity", "precision", "f1"),
    [
        (0.1, 2, 2 / 3, 2 / 4, 4 / 7),
        (0.5, 1, 1 / 3, 1 / 4, 2 / 7),  # panoptica's default threshold: B no longer matches
        (0.0, 3, 1.0, 3 / 4, 6 / 7),  # any overlap
    ],
)
def test_lesion_wise_scores(iou, matched, sensitivity, precision, f1):
    pred, ref = _lesion_set()
    got = lesion_scores(pred, ref, iou_threshold=iou)
    assert (got.ref_lesions, got.pred_lesions, got.matched) == (3, 4, matched)
    assert (got.sensitivity, got.precision, got.f1) == pytest.approx((sensitivity, precision, f1))


def test_lesion_scores_of_empty_masks():
    empty = np.zeros((5, 5, 5), bool)
    one = box((5, 5, 5), (1, 1, 1), (2, 2, 2))
    assert lesion_scores(empty, empty).f1 == 1.0
    fp = lesion_scores(one, empty)
    assert (fp.sensitivity, fp.precision, fp.f1) == (1.0, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------- summaries
def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.8, 0.05, size=30)
    lo, hi = bootstrap_ci(values, seed=3)
    assert (lo, hi) == bootstrap_ci(values, seed=3)
    assert lo < values.mean() < hi
    assert bootstrap_ci([0.5]) == (0.5, 0.5)


# ---------------------------------------------------------------------------------------------- evaluate
AFFINE = np.diag([*SPACING, 1.0])


def _labels(inner=True, second=True) -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    if inner:
        lab[INNER] = 1
    if second:
        lab[box(SHAPE, (2, 2, 2), (6, 6, 3))] = 2
    return lab


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, ref = tmp_path / "pred", tmp_path / "labels"
    Volume(_labels(), AFFINE).save(ref / "c1.nii.gz")
    Volume(_labels(), AFFINE).save(ref / "c2.nii.gz")
    Volume(_labels(), AFFINE).save(ref / "c3.nii.gz")  # no prediction
    Volume(_labels(), AFFINE).save(pred / "c1.nii.gz")
    Volume(_labels(second=False), AFFINE).save(pred / "c2.nii")  # class 2 missed
    Volume(_labels(), AFFINE).save(pred / "c9.nii.gz")  # no label
    return pred, ref


def test_evaluate_folders(folders, tmp_path):
    pred, ref = folders
    result = evaluate_folders(pred, ref, lesion_classes=[2])
    assert [(r["case_id"], r["class"], r["status"]) for r in result.rows] == [
        ("c1", 1, "present"),
        ("c1", 2, "present"),
        ("c2", 1, "present"),
        ("c2", 2, "missed"),
    ]
    assert (result.missing_predictions, result.missing_labels) == (["c3"], ["c9"])
    summary = {(r["class"], r["metric"]): r for r in result.summary}
    assert summary[1, "dice"]["mean"] == 1.0 and summary[1, "dice"]["n"] == 2
    assert summary[2, "dice"]["mean"] == 0.5
    assert summary[2, "hd95_mm"]["mean"] == pytest.approx(DIAGONAL / 2)  # the miss counts, at the diagonal
    assert summary[2, "lesion_f1"]["mean"] == 0.5
    assert (1, "lesion_f1") not in summary
    assert [(c["class"], c["missed"], c["false_positive"]) for c in result.counts] == [(1, 0, 0), (2, 1, 0)]

    out = write_csv(result.rows, tmp_path / "out" / "table.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case_id"] for r in rows] == ["c1", "c1", "c2", "c2"]
    assert float(rows[3]["hd95_mm"]) == pytest.approx(DIAGONAL, rel=1e-5)


def test_evaluate_refuses_another_space_naming_both_files(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "labels"
    Volume(_labels(), AFFINE).save(ref / "c1.nii.gz")
    shifted = AFFINE.copy()
    shifted[:3, 3] = (20.0, 0.0, 0.0)  # the same grid 20 mm to the left: a different field of view
    Volume(_labels(), shifted).save(pred / "c1.nii.gz")
    with pytest.raises(GridMismatchError) as err:
        evaluate_folders(pred, ref)
    message = str(err.value)
    assert str(pred / "c1.nii.gz") in message and str(ref / "c1.nii.gz") in message
    assert "\n" not in message


def test_evaluate_resamples_a_coarser_grid_of_the_same_space_with_a_note(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "labels"
    Volume(_labels(second=False), AFFINE).save(ref / "c1.nii.gz")
    # the same 38.4 x 38.4 x 50 mm box on a grid twice as coarse in-plane, first voxel centre moved accordingly
    coarse = np.diag([1.6, 1.6, 2.5, 1.0])
    coarse[:3, 3] = (0.4, 0.4, 0.0)
    Volume(ball((24, 24, 20), 10.0, (1.6, 1.6, 2.5), centre=(23.5 / 2 + 0.25, 23.5 / 2 + 0.25, 10)).astype(np.uint8),
           coarse).save(pred / "c1.nii.gz")  # fmt: skip
    result = evaluate_folders(pred, ref)
    assert "resampled" in result.rows[0]["note"] and "nearest neighbour" in result.rows[0]["note"]
    assert result.rows[0]["dice"] > 0.9


def test_evaluate_reads_dicom_seg_labels(tmp_path):
    from medimg.io import load
    from medimg.io.derived import write_seg
    from medimg.io.dicom.write import write_series

    rng = np.random.default_rng(0)
    write_series(Volume(rng.integers(0, 1000, size=SHAPE).astype(np.int16), AFFINE), tmp_path / "ct", modality="CT")
    image = load(tmp_path / "ct")
    seg = tmp_path / "labels" / "c1.dcm"
    write_seg(Volume(_labels(), image.affine), tmp_path / "ct", seg, labels={1: "spleen", 2: "liver"})
    Volume(_labels(second=False), image.affine).save(tmp_path / "pred" / "c1.nii.gz")
    result = evaluate_folders(tmp_path / "pred", tmp_path / "labels")
    assert [(r["class"], r["status"], r["dice"]) for r in result.rows] == [(1, "present", 1.0), (2, "missed", 0.0)]


def test_evaluate_without_common_cases_lists_both(tmp_path):
    Volume(_labels(), AFFINE).save(tmp_path / "labels" / "a.nii.gz")
    Volume(_labels(), AFFINE).save(tmp_path / "pred" / "b.nii.gz")
    with pytest.raises(CaseMatchError, match="labels a, predictions b"):
        evaluate_folders(tmp_path / "pred", tmp_path / "labels")


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_evaluate_prints_the_summary_and_writes_csvs(folders, tmp_path, capsys):
    pred, ref = folders
    argv = ["evaluate", str(pred), str(ref), "--out", str(tmp_path / "t.csv"), "--nsd-tolerance", "1=1", "2=3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "hd95_mm" in out and "95% CI" in out
    assert "1 label(s) without a prediction, not scored: c3" in out
    assert (tmp_path / "t.csv").exists() and (tmp_path / "t_summary.csv").exists()
    with open(tmp_path / "t.csv", newline="") as fh:
        assert [float(r["nsd_tolerance_mm"]) for r in csv.DictReader(fh)] == [1.0, 3.0, 1.0, 3.0]
    with open(tmp_path / "t_summary.csv", newline="") as fh:
        summary = {(r["class"], r["metric"]): r for r in csv.DictReader(fh)}
    assert summary["2", "hd95_mm"]["missed"] == "1" and summary["2", "hd95_mm"]["cases"] == "2"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p, r: (p / "c1.nii.gz").write_bytes(b"not a nifti"), "c1.nii.gz"),
        (lambda p, r: Volume(np.full(SHAPE, 0.5, np.float32), AFFINE).save(p / "c1.nii.gz"), "not whole numbers"),
        (lambda p, r: (r / "c1.nii.gz").unlink(), "no .nii, .nii.gz or .dcm"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(folders, make, expected, capsys):
    pred, ref = folders
    for f in [*pred.iterdir(), *ref.iterdir()]:
        if not f.name.startswith("c1."):
            f.unlink()
    make(pred, ref)
    assert main(["evaluate", str(pred), str(ref)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- cross-checks
SHAPES = {
    "spheres": (OUTER, INNER, SPACING),
    "cube": (CUBE_SHIFTED, CUBE, CUBE_SPACING),
    "ball_vs_box": (ball(SHAPE, 9.0), box(SHAPE, (14, 12, 6), (20, 22, 8)), SPACING),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_agrees_with_medpy(name):
    """MedPy (``medpy.metric.binary``) uses the same surface rule (``binary_erosion`` with connectivity 1) and the
    same exact distance transform, so HD, its ``assd`` (0.5.x: the mean over both sets, our ASSD) and the mean of
    its two directed ``asd`` (our MASD) agree to rounding. Its ``hd95`` pools both directed sets before the 95th
    percentile; ours takes the larger directed P95 (the Metrics Reloaded / MONAI definition), which is never
    smaller; they differ when one surface is much larger than the other (ball_vs_box)."""
    from medpy.metric import binary

    pred, ref, spacing = SHAPES[name]
    ours = class_scores(pred, ref, spacing)
    assert ours.hd_mm == pytest.approx(binary.hd(pred, ref, voxelspacing=spacing), abs=1e-9)
    assert ours.assd_mm == pytest.approx(binary.assd(pred, ref, voxelspacing=spacing), abs=1e-9)
    directed = binary.asd(pred, ref, voxelspacing=spacing), binary.asd(ref, pred, voxelspacing=spacing)
    assert ours.masd_mm == pytest.approx(sum(directed) / 2, abs=1e-9)
    assert ours.dice == pytest.approx(binary.dc(pred, ref), abs=1e-12)
    pooled = binary.hd95(pred, ref, voxelspacing=spacing)
    d = surface_distances(pred, ref, spacing)
    assert pooled == pytest.approx(np.percentile(np.concatenate([d.pred_to_ref, d.ref_to_pred]), 95), abs=1e-9)
    assert ours.hd95_mm >= pooled - 1e-9


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_agrees_with_monai_given_the_spacing(name):
    """MONAI's functions, given ``spacing``, find the same edges (``binary_erosion ^ mask``) and exact distances:
    HD, HD95 (max of directed percentiles), ASSD (``symmetric=True``: mean over both sets) and NSD agree."""
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    pred, ref, spacing = SHAPES[name]
    p = torch.as_tensor(np.stack([~pred, pred]))[None].float()
    r = torch.as_tensor(np.stack([~ref, ref]))[None].float()
    ours = class_scores(pred, ref, spacing, nsd_tolerance_mm=1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = float(compute_hausdorff_distance(p, r, spacing=spacing)[0, 0])
        hd95 = float(compute_hausdorff_distance(p, r, percentile=95, spacing=spacing)[0, 0])
        assd = float(compute_average_surface_distance(p, r, symmetric=True, spacing=spacing)[0, 0])
        nsd = float(compute_surface_dice(p, r, class_thresholds=[1.5], spacing=spacing)[0, 0])
    assert (ours.hd_mm, ours.hd95_mm, ours.assd_mm, ours.nsd) == pytest.approx((hd, hd95, assd, nsd), abs=1e-4)


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("affine", "fallback", "expected"),
    [
        ("one", None, [SPACING, SPACING]),  # a MetaTensor after Spacingd: its affine is the preprocessed grid
        ("batched", None, [SPACING, (1.5, 1.5, 2.0)]),  # a collated batch: one affine per case
        (None, (1.5, 1.5, 2.0), [(1.5, 1.5, 2.0)] * 2),  # a plain tensor: the checkpoint's preprocessing spacing
        (None, None, [(1.0, 1.0, 1.0)] * 2),  # nothing known: voxels, said in the log
    ],
)
def test_validation_grid_spacing(affine, fallback, expected):
    import torch
    from monai.data import MetaTensor

    from medimg.tasks.site_metrics import grid_spacings

    image = torch.zeros(2, 1, 4, 4, 4)
    if affine == "one":
        image = MetaTensor(image, affine=torch.diag(torch.tensor([*SPACING, 1.0], dtype=torch.float64)))
    elif affine == "batched":
        image = MetaTensor(image)
        diagonals = [[*SPACING, 1.0], [1.5, 1.5, 2.0, 1.0]]
        image.affine = torch.stack([torch.diag(torch.tensor(v, dtype=torch.float64)) for v in diagonals])
    np.testing.assert_allclose(grid_spacings(image, 2, fallback), expected, rtol=1e-6)


def test_validation_scores_are_medimg_metrics_in_mm():
    """What SegmentationTask logs per case (``val/<metric>_class<c>``): the VALIDATION_METRICS entries of
    case_scores with the case's spacing; a missed class is the diagonal, never NaN."""
    import torch

    from medimg.metrics import VALIDATION_METRICS
    from medimg.tasks.site_metrics import score_batch

    truth = torch.as_tensor(np.stack([INNER, INNER]).astype(np.int64))
    pred = torch.as_tensor(np.stack([OUTER, np.zeros(SHAPE, bool)]).astype(np.int64))
    got = score_batch(pred, truth, [SPACING, SPACING], num_classes=2, tolerance_mm=2.0)
    assert sorted(got) == sorted(m.name for m in VALIDATION_METRICS) == ["dice", "hd95_mm", "nsd"]
    found = class_scores(OUTER, INNER, SPACING, nsd_tolerance_mm=2.0)
    assert got["hd95_mm"][:, 0].tolist() == pytest.approx([found.hd95_mm, DIAGONAL])
    assert got["dice"][:, 0].tolist() == pytest.approx([found.dice, 0.0])
    assert got["nsd"][:, 0].tolist() == pytest.approx([found.nsd, 0.0])
