"""Reading session: seconds from "next" to the next case on screen, with and without precomputed explanations.

    .venv/bin/python benchmarks/review_bench.py [--size 96] [--cases 3] [--repeats 3] [--update-md]

A small 3D U-Net is trained for one epoch on CT-like phantoms (``--size`` voxels a side, the held-out cases are
read), ``medimg explain --cases`` precomputes the held-out cases, and a :class:`SessionWidget` then moves to the
next case: reading the precomputed folder (three NIfTI files) and drawing the viewer, against computing the map
on demand (``explain_case``: sliding-window inference, HiResCAM, randomisation check) and drawing it. Each move
starts with the in-memory cache emptied; interleaved, median of ``--repeats``; CPU, 2 threads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import race, update_section

from medimg.data.phantoms import make_phantom_msd
from medimg.explain.batch import explain_cases
from medimg.review import open_session, read_worklist
from medimg.review.study.session_view import SessionWidget
from medimg.tasks.lightning_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def _train(data: Path, run: Path, size: int) -> Path:
    patch = f"[{min(size, 64)}, {min(size, 64)}, {min(size, 64)}]"
    run_cli(["fit", "--config", str(ROOT / "configs" / "seg_unet3d.yaml"), "--data.dataset_dir", str(data),
             "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false", "--data.patch_size", patch, "--data.num_workers", "0",
             "--data.epoch_length", "4", "--model.roi_size", patch,
             "--model.net_kwargs", "{channels: [8, 16, 32], strides: [2, 2], num_res_units: 1}",
             "--trainer.default_root_dir", str(run)])  # fmt: skip
    return run / "checkpoints" / "last.ckpt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--update-md", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shape = (args.size, args.size, max(args.size * 2 // 3, 16))
        data = make_phantom_msd(root / "Task", n_cases=4, n_test=args.cases, shape=shape, seed=2)
        ckpt = _train(data, root / "run", args.size)
        worklist = read_worklist(data / "dataset.json")
        t0 = time.perf_counter()
        explain_cases(ckpt, [(c.case_id, c.image) for c in worklist.cases], root / "ex", progress=False)
        batch_s = (time.perf_counter() - t0) / len(worklist.cases)
        views = {
            name: SessionWidget(open_session(worklist, ckpt, store=root / "r.sqlite", reader=name, precomputed=pre))
            for name, pre in (("precomputed", root / "ex"), ("on demand", None))
        }

        def next_case(view: SessionWidget) -> None:
            view.state.source._cache.clear()  # a case not seen in this sitting
            view.show((view.state.position + 1) % len(view.state))
            assert view.viewer is not None, view.message.value

        t = race({name: lambda v=v: next_case(v) for name, v in views.items()}, args.repeats)
    lines = [
        f"CPU, 2 threads; phantom CT {shape[0]} x {shape[1]} x {shape[2]} voxels, 3D U-Net (8..32 channels), "
        f"{args.cases} held-out cases; median of {args.repeats} moves to the next case (interleaved). "
        "Measured while other sessions loaded the machine (2 shared cores).",
        "",
        "| next case | seconds | on demand / precomputed |",
        "|---|---|---|",
        f"| precomputed (`medimg explain --cases ... --out-dir`) | {t['precomputed']:.2f} | "
        f"{t['on demand'] / t['precomputed']:.1f} |",
        f"| on demand (`explain_case`, then cached) | {t['on demand']:.2f} | 1.0 |",
        "",
        f"Target with the precomputed folder: < {TARGET_S:.0f} s "
        f"({'met' if t['precomputed'] < TARGET_S else 'NOT met'}). The batch job itself took {batch_s:.1f} s "
        "per case (a GPU/cluster job in practice).",
        "",
        "Reproduce: `.venv/bin/python benchmarks/review_bench.py --update-md`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.update_md:
        update_section("Reading session (issue 14)", text)


if __name__ == "__main__":
    main()
