"""``medimg demo``: the main job end to end on data that ships inside installed packages (no download).

1. scan pydicom's messy sample folder and print the QA table; load the enhanced CT sample in Hounsfield
   units; convert the usable series to NIfTI with sidecars;
2. build the MNI152 brain-tissue task (nilearn's template, MSD layout) and write its held-out case as a
   DICOM MR series, as a scanner would send it;
3. plan the task from its fingerprint (``medimg plan``, 40 s of CPU training) and train it with ``medimg fit``;
4. segment the held-out DICOM series with the best checkpoint and report its Dice; write the mask as NIfTI and
   as a DICOM SEG referencing the series (``*_seg.dcm``);
5. explain the segmentation (HiResCAM heatmap, randomisation sanity check), write the heatmap as NIfTI and as a
   DICOM Parametric Map (``*_heatmap.dcm``), and write an HTML review page.

Everything goes under ``outputs/demo/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from medimg.io.atomic import atomic_write_text
from medimg.io.volume import Volume

__all__ = ["ensure_demo_model", "run_demo"]


def ensure_demo_model(out: str | os.PathLike[str] = "outputs/demo") -> dict[str, Path]:
    """The demo's trained brain model and held-out case, training it (about a minute on CPU) only if missing.

    Returns paths: ``checkpoint``, ``image`` (held-out NIfTI), ``dicom`` (the same case as a DICOM series),
    ``label`` (its reference mask).
    """
    out = Path(out)
    summary = out / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        ckpt = Path(str(data.get("checkpoint", "")))
        if ckpt.is_file():
            return _demo_paths(out, ckpt)
    run_demo(out)
    return _demo_paths(out, Path(json.loads(summary.read_text())["checkpoint"]))


def _demo_paths(out: Path, ckpt: Path) -> dict[str, Path]:
    return {
        "checkpoint": ckpt,
        "image": out / "MNI152Brain" / "imagesTs" / "MNI152Brain_008.nii.gz",
        "dicom": out / "dicom" / "MNI152Brain_008",
        "label": out / "MNI152Brain" / "labelsTs" / "MNI152Brain_008.nii.gz",
    }


def run_demo(out: str | os.PathLike[str] = "outputs/demo") -> dict[str, object]:
    from medimg.data.samples import pydicom_file, pydicom_folder
    from medimg.io import load, scan
    from medimg.io.convert import convert

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    folder = pydicom_folder("dicomdirtests")
    print(f"[1/7] scanning {folder} (pydicom's sample DICOM tree)")
    found = scan(folder)
    print(found.table())

    print("\n[2/7] loading the enhanced multi-frame CT sample (eCT_Supplemental.dcm)")
    ct = load(pydicom_file("eCT_Supplemental.dcm"))
    print(f"      {ct}  values [{int(ct.array.min())}, {int(ct.array.max())}] ({ct.meta['value_unit']})")
    ct_path = ct.save(out / "eCT_Supplemental.nii.gz")

    print(f"\n[3/7] converting the usable series to NIfTI under {out / 'nifti'}")
    report = convert(folder, out / "nifti")
    for p in report.written:
        print(f"      wrote {p}")
    for key, why in report.refused.items():
        print(f"      refused {key}: {why}")
    print(f"\n[4/7] building the MNI152 brain-tissue task under {out / 'MNI152Brain'}")
    from medimg.data.phantoms import make_mni_msd

    dataset = make_mni_msd(out / "MNI152Brain", n_cases=8, n_test=1, voxel_mm=3.0, seed=0)
    held_image = dataset / "imagesTs" / "MNI152Brain_008.nii.gz"
    held_label = dataset / "labelsTs" / "MNI152Brain_008.nii.gz"
    dicom_dir = out / "dicom" / "MNI152Brain_008"
    _write_mr_series(load(held_image), dicom_dir)
    print(f"      held-out case written as a DICOM MR series: {dicom_dir}")

    print(
        f"\n[5/7] planning the task (medimg plan --device cpu --time-budget {DEMO_TIME_BUDGET}) and training it on CPU"
    )
    run = out / "run"
    shutil.rmtree(run, ignore_errors=True)
    from medimg.plan import plan_dataset
    from medimg.tasks.lightning_cli import run_cli

    plan, plan_path = plan_dataset(dataset, out / "plan.yaml", device="cpu", time_budget=DEMO_TIME_BUDGET)
    print("\n".join(f"      {line}" for line in plan.summary) + f"\n      plan: {plan_path}")
    run_cli(
        [
            "fit",
            "--config",
            str(plan_path),
            "--trainer.default_root_dir",
            str(run),
            "--trainer.enable_model_summary",
            "false",
        ]
    )
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))[-1]

    print(f"\n[6/7] segmenting the held-out DICOM series with {best.name}")
    from medimg.tasks.inference import segment

    mask = segment(best, dicom_dir, out / "MNI152Brain_008_mask.nii.gz", device="cpu")
    truth = np.asarray(load(held_label).array) > 0
    pred = np.asarray(mask.array) > 0
    dice = float(2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1))
    print(f"      Dice on the held-out case: {dice:.4f}  (mask: {out / 'MNI152Brain_008_mask.nii.gz'})")
    seg_dcm = _write_seg(mask, dicom_dir, best, out / "MNI152Brain_008_seg.dcm")
    print(f"      DICOM SEG referencing the held-out series: {seg_dcm}")
    print("\n[7/7] explaining the held-out segmentation (HiResCAM + randomisation check) and writing a review page")
    from medimg.explain.api import explain_case
    from medimg.review import FeedbackStore, export_report

    ex = explain_case(best, dicom_dir, 1)
    heat_path = ex.save(out / "MNI152Brain_008_heatmap.nii.gz")
    heat_dcm = ex.save(out / "MNI152Brain_008_heatmap.dcm")  # the same map as a DICOM Parametric Map
    print(f"      {ex.sanity}")
    store = FeedbackStore(out / "reviews.sqlite")
    review_page = export_report(
        [("MNI152Brain_008", ex)], out / "review.html", store, labels={"MNI152Brain_008": load(held_label)}
    )
    print(f"      heatmap: {heat_path} (DICOM Parametric Map: {heat_dcm})\n      review page: {review_page}")
    summary: dict[str, object] = {
        "series_found": len(found),
        "converted": [str(p) for p in report.written] + [str(ct_path)],
        "refused": report.refused,
        "checkpoint": str(best),
        "heldout_dice": round(dice, 4),
        "mask": str(out / "MNI152Brain_008_mask.nii.gz"),
        "heatmap": str(heat_path),
        "seg_dcm": str(seg_dcm),
        "heatmap_dcm": str(heat_dcm),
        "review_html": str(review_page),
        "sanity_rho": None if ex.sanity is None else round(ex.sanity.correlation, 4),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(f"\ndemo done in {summary['seconds']} s; summary in {out / 'summary.json'}")
    return summary


#: training time the demo's plan is made for (``medimg plan --time-budget``)
DEMO_TIME_BUDGET = "40s"


def _config(name: str) -> Path:
    """A config shipped in the repository's ``configs/`` (or next to an installed package)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / "configs" / name).is_file():
            return base / "configs" / name
    from medimg.errors import ConfigError

    raise ConfigError(f"configs/{name} not found; run the demo from the medimg repository")


def _write_seg(mask: Volume, dicom_dir: Path, ckpt: Path, out: Path) -> Path:
    """The held-out mask as a DICOM SEG of its DICOM series, classes named from the training dataset.json."""
    from medimg.io.seg import write_seg
    from medimg.tasks.inference import algorithm_info, class_names, load_task

    task = load_task(ckpt)
    return write_seg(mask, dicom_dir, out, labels=class_names(task, ckpt), algorithm=algorithm_info(task, ckpt))


def _write_mr_series(volume: Volume, folder: Path) -> None:
    from medimg.io.dicom_write import write_series

    shutil.rmtree(folder, ignore_errors=True)
    arr = np.asarray(volume.array, dtype=np.float64)
    slope = max(float(np.abs(arr).max()) / 30000.0, 1e-6)
    write_series(
        volume,
        folder,
        modality="MR",
        series_description="MNI152 T1 held-out",
        rescale=(slope, 0.0),
        shuffle_names=True,
    )
