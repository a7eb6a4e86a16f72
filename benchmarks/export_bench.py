"""``medimg segment`` with the checkpoint (eager torch) vs with its ONNX export (ONNX Runtime), side by side.

    .venv/bin/python benchmarks/export_bench.py [--shape 512 512 300] [--classes 2 14] [--update-md]

One CT-sized volume (512 x 512 x 300, int16 HU, already at the model's 1.5 x 1.5 x 2 mm spacing, so the
preprocessed grid is as large as the input: the worst case for memory), the shipped ``configs/seg_unet3d.yaml``
network (UNet 16..256, ROI 96^3, 4 windows per call, overlap 0.25) with random weights (speed and memory do not
depend on training), 2 threads. Each contender runs ``medimg segment`` in its own process, timed from the
outside (start-up, loading, preprocessing, windows, resampling and writing the mask included); its peak RSS
is its VmHWM. The anchor for memory is what ``medimg segment`` did before streaming: MONAI's
``sliding_window_inference`` holding every class's blended logits for the whole volume in float32, then argmax.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2
NET = {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"}
PREP = {"spacing": [1.5, 1.5, 2.0], "intensity": "ct", "ct_window": [-57.0, 164.0], "crop_foreground": False,
        "patch_size": [96, 96, 96]}  # fmt: skip

#: prepended to each contender: print the process's own peak RSS at exit. ``os.wait4``'s ``ru_maxrss`` would
#: count the benchmark's own memory too (a forked child starts with its parent's high-water mark); VmHWM
#: belongs to the address space that ``exec`` made fresh.
PEAK_RSS = """
import atexit, sys
def _peak():
    with open("/proc/self/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    print(f"peak-rss-kib {kib}", file=sys.stderr)
atexit.register(_peak)
"""
MEDIMG = PEAK_RSS + "from medimg.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
#: the anchor: medimg segment before streaming (MONAI's full float32 stitch of every class, then argmax)
MONAI_STITCH = (
    PEAK_RSS
    + """
import sys, torch, numpy as np
torch.set_num_threads(int(sys.argv[4]))
from medimg.io.volume import Volume
from medimg.inference.model import model_from_task
from medimg.inference.pipeline import to_input_grid
from medimg.tasks.checkpoint import load_task
task = load_task(sys.argv[1])
original, data = model_from_task(task).prepare(sys.argv[2])
with torch.no_grad():
    pred = torch.argmax(task.infer(data.unsqueeze(0)), dim=1).to(torch.float32)
mask = to_input_grid(pred, data, original).astype(np.uint8)
Volume(mask, np.asarray(original.affine, dtype=np.float64)).save(sys.argv[3])
"""
)


def make_checkpoint(classes: int, path: Path) -> Path:
    import pytorch_lightning as pl
    import torch

    from medimg.tasks.segmentation import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(net="unet", net_kwargs=NET, num_classes=classes, roi_size=(96, 96, 96), preprocessing=PREP)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


def make_volume(shape: tuple[int, int, int], path: Path) -> Path:
    """A body-like CT phantom (int16 HU) with the model's voxel size."""
    from medimg.data.phantoms import phantom_case

    image, _ = phantom_case(np.random.default_rng(0), shape=shape, spacing=(1.5, 1.5, 2.0))
    return image.save(path)


def run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of one contender in its own process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    peaks = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("peak-rss-kib ")]
    if proc.returncode != 0 or not peaks:
        raise SystemExit(f"{' '.join(argv[3:])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, peaks[-1] / 1024**2


STAGES = ("load", "preprocess", "network", "blending", "back", "write")


def stage_table(stages: dict[tuple[int, str], dict[str, Any]]) -> list[str]:
    """Where the time goes (``medimg segment --timings``), per classes and backend, and the issue-33 targets."""
    if not stages:
        return []
    lines = [
        "Stages (s) as `medimg segment --timings` records them; `other/net` is everything but the network over the",
        "network (target <= 0.33):",
        "",
        "| classes | backend | " + " | ".join(STAGES) + " | other/net | network Mvox/s | peak RSS reached in |",
        "|---|---|" + "---|" * (len(STAGES) + 3),
    ]
    for (k, name), t in sorted(stages.items()):
        sec = t["seconds"]
        rate = t.get("network_voxels_per_s") or 0
        lines.append(
            f"| {k} | {name} | " + " | ".join(f"{sec[s]:.1f}" for s in STAGES)
            + f" | {t.get('non_network_over_network') or 0:.2f} | {rate / 1e6:.2f} | {t.get('peak_rss_stage') or '-'} |"
        )  # fmt: skip
    classes = sorted({k for k, _ in stages})
    if len(classes) >= 2:
        lo, hi = classes[0], classes[-1]
        for name in sorted({n for _, n in stages}):
            if (lo, name) in stages and (hi, name) in stages:
                ratio = stages[(hi, name)]["total_s"] / stages[(lo, name)]["total_s"]
                net = stages[(hi, name)]["seconds"]["network"] / stages[(lo, name)]["seconds"]["network"]
                lines.append(
                    f"- {name}: {hi} classes cost {ratio:.2f}x the {lo}-class time (target <= 1.25x); the network "
                    f"alone {net:.2f}x"
                )
    return lines


def verdict(classes: int, figures: dict[str, tuple[float, float]]) -> str:
    """The targets, met or not, in words."""
    speed = figures["torch"][0] / figures["onnxruntime"][0]
    text = f"{classes} classes: ONNX Runtime {speed:.2f}x torch ({'meets' if speed >= 1.3 else 'misses'} 1.3x)"
    if classes >= 14:
        rss = figures["onnxruntime"][1]
        text += f"; peak RSS {rss:.2f} GB ({'meets' if rss <= 2.0 else 'misses'} 2.0 GB)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--classes", type=int, nargs="+", default=(2, 14))
    parser.add_argument("--skip-anchor", action="store_true", help="do not run MONAI's full stitch")
    parser.add_argument("--update-md", action="store_true")
    args = parser.parse_args()

    from medimg.export import export_checkpoint
    from medimg.io import load
    from medimg.tasks.metrics import dice_per_class

    load_at_start = os.getloadavg()[0]
    medimg = [sys.executable, "-c", MEDIMG, "segment"]
    rows, notes = [], []
    stages: dict[tuple[int, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        image = make_volume(tuple(args.shape), tmp / "ct.nii.gz")
        for k in args.classes:
            ckpt = make_checkpoint(k, tmp / f"unet{k}.ckpt")
            report = export_checkpoint(ckpt, tmp / f"unet{k}.onnx")
            notes.append(f"{k} classes: export {report.seconds:.0f} s, max |logit difference| "
                         f"{max(report.max_abs_diff.values()):.1e}")  # fmt: skip
            masks = {"torch": tmp / f"torch{k}.nii.gz", "onnxruntime": tmp / f"ort{k}.nii.gz"}
            contenders = {
                "torch": [*medimg, str(ckpt), str(image), str(masks["torch"]), "--device", "cpu"],
                "onnxruntime": [*medimg, str(report.path), str(image), str(masks["onnxruntime"])],
            }
            stage_files = {n: tmp / f"timings_{n}{k}.json" for n in contenders}
            contenders = {
                n: [*c, "--threads", str(THREADS), "--timings", str(stage_files[n])] for n, c in contenders.items()
            }
            if k == max(args.classes) and not args.skip_anchor:
                anchor = tmp / f"monai{k}.nii.gz"
                contenders["MONAI full stitch (before)"] = [
                    sys.executable, "-c", MONAI_STITCH, str(ckpt), str(image), str(anchor), str(THREADS)
                ]  # fmt: skip
            figures = {}
            for name, argv in contenders.items():
                figures[name] = run(argv)
                print(f"{k} classes, {name}: {figures[name][0]:.1f} s, peak RSS {figures[name][1]:.2f} GB", flush=True)
            a, b = (np.asarray(load(masks[n]).array) for n in ("torch", "onnxruntime"))
            agree = float((a == b).mean())
            worst = min(dice_per_class(a, b, range(1, k)).values())
            for name, (wall, rss) in figures.items():
                rows.append(f"| {k} | {name} | {wall:.1f} | {figures['torch'][0] / wall:.2f}x | {rss:.2f} |")
            for name, path in stage_files.items():
                stages[(k, name)] = json.loads(path.read_text())
            notes.append(f"{k} classes: torch and ONNX Runtime masks agree on {agree:.4%} of voxels "
                         f"(lowest Dice per class {worst:.4f})")  # fmt: skip
            notes.append(verdict(k, figures))
    shape = " x ".join(map(str, args.shape))
    body = "\n".join([
        "`.venv/bin/python benchmarks/export_bench.py --update-md`: `medimg segment` with a checkpoint (eager torch)",
        f"and with its ONNX export (ONNX Runtime, CPU) on a {shape} CT phantom at the model's spacing, UNet 16..256",
        f"(configs/seg_unet3d.yaml, random weights), ROI 96^3, {THREADS} threads, each run in its own process",
        "(wall time includes start-up, preprocessing, resampling and writing; peak RSS is the process's VmHWM).",
        "Targets: ONNX Runtime >= 1.3x faster than torch; peak RSS <= 2.0 GB with 14 classes; 14 classes <= 1.25x the",
        "2-class time per backend; everything but the network <= 1/3 of the network's time.",
        "",
        "| classes | contender | wall s | speed vs torch | peak RSS GB |",
        "|---|---|---|---|---|",
        *rows,
        "",
        *stage_table(stages),
        "",
        *[f"- {n}" for n in notes],
        f"- Load average at the start: {load_at_start:.2f} (wall times on a busy 2-core machine are noisy).",
    ])  # fmt: skip
    print(body)
    if args.update_md:
        update_section("Export: torch vs ONNX Runtime (medimg segment)", body)


if __name__ == "__main__":
    main()
