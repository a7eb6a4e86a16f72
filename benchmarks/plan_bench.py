"""``medimg plan`` against the tutorial recipe, a plain MONAI loop, and nnU-Net's own planner, side by side.

    .venv/bin/python benchmarks/plan_bench.py [--budget 90] [--update-md] [--skip-train]

1. Time to Dice, same wall-clock training budget on this machine (2 threads), two phantom tasks the tests do not
   use (CT abdomen-like 80 x 80 x 40 at 1.5 x 1.5 x 3 mm with look-alike distractors; MR brain-like 56^3 at
   1.2 mm isotropic): the planned config (``medimg plan --device cpu --time-budget B`` then ``medimg fit``), the
   shipped ``configs/seg_unet3d.yaml`` (``--trainer.max_time B``), and a plain MONAI loop with a hand-sized patch
   (UNet 16..256, patches sized to the data, batch 4) trained for B seconds. Held-out Dice on 8 unseen cases, in
   their own geometry. medimg runs are scored from their best validation checkpoint with ``medimg segment``'s
   function; the plain loop from its final weights. The planned config and the plain loop run ``--seeds`` times
   (seeds 0, 1, ...: a single 100 s run moves by a few hundredths), the tutorial recipe once.
   Third task (issue 32): ``Organ-Lesion-MR``, MR-like at 0.9 x 0.9 x 4 mm, ~128 x 128 x 24 voxels, 12 training
   cases, an organ (label 1) and a small bright lesion inside it (label 2, under 1 % of the foreground voxels),
   made from the project's phantom generator (:func:`organ_lesion_msd`). Its plain loop is the issue's 40 lines:
   patch 96 x 96 x 16, UNet 16..128, batch 2, 2/3 of the crops centred on foreground. Per-class Dice in the
   table, and the training steps each run made (from the last checkpoint's ``global_step``). ``--tasks`` picks the
   tasks (``--tasks Organ-Lesion-MR --seeds 2 --budget 180``: a reduced run, written to its own section).
2. Planning side by side with nnU-Net v2 (``ExperimentPlanner``, 8 GB GPU target) on the same datasets converted to
   its raw layout: target spacing, patch size, pooling per axis, batch; medimg planned for the same 8 GB GPU
   budget (memory counted on the meta device, no GPU here).

nnU-Net is installed outside the project's venv, without touching its pins (its other dependencies are already
there)::

    .venv/bin/python -m pip install --no-deps --target /tmp/nnu_site nnunetv2==2.8.1 \\
        dynamic-network-architectures==0.4.4 acvl-utils==0.2.6 batchgenerators==0.25.5 batchgeneratorsv2==0.3.6 \\
        scikit-image==0.25.2 imageio==2.38.1 tifffile==2026.3.3 lazy-loader==0.4 networkx==3.6.1 \\
        blosc2==4.14.1 ndindex==1.10.1 msgpack==1.2.4 numexpr==2.14.2 py-cpuinfo==9.0.0

and run in a subprocess with ``PYTHONPATH=/tmp/nnu_site`` (``--nnunet-site`` to change it); without it, part 2 is
skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _plan_lesion import LESION_KW, LESION_PLAIN, LESION_TASK, lesion_fraction, lesion_row, organ_lesion_msd
from _report import update_section

from medimg.data.datasets import read_msd
from medimg.data.phantoms import make_phantom_msd
from medimg.tasks.metrics import dice, dice_per_class

ROOT = Path(__file__).resolve().parents[1]

#: (name, make_phantom_msd kwargs, the plain loop's hand-sized patch, its intensity transform)
TASKS = {
    "Abdomen-CT": (
        {"n_cases": 12, "n_test": 8, "shape": (80, 80, 40), "spacing": (1.5, 1.5, 3.0), "distractors": 3,
         "modality": "CT", "jitter": 0.1, "seed": 11},
        (48, 48, 32),
        "ct",
    ),
    "Brain-MR": (
        {"n_cases": 10, "n_test": 8, "shape": (56, 56, 56), "spacing": (1.2, 1.2, 1.2), "distractors": 2,
         "modality": "MR", "jitter": 0.1, "seed": 12},
        (48, 48, 48),
        "mr",
    ),
}  # fmt: skip


def held_out(root: Path) -> list[tuple[Path, Path]]:
    return [(p, root / "labelsTs" / p.name) for p in sorted((root / "imagesTs").glob("*.nii.gz"))]


def score_checkpoint(run: Path, root: Path, classes: tuple[int, ...] = ()) -> float | dict[int, float]:
    """Mean held-out Dice of the run's best checkpoint (any foreground), or per class of ``classes``."""
    from medimg.inference import segment
    from medimg.io import load

    ckpts = sorted((run / "checkpoints").glob("best-*.ckpt")) or [run / "checkpoints" / "last.ckpt"]
    scores, per_class = [], []
    for image, label in held_out(root):
        mask = segment(ckpts[-1], image, run / f"pred_{image.name}", device="cpu")
        pred, truth = np.asarray(mask.array), np.asarray(load(label).array)
        scores.append(dice(pred, truth))
        per_class.append(dice_per_class(pred, truth, classes))
    if classes:
        return {c: float(np.mean([d[c] for d in per_class])) for c in classes}
    return float(np.mean(scores))


def trained_steps(run: Path) -> int:
    """The optimiser steps a medimg run made (its last checkpoint's ``global_step``)."""
    return int(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"])


def medimg_fit(config: Path, root: Path, out: Path, budget: float, *extra: str) -> tuple[float, float]:
    from medimg.tasks.lightning_cli import run_cli

    mm, ss = divmod(int(budget), 60)
    args = ["fit", "--config", str(config), "--data.dataset_dir", str(root), "--trainer.accelerator", "cpu",
            "--trainer.max_time", f"00:00:{mm:02d}:{ss:02d}", "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]  # fmt: skip
    t0 = time.perf_counter()
    run_cli(args)
    return time.perf_counter() - t0, score_checkpoint(out, root)  # type: ignore[return-value]


def medimg_fit_classes(
    config: Path, root: Path, out: Path, budget: float, seed: int
) -> tuple[float, dict[int, float], int]:
    """A seeded planned fit scored per class: (wall s, {class: held-out Dice}, steps)."""
    from medimg.tasks.lightning_cli import run_cli

    mm, ss = divmod(int(budget), 60)
    args = ["fit", "--config", str(config), "--data.dataset_dir", str(root), "--trainer.accelerator", "cpu",
            "--trainer.max_time", f"00:00:{mm:02d}:{ss:02d}", "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--seed_everything", str(seed), "--data.seed", str(seed)]  # fmt: skip
    t0 = time.perf_counter()
    run_cli(args)
    wall = time.perf_counter() - t0
    return wall, score_checkpoint(out, root, (1, 2)), trained_steps(out)  # type: ignore[return-value]


def plain_loop(root: Path, patch: tuple[int, ...], intensity: str, budget: float, seed: int = 0,
               **lesion: Any) -> tuple[float, Any]:  # fmt: skip
    """The plain MONAI loop of the issue: cached data, label-balanced patches of a hand-chosen size, UNet 16..256,
    Dice+CE, AdamW, for ``budget`` seconds; scored with a sliding window in the cases' own grid. ``lesion``: issue
    32's loop instead (:data:`LESION_PLAIN`): three classes, its channels, batch and crop ratio; then the result is
    (wall s, ({class: Dice}, steps))."""
    from monai import transforms as T
    from monai.data import CacheDataset, DataLoader, list_data_collate
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    norm = (
        T.ScaleIntensityRanged("image", a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True)
        if intensity == "ct"
        else T.NormalizeIntensityd("image", nonzero=True)
    )
    prep = [T.LoadImaged(["image", "label"]), T.EnsureChannelFirstd(["image", "label"]), norm,
            T.SpatialPadd(["image", "label"], patch)]  # fmt: skip
    pos, samples, batch = lesion.get("pos", 1.0), lesion.get("num_samples", 2), lesion.get("batch", 2)
    channels = tuple(lesion.get("channels", (16, 32, 64, 128, 256)))
    train = T.Compose([*prep, T.RandCropByPosNegLabeld(["image", "label"], "label", patch, pos, 1, samples),
                       T.RandFlipd(["image", "label"], 0.1, 0)])  # fmt: skip
    cases = read_msd(root).training
    loader = DataLoader(CacheDataset(cases, train, progress=False), batch_size=batch, shuffle=True,
                        collate_fn=list_data_collate)  # fmt: skip
    torch.manual_seed(seed)
    n_out = 3 if lesion else 2
    net = UNet(3, 1, n_out, channels, (2,) * (len(channels) - 1), num_res_units=2)
    loss_fn, opt = DiceCELoss(to_onehot_y=True, softmax=True), torch.optim.AdamW(net.parameters(), 1e-3)
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < budget:
        for b in loader:
            opt.zero_grad()
            loss_fn(net(b["image"]), b["label"]).backward()
            opt.step()
            steps += 1
            if time.perf_counter() - t0 >= budget:
                break
    wall = time.perf_counter() - t0
    net.eval()
    scores, per_class = [], []
    infer = T.Compose(prep[:3])
    with torch.no_grad():
        for image, label in held_out(root):
            d = infer({"image": str(image), "label": str(label)})
            logits = sliding_window_inference(d["image"][None], patch, 4, net, overlap=0.25, mode="gaussian")
            pred, truth = logits.argmax(1)[0].numpy(), d["label"][0].numpy()
            scores.append(dice(pred, truth))
            per_class.append(dice_per_class(pred, truth, (1, 2)))
    if lesion:
        return wall, ({c: float(np.mean([d[c] for d in per_class])) for c in (1, 2)}, steps)
    return wall, float(np.mean(scores))


def row(task: str, pipeline: str, plan_s: str, runs: list[tuple[float, float]]) -> str:
    """A table row: mean wall, mean +- sd of the held-out Dice (mean alone for one run), each run's Dice."""
    walls, dices = np.array([w for w, _ in runs]), np.array([d for _, d in runs])
    score = f"{dices.mean():.3f}" + (f" +- {dices.std(ddof=1):.3f}" if len(runs) > 1 else "")
    return f"| {task} | {pipeline} | {plan_s} | {walls.mean():.0f} | {score} | {', '.join(f'{d:.3f}' for d in dices)} |"


def load_note() -> str:
    load = os.getloadavg()[0]
    return f"Load average at the start: {load:.1f} on {os.cpu_count()} cores."


def to_nnunet_raw(root: Path, raw: Path, number: int, name: str) -> str:
    """Copy an MSD phantom into nnU-Net v2's raw layout (``DatasetNNN_Name``)."""
    cases = read_msd(root)
    dest = raw / f"Dataset{number:03d}_{name.replace('-', '')}"
    (dest / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dest / "labelsTr").mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(cases.training):
        shutil.copy(case["image"], dest / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        shutil.copy(case["label"], dest / "labelsTr" / f"case_{i:03d}.nii.gz")
    spec = {"channel_names": {"0": cases.modality}, "labels": {"background": 0, "organ": 1},
            "numTraining": len(cases.training), "file_ending": ".nii.gz"}  # fmt: skip
    (dest / "dataset.json").write_text(json.dumps(spec))
    return dest.name


NNUNET_SCRIPT = """
import json, sys
from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
ids = [int(i) for i in sys.argv[1:]]
extract_fingerprints(ids, num_processes=1, check_dataset_integrity=True, verbose=False)
plan_experiments(ids, gpu_memory_target_in_gb=8)
"""


def nnunet_side_by_side(roots: dict[str, Path], site: Path, work: Path) -> list[str]:
    from medimg.plan import plan_dataset

    if not (site / "nnunetv2").is_dir():
        return [f"nnU-Net part skipped: nnunetv2 not found under {site} (see this script's docstring to install it)."]
    env = dict(os.environ, PYTHONPATH=str(site), nnUNet_raw=str(work / "raw"),
               nnUNet_preprocessed=str(work / "pre"), nnUNet_results=str(work / "res"))  # fmt: skip
    names = {task: to_nnunet_raw(root, work / "raw", 900 + i, task) for i, (task, root) in enumerate(roots.items())}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", NNUNET_SCRIPT, *(str(900 + i) for i in range(len(roots)))],
                          env=env, capture_output=True, text=True, check=False)  # fmt: skip
    nnu_s = time.perf_counter() - t0
    if proc.returncode != 0:
        return [f"nnU-Net part skipped: its planner failed ({proc.stderr.strip().splitlines()[-1:]})."]
    lines = [
        f"nnU-Net v2.8.1 `extract_fingerprints` + `plan_experiments` (ExperimentPlanner, 8 GB) took {nnu_s:.0f} s "
        "for both tasks; medimg `plan --gpu-memory 8GB` (GPU plan, memory counted on the meta device):",
        "",
        "| task | planner | target spacing (x, y, z mm) | patch (x, y, z) | pools per axis | stages | batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, root in roots.items():
        plans = json.loads((work / "pre" / names[task] / "nnUNetPlans.json").read_text())
        fr = plans["configurations"]["3d_fullres"]
        back = plans["transpose_backward"]
        # nnU-Net's axes: SimpleITK's (z, y, x) order, transposed; back to (x, y, z)
        spacing = [fr["spacing"][back[i]] for i in range(3)][::-1]
        patch = [fr["patch_size"][back[i]] for i in range(3)][::-1]
        strides = np.array(fr["architecture"]["arch_kwargs"]["strides"])
        pools = [int((strides[:, back[i]] == 2).sum()) for i in range(3)][::-1]
        lines.append(f"| {task} | nnU-Net | {[round(s, 3) for s in spacing]} | {patch} | {pools} | "
                     f"{len(strides)} | {fr['batch_size']} |")  # fmt: skip
        plan, _ = plan_dataset(root, work / f"medimg_{task}_8GB.yaml", gpu_memory=8e9)
        kw = plan.value("model.init_args.net_kwargs")
        ours_pools = np.array(kw["strides"])
        lines.append(
            f"| {task} | medimg | {plan.value('data.init_args.spacing')} | {plan.value('data.init_args.patch_size')} "
            f"| {[int((ours_pools[:, a] == 2).sum()) for a in range(3)]} | {len(ours_pools)} | "
            f"{plan.value('data.init_args.batch_size')} |"
        )
    return [*lines, "", *NNUNET_DIFFERENCES]


NNUNET_DIFFERENCES = [
    "Why they differ:",
    "- Target spacing: the same rule (median; the 10th percentile on an axis over 3x coarser with under 1/3 the "
    "voxels), so the same spacing. nnU-Net takes the median over shapes *after cropping to the non-zero region*, "
    "medimg over the whole images; on these phantoms (CT air is -1000 HU, MR body fills the field) that is the same.",
    "- Pools and stages: medimg's `medimg.plan.topology` is nnU-Net's `get_pool_and_conv_props` (tests compare the "
    "strides and kernels with nnunetv2's output), so pools per axis match whenever the patch does not cross a "
    "power of two.",
    "- Patch: nnU-Net pads the patch *up* to a multiple of 2^pools per axis (e.g. a median of 82 voxels becomes "
    "96), so it can exceed the median image; medimg rounds *down* (82 -> 80), because the plan's patch must never "
    "be larger than the median resampled shape (the issue's rule; a larger patch is padding).",
    "- Batch: nnU-Net estimates memory from a feature-map-size proxy calibrated to 8 GB; medimg counts the "
    "activations autograd saves for DynUNet (meta device, no GPU here). On these small datasets both are capped "
    "by nnU-Net's rule that one step sees at most 5 % of the dataset's voxels, hence batch 2 for both.",
    "- Network: nnU-Net's PlainConvUNet and MONAI's DynUNet with the same kernels, strides and 32..320 features "
    "(two convolutions per stage, instance norm, leaky ReLU): the same topology from two libraries.",
]


#: the BENCHMARKS.md section of the third task
LESION_SECTION = "Planning for the clock and for small structures (issue 32)"


def lesion_bench(work: Path, budget: float, seeds: int) -> list[str]:
    """Issue 32's task: the planned fit and the issue's plain loop, ``seeds`` runs each, interleaved."""
    from medimg.plan import plan_dataset

    root = organ_lesion_msd(work / "Task_Lesion", **LESION_KW)  # type: ignore[arg-type]
    start_load = load_note()
    t0 = time.perf_counter()
    plan, cfg = plan_dataset(root, work / "plan_lesion.yaml", device="cpu", time_budget=budget)
    plan_s = time.perf_counter() - t0
    print("\n".join(plan.summary), flush=True)
    planned: list[tuple[float, dict[int, float], int]] = []
    plain: list[tuple[float, dict[int, float], int]] = []
    lp = LESION_PLAIN
    loop = {k: v for k, v in lp.items() if k != "patch"}
    for seed in range(seeds):
        planned.append(medimg_fit_classes(cfg, root, work / f"run_lesion_{seed}", budget, seed))
        wall, (per_class, steps) = plain_loop(root, lp["patch"], "mr", budget, seed, **loop)  # type: ignore[arg-type]
        plain.append((wall, per_class, steps))
        print(LESION_TASK, seed, "planned", planned[-1], "plain", plain[-1], flush=True)
    fractions = [lesion_fraction(root / "labelsTr" / f.name) for f in sorted((root / "labelsTr").glob("*.nii.gz"))]
    return [
        f"Task {LESION_TASK}: {LESION_KW['n_cases']} training cases ~{list(LESION_KW['shape'])} voxels at "
        f"{list(LESION_KW['spacing'])} mm, an organ and a lesion inside it (lesion {min(fractions):.2%}.."
        f"{max(fractions):.2%} of each case's foreground voxels); held-out Dice per class over {LESION_KW['n_test']} "
        f"unseen cases. CPU, 2 threads; training budget {budget:.0f} s per run, {seeds} seed(s) per contender "
        f"(interleaved). {start_load} At the end: {os.getloadavg()[0]:.1f}.",
        "",
        "| pipeline | planning s | fit wall s | steps | mean Dice (organ, lesion) | organ | lesion | runs (mean) |",
        "|---|---|---|---|---|---|---|---|",
        lesion_row(f"`medimg plan` + `medimg fit` ({plan.summary[3]})", f"{plan_s:.0f}", planned),
        lesion_row(
            f"plain MONAI loop, patch {list(lp['patch'])}, UNet 16..128, batch 2, 2/3 on foreground", "-", plain
        ),
        "",
        f"The plan's patch reason: {plan.reasons['data.init_args.patch_size']}",
        "",
        f"Its foreground sampling: {plan.reasons['data.init_args.foreground_sampling']}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=100.0, help="training seconds per run (issue 32's task: 300)")
    ap.add_argument("--seeds", type=int, default=3, help="runs of the planned config and of the plain loop")
    ap.add_argument("--tasks", nargs="+", default=[*TASKS, LESION_TASK], choices=[*TASKS, LESION_TASK])
    ap.add_argument("--nnunet-site", default="/tmp/nnu_site")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--update-md", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="plan_bench_"))
    if LESION_TASK in args.tasks and not args.skip_train:
        text = "\n".join(lesion_bench(work, args.budget, args.seeds))
        print(text, flush=True)
        if args.update_md:
            update_section(LESION_SECTION, text)
    if any(t in TASKS for t in args.tasks):
        issue11(args, work)
    shutil.rmtree(work, ignore_errors=True)


def issue11(args: argparse.Namespace, work: Path) -> None:
    """The two tasks of issue 11 and the nnU-Net side by side, written to that section."""
    roots = {task: make_phantom_msd(work / f"Task_{task}", **kw) for task, (kw, _, _) in TASKS.items()
             if task in args.tasks}  # fmt: skip
    n_test = len(held_out(next(iter(roots.values()))))
    lines = [
        f"CPU, 2 threads; torch {torch.__version__}. Training budget {args.budget:.0f} s of wall-clock per run "
        "(Lightning's `max_time` for medimg, a clock for the plain loop; data caching not counted); held-out Dice "
        f"= mean over {n_test} unseen cases in their own geometry; the planned config and the plain loop ran with "
        f"{args.seeds} seeds each (interleaved: mean +- sd, then each run), the tutorial recipe once. {load_note()}",
        "",
        "| task | pipeline | planning s | fit wall s | held-out Dice | runs |",
        "|---|---|---|---|---|---|",
    ]
    if not args.skip_train:
        from medimg.plan import plan_dataset

        for task, root in roots.items():
            _, patch, intensity = TASKS[task]
            t0 = time.perf_counter()
            plan, cfg = plan_dataset(root, work / f"plan_{task}.yaml", device="cpu", time_budget=args.budget)
            plan_s = time.perf_counter() - t0
            print("\n".join(plan.summary), flush=True)
            planned: list[tuple[float, float]] = []
            plain: list[tuple[float, float]] = []
            for seed in range(args.seeds):
                sd = str(seed)
                out = work / f"run_plan_{task}_{seed}"
                planned.append(medimg_fit(cfg, root, out, args.budget, "--seed_everything", sd, "--data.seed", sd))
                plain.append(plain_loop(root, patch, intensity, args.budget, seed))
                print(task, seed, "planned", planned[-1], "plain", plain[-1], flush=True)
            lines.append(row(task, f"`medimg plan` + `medimg fit` ({plan.summary[3]})", f"{plan_s:.0f}", planned))
            wall, d = medimg_fit(ROOT / "configs" / "seg_unet3d.yaml", root, work / f"run_tut_{task}", args.budget)
            lines.append(row(task, "`configs/seg_unet3d.yaml` (96^3 patches)", "-", [(wall, d)]))
            lines.append(row(task, f"plain MONAI loop, patch {list(patch)}, batch 4", "-", plain))
            print("\n".join(lines[-3:]), flush=True)
    lines += ["", *nnunet_side_by_side(roots, Path(args.nnunet_site), work / "nnunet")]
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/plan_bench.py --update-md`"]
    text = "\n".join(lines)
    print(text)
    if args.update_md:
        update_section("Planning a dataset (issue 11)", text)


if __name__ == "__main__":
    main()
