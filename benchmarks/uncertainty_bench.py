"""Which per-case score finds the failures? AURC of max-softmax, TTA agreement, ensemble pairwise Dice, volume
spread and medimg's risk on a shifted two-site phantom with injected failures; ECE before/after temperature
scaling; the cost of TTA and of the ensemble per case on the CPU (issue 30).

    .venv/bin/python benchmarks/uncertainty_bench.py [--members 3] [--steps 60] [--seed 0]

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


def test_cases(root: Path, work: Path) -> list[tuple[str, Path, Path]]:
    """(name, image, label): held-out cases of both sites (the first two of A are the validation cases) and
    injected failures of site A's held-out cases."""
    a = sorted((root / "imagesTs" / "A").glob("*.nii.gz"))
    b = sorted((root / "imagesTs" / "B").glob("*.nii.gz"))
    out = [(f"A/{p.name[:-7]}", p, root / "labelsTs" / "A" / p.name) for p in a[2:]]
    out += [(f"B/{p.name[:-7]}", p, root / "labelsTs" / "B" / p.name) for p in b]
    work.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(a[2:]):
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


def ece_rows(model: Any, root: Path, cases: list[tuple[str, Path, Path]]) -> tuple[float, list[str]]:
    val = [(p, root / "labelsTs" / "A" / p.name) for p in sorted((root / "imagesTs" / "A").glob("*.nii.gz"))[:2]]
    fit = calibrate(model, val)
    from medimg.inference.calibrate import case_logits

    rows = []
    for site in ("A", "B"):
        zs, ys = zip(*(case_logits(model, i, lab) for n, i, lab in cases if n.startswith(f"{site}/")), strict=True)
        z, y = np.concatenate(zs), np.concatenate(ys)
        before = calibration(apply_temperature(z, 1.0), y).ece
        after = calibration(apply_temperature(z, fit.temperature), y).ece
        rows.append(f"| {site} | {before:.4f} | {after:.4f} |")
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_two_site_phantom(Path(tmp) / "sites", 4, 6, shape=(32, 32, 24), seed=args.seed)
        models = train_members(root, args.members, args.steps)
        cases = test_cases(root, Path(tmp) / "failures")
        scored = {n: score_case(models, i, lab) for n, i, lab in cases}
        temperature, ece = ece_rows(models[0], root, cases)
        seconds = cost(models, cases[0][1])
    names = list(scored)
    lines = [
        f"{len(names)} cases ({sum(n.startswith('A/') for n in names)} site A, {sum(n.startswith('B/') for n in names)}"
        f" site B, {sum(n.startswith('fail/') for n in names)} injected failures); {args.members} members, "
        f"{args.steps} steps each, seed {args.seed}. Machine: {platform.machine()}, 2 threads, a shared loaded "
        f"machine; whole run {time.perf_counter() - t0:.0f} s.",
        "",
        "| score | AURC (lower is better) | failures (Dice < 0.7) in the top 20 % | Dice of its prediction (mean) |",
        "|---|---|---|---|",
    ]
    top = max(1, round(0.2 * len(names)))
    for row, key, dkey in SCORES:
        conf, d = [scored[n][key] for n in names], [scored[n][dkey] for n in names]
        fails = {i for i, v in enumerate(d) if v < FAILURE_DICE}
        first = set(np.argsort(np.asarray(conf), kind="stable")[:top].tolist())
        caught = f"{len(fails & first)} of {len(fails)}" if fails else "no failures"
        lines.append(f"| {row} | {aurc(conf, d):.4f} | {caught} | {np.mean(d):.3f} |")
    lines += ["", f"Temperature fitted on two site-A validation cases: T = {temperature:.3f}.", "",
              "| held-out site | ECE before (T = 1) | ECE after |", "|---|---|---|", *ece, "",
              "| cost per case (CPU, 2 threads) | s | vs one model |", "|---|---|---|"]  # fmt: skip
    base = seconds["one model"]
    lines += [f"| {k} | {v:.2f} | {v / base:.1f}x |" for k, v in seconds.items()]
    lines += [
        "",
        "Per case:",
        "",
        "| case | Dice (ens) | risk (ens) | max-softmax | TTA agreement |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {s['dice_ens']:.3f} | {1 - s['risk_ens']:.3f} | {s['max_softmax']:.3f} | "
              f"{s['tta_agreement']:.3f} |" for n, s in scored.items()]  # fmt: skip
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/uncertainty_bench.py`"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
