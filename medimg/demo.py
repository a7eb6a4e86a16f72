"""``medimg demo``: the main job end to end on data that ships inside installed packages (no download).

1. scan pydicom's messy sample folder and print the QA table; load the enhanced CT sample in Hounsfield
   units; convert the usable series to NIfTI with sidecars;
2. build the MNI152 brain-tissue task (nilearn's template, MSD layout) and write its held-out case as a
   DICOM MR series, as a scanner would send it;
3. plan the task from its fingerprint (``medimg plan``, 40 s of CPU training) and train it with ``medimg fit``;
4. segment the held-out DICOM series with the best checkpoint and report its Dice; write the mask as NIfTI and
   as a DICOM SEG referencing the series (``*_seg.dcm``);
5. export the model to ONNX with its preprocessing (``model.onnx``), segment the held-out series again with
   ONNX Runtime and print the agreement with the torch mask;
6. explain the segmentation (HiResCAM heatmap, randomisation sanity check), write the heatmap as NIfTI and as a
   DICOM Parametric Map (``*_heatmap.dcm``), and write an HTML review page.

Everything goes under ``outputs/demo/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medimg.io.atomic import atomic_write_text
from medimg.io.volume import Volume

if TYPE_CHECKING:
    from medimg.inference.model import Model

__all__ = ["DemoPaths", "ensure_demo_model", "run_demo"]


@dataclass(frozen=True)
class DemoPaths:
    """Every file the demo writes, named once under its output folder."""

    out: Path

    @property
    def dataset(self) -> Path:
        return self.out / "MNI152Brain"

    @property
    def held_image(self) -> Path:
        return self.dataset / "imagesTs" / f"{HELD_OUT}.nii.gz"

    @property
    def held_label(self) -> Path:
        return self.dataset / "labelsTs" / f"{HELD_OUT}.nii.gz"

    @property
    def dicom(self) -> Path:
        return self.out / "dicom" / HELD_OUT

    def case_file(self, suffix: str) -> Path:
        """``<out>/MNI152Brain_008<suffix>``: the held-out case's outputs (mask, SEG, heatmaps)."""
        return self.out / f"{HELD_OUT}{suffix}"


#: the case the demo holds out of training and segments from its DICOM series
HELD_OUT = "MNI152Brain_008"


def ensure_demo_model(out: str | os.PathLike[str] = "outputs/demo") -> dict[str, Path]:
    """The demo's trained brain model and held-out case, training it (about a minute on CPU) only if missing.

    Returns paths: ``checkpoint``, ``image`` (held-out NIfTI), ``dicom`` (the same case as a DICOM series),
    ``label`` (its reference mask).
    """
    paths = DemoPaths(Path(out))
    summary = paths.out / "summary.json"
    if summary.is_file():
        ckpt = Path(str(json.loads(summary.read_text()).get("checkpoint", "")))
        if ckpt.is_file():
            return _model_paths(paths, ckpt)
    run_demo(out)
    return _model_paths(paths, Path(json.loads(summary.read_text())["checkpoint"]))


def _model_paths(paths: DemoPaths, ckpt: Path) -> dict[str, Path]:
    return {"checkpoint": ckpt, "image": paths.held_image, "dicom": paths.dicom, "label": paths.held_label}


def run_demo(out: str | os.PathLike[str] = "outputs/demo") -> dict[str, object]:
    """Run the demo's steps in order under ``out``; returns (and writes) ``summary.json``'s content."""
    paths = DemoPaths(Path(out))
    paths.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary: dict[str, object] = {}
    summary.update(_scan_and_convert(paths))
    _build_task(paths)
    best = _train(paths)
    summary["checkpoint"] = str(best)
    from medimg.inference.model import open_model

    model = open_model(best, device="cpu")  # read and hashed once: mask, SEG, export and heatmap all use it
    mask, seg = _segment(paths, model)
    summary.update(seg)
    summary.update(_export(paths, model, mask))
    summary.update(_explain(paths, model))
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    atomic_write_text(paths.out / "summary.json", json.dumps(summary, indent=2))
    print(f"\ndemo done in {summary['seconds']} s; summary in {paths.out / 'summary.json'}")
    return summary


STEPS = 8


def _step(k: int, text: str) -> None:
    print(f"\n[{k}/{STEPS}] {text}" if k > 1 else f"[{k}/{STEPS}] {text}")


def _scan_and_convert(paths: DemoPaths) -> dict[str, object]:
    """Steps 1-3: scan pydicom's messy sample tree, load the enhanced CT in HU, convert the usable series."""
    from medimg.data.samples import pydicom_file, pydicom_folder
    from medimg.io import load, scan
    from medimg.io.dicom.convert import convert
    from medimg.viz.tables import scan_text

    folder = pydicom_folder("dicomdirtests")
    _step(1, f"scanning {folder} (pydicom's sample DICOM tree)")
    found = scan(folder)
    print(scan_text(found))

    _step(2, "loading the enhanced multi-frame CT sample (eCT_Supplemental.dcm)")
    ct = load(pydicom_file("eCT_Supplemental.dcm"))
    print(f"      {ct}  values [{int(ct.array.min())}, {int(ct.array.max())}] ({ct.meta['value_unit']})")
    ct_path = ct.save(paths.out / "eCT_Supplemental.nii.gz")

    _step(3, f"converting the usable series to NIfTI under {paths.out / 'nifti'}")
    report = convert(folder, paths.out / "nifti")
    for p in report.written:
        print(f"      wrote {p}")
    for key, why in report.refused.items():
        print(f"      refused {key}: {why}")
    return {
        "series_found": len(found),
        "converted": [str(p) for p in report.written] + [str(ct_path)],
        "refused": report.refused,
    }


def _build_task(paths: DemoPaths) -> None:
    """Step 4: the MNI152 brain-tissue task (MSD layout) and its held-out case as a DICOM MR series."""
    from medimg.data.phantoms import make_mni_msd
    from medimg.io import load

    _step(4, f"building the MNI152 brain-tissue task under {paths.dataset}")
    make_mni_msd(paths.dataset, n_cases=8, n_test=1, voxel_mm=3.0, seed=0)
    _write_mr_series(load(paths.held_image), paths.dicom)
    print(f"      held-out case written as a DICOM MR series: {paths.dicom}")


def _train(paths: DemoPaths) -> Path:
    """Step 5: plan the task (``medimg plan``) and train it with ``medimg fit``; the best checkpoint."""
    from medimg.plan import plan_dataset
    from medimg.tasks.lightning_cli import run_cli

    _step(5, f"planning the task (medimg plan --device cpu --time-budget {DEMO_TIME_BUDGET}) and training it on CPU")
    run = paths.out / "run"
    shutil.rmtree(run, ignore_errors=True)
    plan, plan_path = plan_dataset(paths.dataset, paths.out / "plan.yaml", device="cpu", time_budget=DEMO_TIME_BUDGET)
    print("\n".join(f"      {line}" for line in plan.summary) + f"\n      plan: {plan_path}")
    fit = ["fit", "--config", str(plan_path), "--trainer.default_root_dir", str(run)]
    run_cli([*fit, "--trainer.enable_model_summary", "false"])
    return sorted((run / "checkpoints").glob("best-*.ckpt"))[-1]


def _segment(paths: DemoPaths, model: Model) -> tuple[Volume, dict[str, object]]:
    """Step 6: segment the held-out DICOM series; Dice against its reference; NIfTI mask and DICOM SEG."""
    from medimg.io import load
    from medimg.tasks.metrics import dice

    assert model.path is not None
    _step(6, f"segmenting the held-out DICOM series with {model.path.name}")
    mask_path = paths.case_file("_mask.nii.gz")
    mask = model.segment(paths.dicom, mask_path)
    score = dice(mask.array, load(paths.held_label).array)
    print(f"      Dice on the held-out case: {score:.4f}  (mask: {mask_path})")
    seg_dcm = _write_seg(mask, paths.dicom, model, paths.case_file("_seg.dcm"))
    print(f"      DICOM SEG referencing the held-out series: {seg_dcm}")
    return mask, {"heldout_dice": round(score, 4), "mask": str(mask_path), "seg_dcm": str(seg_dcm)}


def _export(paths: DemoPaths, model: Model, torch_mask: Volume) -> dict[str, object]:
    """Step 7: export the model to ONNX with its recipe and segment the held-out series with ONNX Runtime."""
    from medimg.export import export_checkpoint
    from medimg.inference.model import open_model
    from medimg.tasks.metrics import dice

    _step(7, f"exporting the model to {paths.out / 'model.onnx'} and segmenting the held-out series with it")
    report = export_checkpoint(model, paths.out / "model.onnx")
    print(f"      {report.summary()}")
    onnx_mask = open_model(report.path).segment(paths.dicom, paths.case_file("_mask_onnx.nii.gz"))
    a, b = np.asarray(onnx_mask.array), np.asarray(torch_mask.array)
    agreement, same = dice(a, b), float((a == b).mean())
    print(f"      ONNX Runtime vs torch mask: Dice {agreement:.4f}, {same:.4%} of voxels identical")
    return {"onnx": str(report.path), "onnx_dice_vs_torch": round(agreement, 4), "onnx_voxels_same": same}


def _explain(paths: DemoPaths, model: Model) -> dict[str, object]:
    """Step 8: HiResCAM of the held-out segmentation with its randomisation check; heatmaps; review page."""
    from medimg.explain.api import explain_case
    from medimg.io import load
    from medimg.review import FeedbackStore, export_report

    _step(8, "explaining the held-out segmentation (HiResCAM + randomisation check) and writing a review page")
    ex = explain_case(model, paths.dicom, 1)
    heat_path = ex.save(paths.case_file("_heatmap.nii.gz"))
    heat_dcm = ex.save(paths.case_file("_heatmap.dcm"))  # the same map as a DICOM Parametric Map
    print(f"      {ex.sanity}")
    store = FeedbackStore(paths.out / "reviews.sqlite")
    labels: dict[str, object] = {HELD_OUT: load(paths.held_label)}
    review_page = export_report([(HELD_OUT, ex)], paths.out / "review.html", store, labels=labels)
    print(f"      heatmap: {heat_path} (DICOM Parametric Map: {heat_dcm})\n      review page: {review_page}")
    return {
        "heatmap": str(heat_path),
        "heatmap_dcm": str(heat_dcm),
        "review_html": str(review_page),
        "sanity_rho": None if ex.sanity is None else round(ex.sanity.correlation, 4),
    }


#: training time the demo's plan is made for (``medimg plan --time-budget``)
DEMO_TIME_BUDGET = "40s"


def _config(name: str) -> Path:
    """A config shipped in the repository's ``configs/`` (or next to an installed package)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / "configs" / name).is_file():
            return base / "configs" / name
    from medimg.errors import ConfigError

    raise ConfigError(f"configs/{name} not found; run the demo from the medimg repository")


def _write_seg(mask: Volume, dicom_dir: Path, model: Model, out: Path) -> Path:
    """The held-out mask as a DICOM SEG of its DICOM series, classes named from the training dataset.json."""
    from medimg.io.derived import write_seg

    return write_seg(mask, dicom_dir, out, labels=model.class_names, algorithm=model.algorithm())


def _write_mr_series(volume: Volume, folder: Path) -> None:
    from medimg.io.dicom.write import write_series

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
