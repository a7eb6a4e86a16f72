"""Which unlabelled score should decide whether ``medimg adapt`` keeps an adaptation (issue 30)?

    .venv/bin/python benchmarks/adapt_rule_bench.py [--seeds 0 1 2 3] [--steps 60] [--update-md]

Setting: :func:`medimg.data.phantoms.make_two_site_phantom` (32 x 32 x 24 voxels; 4 labelled + 6 held-out cases
per site), small 3D U-Nets trained in plain torch on site A's four labelled cases, with the tiny settings of
``benchmarks/uncertainty_bench.py`` (the plan's CPU UNet 8..32 channels, ``--steps`` Adam steps), once per seed
with the plan's instance norm (no affine: ``auto`` = TENT) and once with batch norm (momentum 0.5, as the sites
bench: ``auto`` = AdaBN). Each model is adapted (a fresh copy each time) to site B's four *unlabelled* training
images by :func:`medimg.tasks.adapt.adapt` with several methods and strengths, so that some adaptations help and
some hurt (TENT for 5 to 60 steps, and with a learning rate that collapses the net to all background).

Per adaptation, before and after: the true mean Dice on site B's six held-out labelled cases (the truth: delta
Dice >= 0 means the adaptation should be kept); on the four adaptation images (what ``adapt`` sees), the
flip-agreement proxy (today's rule, with its foreground guard) and medimg's per-case risk
(:func:`medimg.inference.uncertainty.risk_record` over the identity and three flips: ``1 - TTA pairwise Dice x
max-softmax``, empty mask = 1), averaged over the images, and its two parts. For each score: Spearman's rho of its
change (signed so that higher is better) with delta Dice, and the accept/refuse accuracy of "keep iff the score
says not worse" against "delta Dice >= 0".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section
from uncertainty_bench import PREP, dice, train_task

from medimg.data.phantoms import make_two_site_phantom
from medimg.inference.ensemble import Ensemble
from medimg.inference.model import model_from_task
from medimg.inference.uncertainty import risk_record, uncertainty_maps
from medimg.tasks.adapt import MIN_FOREGROUND_RATIO, adapt
from medimg.transforms.pipelines import Preprocessing, preprocessing

#: (row label, method, adapt() keyword arguments) per normalisation of the trained net
ADAPTATIONS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "instance": [
        ("auto (TENT 20 steps, lr 1e-3)", "auto", {}),
        ("TENT 5 steps, lr 1e-3", "tent", {"tent_steps": 5}),
        ("TENT 60 steps, lr 1e-3", "tent", {"tent_steps": 60}),
        ("TENT 20 steps, lr 1e-2", "tent", {"tent_lr": 1e-2}),
    ],
    "batch": [
        ("auto (AdaBN)", "auto", {}),
        ("TENT 20 steps, lr 1e-3", "tent", {}),
        ("AdaBN+TENT 20 steps, lr 1e-3", "adabn+tent", {}),
        ("AdaBN+TENT 20 steps, lr 1e-2", "adabn+tent", {"tent_lr": 1e-2}),
    ],
}


def _stack(root: Path, sub: str, site: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed images and labels (N, 1, X, Y, Z) of ``images<sub>/<site>`` with ``labels<sub>/<site>``."""
    pp = preprocessing(Preprocessing.from_dict(PREP), keys=["image", "label"])
    cases = [pp({"image": str(p), "label": str(root / f"labels{sub}" / site / p.name)})
             for p in sorted((root / f"images{sub}" / site).glob("*.nii.gz"))]  # fmt: skip
    x = torch.stack([torch.as_tensor(c["image"]) for c in cases]).float()
    return x, torch.stack([torch.as_tensor(c["label"]) for c in cases]).float()


def true_dice(task: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean foreground Dice of ``task`` on labelled preprocessed cases (the truth; never seen by a rule)."""
    with torch.no_grad():
        pred = torch.cat([task.infer(xi[None]).argmax(1) for xi in x]).numpy()
    return float(np.mean([dice(p, t[0]) for p, t in zip(pred, y.numpy(), strict=True)]))


def risk_scores(task: Any, volumes: list[torch.Tensor]) -> dict[str, float]:
    """Mean medimg risk (TTA: identity + 3 flips), TTA pairwise Dice and max-softmax over unlabelled volumes."""
    model = model_from_task(task)
    voxel = float(np.prod(np.asarray(PREP["spacing"], dtype=np.float64)))
    records = [risk_record(uncertainty_maps(Ensemble([model], tta=True).probabilities(v[None])), voxel)
               for v in volumes]  # fmt: skip
    task.eval()
    return {
        "risk": float(np.mean([r.risk for r in records])),
        "tta_agreement": float(np.mean([r.pairwise_dice for r in records])),
        "max_softmax": float(np.mean([r.max_softmax for r in records])),
    }


def one_model(task: Any, images: list[Path], held_out: tuple[torch.Tensor, torch.Tensor], norm: str,
              seed: int) -> list[dict[str, Any]]:  # fmt: skip
    """Every adaptation of ``norm``'s list applied to a fresh copy of ``task``: before/after figures."""
    model = model_from_task(task)
    volumes = [torch.as_tensor(model.prepare(p)[1]).float() for p in images]
    task.eval()
    dice0, risk0 = true_dice(task, *held_out), risk_scores(task, volumes)
    rows = []
    for label, method, kwargs in ADAPTATIONS[norm]:
        adapted = copy.deepcopy(task)
        report = adapt(adapted, images, method, seed=seed, **kwargs)  # type: ignore[arg-type]
        risk1 = risk_scores(adapted, volumes)
        row: dict[str, Any] = {"model": f"{norm} seed {seed}", "adaptation": label, "method": report.method,
               "dice_before": dice0, "dice_after": true_dice(adapted, *held_out),
               "flip_before": report.before.flip_agreement, "flip_after": report.after.flip_agreement,
               "entropy_before": report.before.entropy, "entropy_after": report.after.entropy,
               "fg_guard": report.after.foreground >= MIN_FOREGROUND_RATIO * report.before.foreground,
               "today": report.improved}  # fmt: skip
        row.update({f"{k}_before": v for k, v in risk0.items()})
        row.update({f"{k}_after": v for k, v in risk1.items()})
        rows.append(row)
        print(f"{row['model']:>17} | {label:<44} | dDice {row['dice_after'] - dice0:+.3f} | "
              f"dflip {row['flip_after'] - row['flip_before']:+.4f} | "
              f"drisk {row['risk_after'] - row['risk_before']:+.4f} | today {'keep' if row['today'] else 'refuse'}",
              flush=True)  # fmt: skip
    return rows


def delta(r: dict[str, Any], key: str, sign: float = 1.0) -> float:
    return sign * (float(r[f"{key}_after"]) - float(r[f"{key}_before"]))


#: (row, the score's change with higher = better, the rule "keep iff ..."); the truth is delta Dice >= 0
SCORES: list[tuple[str, Any, Any]] = [
    ("flip agreement + foreground guard (today's rule)", lambda r: delta(r, "flip"), lambda r: r["today"]),
    ("flip agreement alone", lambda r: delta(r, "flip"), lambda r: delta(r, "flip") >= 0),
    ("medimg risk (TTA), not higher", lambda r: delta(r, "risk", -1), lambda r: delta(r, "risk", -1) >= 0),
    ("medimg risk + foreground guard", lambda r: delta(r, "risk", -1),
     lambda r: delta(r, "risk", -1) >= 0 and r["fg_guard"]),
    ("TTA pairwise Dice (risk's agreement part)", lambda r: delta(r, "tta_agreement"),
     lambda r: delta(r, "tta_agreement") >= 0),
    ("max-softmax (risk's confidence part)", lambda r: delta(r, "max_softmax"),
     lambda r: delta(r, "max_softmax") >= 0),
    ("entropy, not higher (reported today)", lambda r: delta(r, "entropy", -1),
     lambda r: delta(r, "entropy", -1) >= 0),
]  # fmt: skip


def summary(rows: list[dict[str, Any]]) -> list[str]:
    truth = [delta(r, "dice") for r in rows]
    helped = [t >= 0 for t in truth]
    guarded = [r for r in rows if r["fg_guard"]]  # no collapse: where flip agreement has to decide on its own
    lines = [
        '| score (decides "keep iff not worse") | Spearman rho with delta Dice (p) | rho where the foreground '
        f"guard passes (n = {len(guarded)}) | accuracy | kept & helped | kept & hurt | refused & helped | "
        "refused & hurt | mean delta Dice under the rule |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, change, rule in SCORES:
        rho, p = spearmanr([change(r) for r in rows], truth)
        rho_g = spearmanr([change(r) for r in guarded], [delta(r, "dice") for r in guarded])[0]
        keep = [bool(rule(r)) for r in rows]
        counts = [sum(k == a and h == b for k, h in zip(keep, helped, strict=True))
                  for a, b in ((True, True), (True, False), (False, True), (False, False))]  # fmt: skip
        gain = np.mean([t if k else 0.0 for t, k in zip(truth, keep, strict=True)])
        lines.append(f"| {name} | {rho:+.3f} ({p:.2g}) | {rho_g:+.3f} | {(counts[0] + counts[3]) / len(rows):.2f} | "
                     + " | ".join(str(c) for c in counts) + f" | {gain:+.4f} |")  # fmt: skip
    lines.append(f"| always keep | | | {sum(helped) / len(rows):.2f} | {sum(helped)} | {len(rows) - sum(helped)} "
                 f"| 0 | 0 | {np.mean(truth):+.4f} |")  # fmt: skip
    oracle = np.mean([max(t, 0.0) for t in truth])
    lines.append(f"| oracle (the labels) | | | 1.00 | {sum(helped)} | 0 | 0 | {len(rows) - sum(helped)} "
                 f"| {oracle:+.4f} |")  # fmt: skip
    return lines


def per_adaptation(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | adaptation | Dice B before | delta Dice | delta flip agreement | delta risk | today's rule "
        "| risk rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        risk_keep = delta(r, "risk", -1) >= 0
        lines.append(f"| {r['model']} | {r['adaptation']} | {r['dice_before']:.3f} | {delta(r, 'dice'):+.3f} | "
                     f"{delta(r, 'flip'):+.4f} | {delta(r, 'risk'):+.4f} | {'keep' if r['today'] else 'refuse'} | "
                     f"{'keep' if risk_keep else 'refuse'} |")  # fmt: skip
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--update-md", action="store_true")
    ap.add_argument("--save-rows", type=Path, help="write every adaptation's figures (JSON) here")
    ap.add_argument("--from-rows", type=Path, help="report the figures a --save-rows run wrote; run nothing")
    args = ap.parse_args()
    if args.from_rows:
        saved = json.loads(args.from_rows.read_text())
        rows, load, seconds = saved["rows"], saved["load"], saved["seconds"]
        args.seeds, args.steps = saved.get("seeds", args.seeds), saved.get("steps", args.steps)
    else:
        rows, load, seconds = run(args.seeds, args.steps)
    if args.save_rows:
        args.save_rows.write_text(
            json.dumps(
                {"rows": rows, "load": load, "seconds": seconds, "seeds": args.seeds, "steps": args.steps}, indent=1
            )
        )
    text = "\n".join(report_lines(rows, args, load, seconds))
    print(text)
    if args.update_md:
        update_section("Adaptation: which score decides (issue 30)", text)


def run(seeds: list[int], steps: int) -> tuple[list[dict[str, Any]], float, float]:
    """Every adaptation's figures, the load average at the start and the seconds the run took."""
    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            root = make_two_site_phantom(Path(tmp) / f"sites{seed}", 4, 6, shape=(32, 32, 24), seed=seed)
            x, y = _stack(root, "Tr", "A")
            held_out = _stack(root, "Ts", "B")
            images = sorted((root / "imagesTr" / "B").glob("*.nii.gz"))
            for norm in ADAPTATIONS:
                task = train_task(x, y, seed, steps, norm)
                rows += one_model(task, images, held_out, norm, seed)
    return rows, load, time.perf_counter() - t0


def _rho(rows: list[dict[str, Any]], key: str, sign: float) -> float:
    return float(spearmanr([delta(r, key, sign) for r in rows], [delta(r, "dice") for r in rows])[0])


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """What the figures say about the rule, computed from them: where the two rules differ, their accuracy, the
    correlations with and without the collapses, and how often each method family helped."""
    truth = [delta(r, "dice") >= 0 for r in rows]
    today = [bool(r["today"]) for r in rows]
    risk = [delta(r, "risk", -1) >= 0 for r in rows]
    acc_today = np.mean([k == t for k, t in zip(today, truth, strict=True)])
    acc_risk = np.mean([k == t for k, t in zip(risk, truth, strict=True)])
    differ = sum(a != b for a, b in zip(today, risk, strict=True))
    guarded = [r for r in rows if r["fg_guard"]]
    better = acc_risk > acc_today
    lines = [
        f"* The two rules decide differently on {differ} of {len(rows)} adaptations; accuracy: today's rule "
        f"{acc_today:.2f}, the risk rule {acc_risk:.2f}.",
        f"* Spearman's rho over all adaptations: flip agreement {_rho(rows, 'flip', 1):+.2f}, risk "
        f"{_rho(rows, 'risk', -1):+.2f}. Where the foreground guard passes (no collapse, n = {len(guarded)}): flip "
        f"agreement {_rho(guarded, 'flip', 1):+.2f}, risk {_rho(guarded, 'risk', -1):+.2f}. A collapse to (nearly) "
        "all background raises flip agreement (an empty mask agrees with itself) and sets the risk of each empty "
        "image to 1; today's rule catches collapses with its foreground guard, not with flip agreement.",
    ]
    for family, pick in (("instance", "instance-norm nets (TENT: what `auto` picks for the planned nets)"),
                         ("batch", "batch-norm nets")):  # fmt: skip
        mine = [r for r in rows if r["model"].startswith(family)]
        up = sum(delta(r, "dice") >= 0 for r in mine)
        lines.append(f"* On the {pick}: {up} of {len(mine)} adaptations raised the true Dice on site B.")
    used = Counter(r["method"] for r in rows if delta(r, "dice") >= 0)
    lines.append(
        f"* Caveats: one phantom, {len({r['model'] for r in rows})} tiny nets trained for seconds each, "
        f"{len(rows)} adaptations; the adaptations that helped used "
        + (", ".join(f"{m} ({n})" for m, n in used.most_common()) or "nothing")
        + " (see the sites section: a short run's batch-norm statistics lag its weights, which AdaBN fixes)."
    )
    lines.append(
        "* Decision: "
        + (
            "the risk rule decides more often right than today's rule, so it should decide."
            if better
            else "the risk rule does not decide more often right than today's rule (flip agreement + foreground "
            "guard), so `medimg adapt` keeps today's rule"
            + (
                "; the risk predicts how much Dice changes better, but that does not change a keep/refuse decision "
                "here."
                if _rho(guarded, "risk", -1) > _rho(guarded, "flip", 1) + 0.1
                else ", and the risk does not predict the change in Dice better either once collapses are set aside."
            )
        )
    )
    return lines


def report_lines(rows: list[dict[str, Any]], args: argparse.Namespace, load: float, seconds: float) -> list[str]:
    hurt = sum(delta(r, "dice") < 0 for r in rows)
    seeds = " ".join(str(s) for s in args.seeds)
    return [
        f"Two-site phantom (32 x 32 x 24; site B: bias field, 40 % less contrast, 2x noise), seeds {seeds}; per "
        f"seed one small UNet with the plan's instance norm and one with batch norm, {args.steps} Adam steps on "
        f"site A's 4 labelled cases; each adapted to site B's 4 unlabelled training images in {len(rows)} ways "
        f"({len(rows) - hurt} raised the true Dice, {hurt} lowered it). Truth: mean Dice on site B's 6 held-out "
        "labelled cases; scores: on the 4 adaptation images (what `adapt` sees), medimg risk over the identity and "
        "3 flips, averaged. Spearman's rho: the score's change (signed: higher = better) against delta Dice. "
        f"Machine: {platform.machine()}, 2 threads, shared with other sessions (load average {load:.2f} at the "
        f"start); whole run {seconds:.0f} s.",
        "",
        *summary(rows),
        "",
        *verdict(rows),
        "",
        *per_adaptation(rows),
        "",
        f"Reproduce: `.venv/bin/python benchmarks/adapt_rule_bench.py --seeds {seeds} --steps {args.steps} "
        "--update-md`",
    ]


if __name__ == "__main__":
    main()
