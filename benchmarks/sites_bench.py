"""Scanner shift on the two-site phantom, over several seeds: Dice on site A, on site B unadapted, with the
``scanner_shift`` preset, and after ``medimg adapt`` (AdaBN) on site B's unlabelled training images.

    .venv/bin/python benchmarks/sites_bench.py [--seeds 0 1 2] [--epochs 3] [--update-md]

Per seed: :func:`medimg.data.phantoms.make_two_site_phantom` (4 labelled cases per site, 2 held out per site,
32 x 32 x 24 voxels), two fits on site A only (``--data.held_out_site B``; default augmentation and the preset),
the same small 3D U-Net as the tests (batch norm, momentum 0.5), scored on the held-out cases of each site with
the checkpoint's own preprocessing. Two controls beside AdaBN on B: AdaBN on site A's images (re-estimating the
statistics on the source site: what AdaBN gains that is not about the shift), and whether the unlabelled proxy
accepted the adaptation (``medimg adapt`` writes only then).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _report import update_section
from tests_support import SMALL_FIT

from medimg.data.datasets import read_msd
from medimg.data.phantoms import make_two_site_phantom
from medimg.tasks.adapt import adapt, list_images
from medimg.tasks.checkpoint import load_task
from medimg.tasks.lightning_cli import run_cli
from medimg.tasks.site_metrics import score_cases, site_table


def fit_args(epochs: int, seed: int) -> list[str]:
    return [
        *SMALL_FIT,
        "--data.intensity", "mr",
        "--data.patch_size", "[24, 24, 24]",
        "--model.roi_size", "[24, 24, 24]",
        "--model.net_kwargs",
        "{channels: [8, 16, 32], strides: [2, 2], num_res_units: 1, norm: [batch, {momentum: 0.5}]}",
        "--data.epoch_length", "16",
        "--trainer.max_epochs", str(epochs),
        "--trainer.check_val_every_n_epoch", str(epochs),
        "--seed_everything", str(seed),
    ]  # fmt: skip


def dice_by_site(task: object, root: Path) -> dict[str, float]:
    cases = [{**c, "label": c["image"].replace("imagesTs", "labelsTs")} for c in read_msd(root).test]
    return {r["site"]: r["dice"] for r in site_table(score_cases(task, cases), ("dice", "hd95_mm"))}


def one_seed(seed: int, epochs: int, work: Path) -> dict[str, float]:
    root = make_two_site_phantom(work / f"data{seed}", 4, 2, shape=(32, 32, 24), seed=seed)
    ckpts = {}
    for augment in ("default", "scanner_shift"):
        out = work / f"run{seed}_{augment}"
        run_cli(["fit", *fit_args(epochs, seed), "--data.dataset_dir", str(root), "--data.held_out_site", "B",
                 "--data.augment", augment, "--trainer.default_root_dir", str(out)])  # fmt: skip
        ckpts[augment] = out / "checkpoints" / "last.ckpt"
    base = dice_by_site(load_task(ckpts["default"]), root)
    preset = dice_by_site(load_task(ckpts["scanner_shift"]), root)
    task = load_task(ckpts["default"])
    report = adapt(task, list_images(root / "imagesTr" / "B"), "adabn")
    adapted = dice_by_site(task, root)
    control = load_task(ckpts["default"])
    adapt(control, list_images(root / "imagesTr" / "A"), "adabn")
    on_a = dice_by_site(control, root)
    return {
        "A": base["A"],
        "B": base["B"],
        "A preset": preset["A"],
        "B preset": preset["B"],
        "B AdaBN(B)": adapted["B"],
        "A AdaBN(B)": adapted["A"],
        "B AdaBN(A)": on_a["B"],
        "accepted": float(report.improved),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--update-md", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {seed: one_seed(seed, args.epochs, Path(tmp)) for seed in args.seeds}
    cols = ["A", "B", "A preset", "B preset", "B AdaBN(B)", "A AdaBN(B)", "B AdaBN(A)"]
    lines = [
        f"Two-site MR-like phantom (site B: bias field, 40 % less contrast, 2x noise), trained on site A only, "
        f"{args.epochs} epochs of 16 volumes, CPU; Dice of the organ on 2 held-out cases per site. "
        "The machine was shared with other sessions (timings not reported; Dice does not depend on load).",
        "",
        "| seed | " + " | ".join(cols) + " | proxy accepted AdaBN(B) |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for seed, r in rows.items():
        lines.append(
            f"| {seed} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + f" | {'yes' if r['accepted'] else 'no'} |"
        )
    means = {c: statistics.mean(r[c] for r in rows.values()) for c in cols}
    lines.append("| mean | " + " | ".join(f"{means[c]:.3f}" for c in cols) + " | |")
    lines += [
        "",
        "A, B: the default run; preset: trained with `--data.augment scanner_shift`; AdaBN(B): `medimg adapt` on "
        "site B's unlabelled training images; AdaBN(A): the same on site A's images (control: how much of AdaBN's "
        "gain is re-estimating statistics that lag a short run's weights rather than the shift).",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/sites_bench.py --epochs {args.epochs} --update-md`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.update_md:
        update_section(
            f"Sites: scanner shift, augmentation preset and adaptation, {args.epochs} epochs (issue 17)", text
        )


if __name__ == "__main__":
    main()
