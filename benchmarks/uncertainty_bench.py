"""Which per-case score finds the failures? AURC of max-softmax, TTA agreement, ensemble pairwise Dice, volume
spread and medimg's risk on a shifted two-site phantom with injected failures; ECE before/after temperature
scaling; the cost of TTA and of the ensemble per case on the CPU (issue 30).

    .venv/bin/python benchmarks/uncertainty_bench.py [--members 3] [--steps 60] [--seeds 0 1 2] [--test-per-site 6]
        [--failures N]

Setting: :func:`medimg.data.phantoms.make_two_site_phantom` (32 x 32 x 24 voxels), ``--members`` small 3D U-Nets
(the plan's CPU UNet with 8..32 channels, instance norm) trained in plain torch on site A's four labelled cases
from different seeds. Scored: site A's and site B's held-out cases, plus injected failures made from site A's
held-out cases (a foreign structure with the organ's intensity, the organ's contrast cut to 15 %, the organ
removed). Each score is paired with the Dice of the prediction it describes (max-softmax: one model's; TTA: the
flip-averaged one's; ensemble scores: the ensemble's), risk = 1 - Dice; AURC = mean over coverages of the mean
risk of the most confident cases (Zenk et al. 2025). The temperature is fitted on two site-A validation cases
and ECE measured on the other held-out cases of each site (foreground voxels).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.data.phantoms import _ellipsoid, make_two_site_phantom
from medimg.inference.calibrate import calibrate
from medimg.inference.ensemble import Ensemble
from medimg.inference.model import model_from_task
from medimg.inference.uncertainty import risk_record, uncertainty_maps
from medimg.io import load
from medimg.io.volume import Volume
from medimg.metrics.calibration import apply_temperature, calibration
from medimg.plan.network import network
from medimg.plan.topology import Topology
from medimg.transforms.pipelines import Preprocessing, preprocessing

PREP = {"spacing": [1.5, 1.5, 2.0], "intensity": "mr", "ct_window": [-57.0, 164.0], "crop_foreground": False,
        "patch_size": [32, 32, 24]}  # fmt: skip
FAILURE_DICE = 0.7


def train_task(x: torch.Tensor, y: torch.Tensor, seed: int, steps: int, norm: str = "instance") -> Any:
    """One small UNet (the plan's CPU UNet, 8..32 channels) trained on (x, y) for ``steps`` Adam steps of two
    cases, every other one flipped; ``norm="batch"``: batch norm (momentum 0.5) instead of the plan's instance
    norm."""
    from medimg.tasks.segmentation import SegmentationTask

    topo = Topology(kernels=((3, 3, 3),) * 3, strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)), pools_per_axis=(2, 2, 2))
    kwargs = {**network("cpu", topo)[1], "channels": [8, 16, 32], "num_res_units": 1}
    if norm == "batch":
        kwargs["norm"] = ["batch", {"momentum": 0.5}]
    torch.manual_seed(seed)
    task = SegmentationTask(net="unet", net_kwargs=kwargs, num_classes=2, roi_size=(32, 32, 24), sw_batch_size=1,
                            preprocessing=PREP, labels={1: "organ"})  # fmt: skip
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


def train_members(root: Path, n: int, steps: int) -> list[Any]:
    pp = preprocessing(Preprocessing.from_dict(PREP), keys=["image", "label"])
    cases = [pp({"image": str(p), "label": str(root / "labelsTr" / "A" / p.name)})
             for p in sorted((root / "imagesTr" / "A").glob("*.nii.gz"))]  # fmt: skip
    x = torch.stack([torch.as_tensor(c["image"]) for c in cases]).float()
    y = torch.stack([torch.as_tensor(c["label"]) for c in cases]).float()
    return [model_from_task(train_task(x, y, seed, steps)) for seed in range(n)]


def held_out_cases(root: Path, work: Path, failures: int | None) -> list[tuple[str, Path, Path]]:
    """(name, image, label): held-out cases of both sites (the first two of A are the validation cases) and
    injected failures made from the first ``failures`` of site A's held-out cases (None: from each)."""
    a = sorted((root / "imagesTs" / "A").glob("*.nii.gz"))
    b = sorted((root / "imagesTs" / "B").glob("*.nii.gz"))
    out = [(f"A/{p.name[:-7]}", p, root / "labelsTs" / "A" / p.name) for p in a[2:]]
    out += [(f"B/{p.name[:-7]}", p, root / "labelsTs" / "B" / p.name) for p in b]
    work.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(a[2:] if failures is None else a[2 : 2 + failures]):
        img, lab = load(p), load(root / "labelsTs" / "A" / p.name)
        arr, organ = np.asarray(img.array, dtype=np.float32), np.asarray(lab.array) > 0
        kind = ("foreign", "lowcontrast", "missing")[i % 3]
        if kind == "foreign":
            arr = arr.copy()
            arr[_ellipsoid(arr.shape, (8, 22, 12), (4, 4, 9)) & ~organ] = 520.0
            label = lab
        elif kind == "lowcontrast":
            arr = np.where(arr > 150, 300.0 + 0.15 * (arr - 300.0), arr)
            label = lab
        else:
            arr = np.where(organ, 300.0 + np.random.default_rng(i).normal(0, 30, arr.shape), arr)
            label = Volume(np.zeros_like(np.asarray(lab.array)), lab.affine)
        name = f"{kind}{i}"
        image = Volume(arr.astype(np.float32), img.affine, {"modality": "MR"}).save(work / f"{name}.nii.gz")
        out.append((f"fail/{name}", image, label.save(work / f"{name}_label.nii.gz")))
    return out


def dice(pred: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> float:
    p, t = pred > 0, truth > 0
    total = int(p.sum() + t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


def aurc(confidence: list[float], d: list[float]) -> float:
    order = np.argsort(-np.asarray(confidence), kind="stable")
    risk = 1.0 - np.asarray(d)[order]
    return float(np.mean(np.cumsum(risk) / np.arange(1, len(risk) + 1)))


def score_case(models: list[Any], image: Path, label: Path) -> dict[str, float]:
    pp = preprocessing(Preprocessing.from_dict(PREP), keys=["image", "label"])
    data = pp({"image": str(image), "label": str(label)})
    x, truth = torch.as_tensor(data["image"]).float()[None], np.asarray(data["label"])[0]
    voxel = float(np.prod(PREP["spacing"]))
    tta = Ensemble([models[0]], tta=True).probabilities(x)
    ens = np.concatenate([tta[:1], Ensemble(models[1:]).probabilities(x)])
    single, flips, many = uncertainty_maps(tta[:1]), uncertainty_maps(tta), uncertainty_maps(ens)
    r1, rt, re = (risk_record(m, voxel) for m in (single, flips, many))
    return {
        "dice_single": dice(single.labels, truth), "dice_tta": dice(flips.labels, truth),
        "dice_ens": dice(many.labels, truth),
        "max_softmax": r1.max_softmax, "tta_agreement": rt.pairwise_dice, "ens_pairwise": re.pairwise_dice,
        "neg_volume_cv": -re.volume_cv, "risk_tta": 1 - rt.risk, "risk_ens": 1 - re.risk,
    }  # fmt: skip


SCORES = [  # (row, confidence key, Dice key)
    ("mean max-softmax, one model (baseline)", "max_softmax", "dice_single"),
    ("TTA agreement (4 flips, pairwise Dice)", "tta_agreement", "dice_tta"),
    ("ensemble pairwise Dice", "ens_pairwise", "dice_ens"),
    ("ensemble volume spread (CV)", "neg_volume_cv", "dice_ens"),
    ("medimg risk, TTA", "risk_tta", "dice_tta"),
    ("medimg risk, ensemble", "risk_ens", "dice_ens"),
]


def ece_rows(
    model: Any, root: Path, cases: list[tuple[str, Path, Path]]
) -> tuple[float, dict[str, tuple[float, float]]]:
    val = [(p, root / "labelsTs" / "A" / p.name) for p in sorted((root / "imagesTs" / "A").glob("*.nii.gz"))[:2]]
    fit = calibrate(model, val)
    from medimg.inference.calibrate import case_logits

    rows = {}
    for site in ("A", "B"):
        zs, ys = zip(*(case_logits(model, i, lab) for n, i, lab in cases if n.startswith(f"{site}/")), strict=True)
        z, y = np.concatenate(zs), np.concatenate(ys)
        before = calibration(apply_temperature(z, 1.0), y).ece
        after = calibration(apply_temperature(z, fit.temperature), y).ece
        rows[site] = (before, after)
    return fit.temperature, rows


def cost(models: list[Any], image: Path) -> dict[str, float]:
    runs = {"one model": Ensemble(models[:1]), "TTA (4 flips)": Ensemble(models[:1], tta=True),
            f"ensemble ({len(models)})": Ensemble(models)}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(3):
        for k, e in runs.items():
            t0 = time.perf_counter()
            e.segment(image)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def run_seed(seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One phantom, one set of members, every case scored; ECE before/after; the cost (first seed only)."""
    root = make_two_site_phantom(tmp / f"sites{seed}", 4, args.test_per_site, shape=(32, 32, 24), seed=seed)
    models = train_members(root, args.members, args.steps)
    cases = held_out_cases(root, tmp / f"failures{seed}", args.failures)
    scored = {n: score_case(models, i, lab) for n, i, lab in cases}
    temperature, ece = ece_rows(models[0], root, cases)
    seconds = cost(models, cases[0][1]) if seed == args.seeds[0] else {}
    return {"scored": scored, "temperature": temperature, "ece": ece, "seconds": seconds}


def score_rows(runs: list[dict[str, Any]]) -> list[str]:
    """Per score: AURC mean +- sd over seeds, and the failures in the top 20 % of each seed's worklist, summed
    (with the most that 20 % can hold)."""
    out = []
    for row, key, dkey in SCORES:
        aurcs, caught, fails_n, reachable = [], 0, 0, 0
        for r in runs:
            names = list(r["scored"])
            conf, d = [r["scored"][n][key] for n in names], [r["scored"][n][dkey] for n in names]
            top = max(1, round(0.2 * len(names)))
            fails = {i for i, v in enumerate(d) if v < FAILURE_DICE}
            first = set(np.argsort(np.asarray(conf), kind="stable")[:top].tolist())
            aurcs.append(aurc(conf, d))
            caught, fails_n, reachable = (
                caught + len(fails & first),
                fails_n + len(fails),
                reachable + min(top, len(fails)),
            )
        sd = f" +- {statistics.stdev(aurcs):.4f}" if len(aurcs) > 1 else ""
        share = f" ({caught / fails_n:.0%})" if fails_n else ""
        out.append(f"| {row} | {np.mean(aurcs):.4f}{sd} | {caught} of {fails_n}{share} | {reachable} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--test-per-site", type=int, default=6, help="held-out cases per site (site A's first 2 validate)")
    ap.add_argument("--failures", type=int, default=None, help="injected failures per seed (default: one per A case)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(seed, args, Path(tmp)) for seed in args.seeds]
    names = list(runs[0]["scored"])
    lines = [
        f"{len(args.seeds)} seed(s) ({' '.join(map(str, args.seeds))}), each its own phantom and members; per seed "
        f"{len(names)} cases ({sum(n.startswith('A/') for n in names)} site A, {sum(n.startswith('B/') for n in names)}"
        f" site B, {sum(n.startswith('fail/') for n in names)} injected failures); {args.members} members, "
        f"{args.steps} steps each. Machine: {platform.machine()}, 2 threads, load average {load_start:.1f} at the "
        f"start; whole run {time.perf_counter() - t0:.0f} s.",
        "",
        "| score | AURC (lower is better), mean over seeds | failures (Dice < 0.7) in the top 20 %, all seeds | "
        "the most the top 20 % can hold |",
        "|---|---|---|---|",
        *score_rows(runs),
        "",
        "Temperature fitted on two site-A validation cases per seed: T = "
        + ", ".join(f"{r['temperature']:.3f}" for r in runs)
        + ".",
        "",
        "| held-out site | ECE before (T = 1), mean | ECE after, mean | lower after in |",
        "|---|---|---|---|",
    ]
    for site in ("A", "B"):
        pairs = [r["ece"][site] for r in runs]
        better = sum(after < before for before, after in pairs)
        lines.append(f"| {site} | {np.mean([p[0] for p in pairs]):.4f} | {np.mean([p[1] for p in pairs]):.4f} | "
                     f"{better} of {len(pairs)} seeds |")  # fmt: skip
    seconds = runs[0]["seconds"]
    lines += ["", "| cost per case (CPU, 2 threads) | s | vs one model |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {v / seconds['one model']:.1f}x |" for k, v in seconds.items()]
    lines += ["", f"Per case (seed {args.seeds[0]}):", "",
              "| case | Dice (ens) | risk (ens) | max-softmax | TTA agreement |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {n} | {s['dice_ens']:.3f} | {1 - s['risk_ens']:.3f} | {s['max_softmax']:.3f} | "
              f"{s['tta_agreement']:.3f} |" for n, s in runs[0]["scored"].items()]  # fmt: skip
    seeds = " ".join(map(str, args.seeds))
    fail = f" --failures {args.failures}" if args.failures is not None else ""
    lines += ["", f"Reproduce: `.venv/bin/python benchmarks/uncertainty_bench.py --seeds {seeds} --test-per-site "
              f"{args.test_per_site}{fail}`"]  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
