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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section

from medimg.data.datasets import read_msd
from medimg.data.phantoms import make_phantom_msd
from medimg.tasks.metrics import dice

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


def score_checkpoint(run: Path, root: Path) -> float:
    from medimg.io import load
    from medimg.tasks.inference import segment

    ckpts = sorted((run / "checkpoints").glob("best-*.ckpt")) or [run / "checkpoints" / "last.ckpt"]
    scores = []
    for image, label in held_out(root):
        mask = segment(ckpts[-1], image, run / f"pred_{image.name}", device="cpu")
        scores.append(dice(np.asarray(mask.array), np.asarray(load(label).array)))
    return float(np.mean(scores))


def medimg_fit(config: Path, root: Path, out: Path, budget: float, *extra: str) -> tuple[float, float]:
    from medimg.tasks.lightning_cli import run_cli

    mm, ss = divmod(int(budget), 60)
    args = ["fit", "--config", str(config), "--data.dataset_dir", str(root), "--trainer.accelerator", "cpu",
            "--trainer.max_time", f"00:00:{mm:02d}:{ss:02d}", "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]  # fmt: skip
    t0 = time.perf_counter()
    run_cli(args)
    return time.perf_counter() - t0, score_checkpoint(out, root)


def plain_loop(root: Path, patch: tuple[int, ...], intensity: str, budget: float, seed: int = 0) -> tuple[float, float]:
    """The plain MONAI loop of the issue: cached data, label-balanced patches of a hand-chosen size, UNet 16..256,
    Dice+CE, AdamW, for ``budget`` seconds; scored with a sliding window in the cases' own grid."""
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
    train = T.Compose([*prep, T.RandCropByPosNegLabeld(["image", "label"], "label", patch, 1, 1, 2),
                       T.RandFlipd(["image", "label"], 0.1, 0)])  # fmt: skip
    cases = read_msd(root).training
    loader = DataLoader(CacheDataset(cases, train, progress=False), batch_size=2, shuffle=True,
                        collate_fn=list_data_collate)  # fmt: skip
    torch.manual_seed(seed)
    net = UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2)
    loss_fn, opt = DiceCELoss(to_onehot_y=True, softmax=True), torch.optim.AdamW(net.parameters(), 1e-3)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < budget:
        for b in loader:
            opt.zero_grad()
            loss_fn(net(b["image"]), b["label"]).backward()
            opt.step()
            if time.perf_counter() - t0 >= budget:
                break
    wall = time.perf_counter() - t0
    net.eval()
    scores = []
    infer = T.Compose(prep[:3])
    with torch.no_grad():
        for image, label in held_out(root):
            d = infer({"image": str(image), "label": str(label)})
            logits = sliding_window_inference(d["image"][None], patch, 4, net, overlap=0.25, mode="gaussian")
            scores.append(dice(logits.argmax(1)[0].numpy(), d["label"][0].numpy()))
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=100.0, help="training seconds per run")
    ap.add_argument("--seeds", type=int, default=3, help="runs of the planned config and of the plain loop")
    ap.add_argument("--nnunet-site", default="/tmp/nnu_site")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--update-md", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="plan_bench_"))
    roots = {task: make_phantom_msd(work / f"Task_{task}", **kw) for task, (kw, _, _) in TASKS.items()}
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
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
