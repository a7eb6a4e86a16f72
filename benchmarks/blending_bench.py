"""Sliding-window blending alone: medimg's streaming blend against MONAI's ``sliding_window_inference``, with the
network taken out (a predictor that returns stored logits), so what is timed is the pipeline's own share.

    .venv/bin/python benchmarks/blending_bench.py [--shape 512 512 300] [--classes 2 14] [--repeats 2] [--update-md]

Contenders, each in its own child process per run (so peak RSS is its own; runs interleaved, median of
``--repeats``):

* medimg: :func:`medimg.inference.blending.sliding_window_labels` -> uint8 labels (Gaussian weights summed into a
  ring of planes, each plane labelled when final).
* MONAI 1.6: ``sliding_window_inference(mode="gaussian", sigma_scale=0.125, overlap=0.25)`` then ``argmax`` over
  classes -> the same label map (checked: identical voxels).

Both use a 96^3 ROI, 4 windows per call, 2 threads. ``predictor`` cost (copying the stored logits) is measured
alone and subtracted. Ratios are MONAI / medimg (> 1: medimg is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROI, BATCH, OVERLAP = (96, 96, 96), 4, 0.25
CONTENDERS = ("medimg", "monai")


def child(name: str, shape: tuple[int, int, int], classes: int) -> dict[str, float]:
    """One contender's run: seconds (minus the predictor's own copying) and peak RSS (GB)."""
    import torch
    from monai.inferers import sliding_window_inference

    from medimg.inference.blending import sliding_window_labels

    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, *shape, generator=gen)
    stored = torch.randn(BATCH, classes, *ROI, generator=gen)
    calls = [0]

    def predictor(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return stored[: x.shape[0]].clone()  # a fresh output per call, as a network gives

    t0 = time.perf_counter()
    with torch.no_grad():
        if name == "medimg":
            labels = sliding_window_labels(image, predictor, ROI, sw_batch_size=BATCH, overlap=OVERLAP)
        else:
            out = sliding_window_inference(image[None], ROI, BATCH, predictor, overlap=OVERLAP, mode="gaussian",
                                           sigma_scale=0.125)  # fmt: skip
            labels = torch.as_tensor(out)[0].argmax(0).to(torch.uint8)
            del out
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(3):
        predictor(stored)
    seconds -= (time.perf_counter() - t1) / 3 * calls[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # before the check below allocates
    digest = int(labels.to(torch.int64).mul(torch.arange(labels.numel()).view(labels.shape) % 7919).sum())
    return {"seconds": seconds, "peak_gb": peak, "digest": float(digest)}


def run(name: str, shape: tuple[int, ...], classes: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", name, "--shape", *map(str, shape), "--classes", str(classes)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--classes", type=int, nargs="+", default=(2, 14))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=CONTENDERS)
    parser.add_argument("--update-md", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, tuple(args.shape), args.classes[0])))
        return
    load = os.getloadavg()[0]
    rows = []
    for k in args.classes:
        got: dict[str, list[dict[str, float]]] = {n: [] for n in CONTENDERS}
        for _ in range(args.repeats):
            for name in CONTENDERS:
                got[name].append(run(name, tuple(args.shape), k))
                print(k, name, got[name][-1], flush=True)
        same = got["medimg"][0]["digest"] == got["monai"][0]["digest"]
        sec = {n: statistics.median(r["seconds"] for r in got[n]) for n in CONTENDERS}
        peak = {n: max(r["peak_gb"] for r in got[n]) for n in CONTENDERS}
        rows.append(f"| {k} | {sec['medimg']:.1f} | {peak['medimg']:.2f} | {sec['monai']:.1f} | {peak['monai']:.2f} "
                    f"| {sec['monai'] / sec['medimg']:.2f}x | {'yes' if same else 'NO'} |")  # fmt: skip
    body = "\n".join([
        f"`benchmarks/blending_bench.py --shape {' '.join(map(str, args.shape))}`: the blending alone (network "
        f"replaced by stored logits), 96^3 ROI, overlap 0.25, 4 windows per call, 2 threads; load average at start "
        f"{load:.1f} on {os.cpu_count()} cores.",
        "",
        "| classes | medimg s | medimg peak GB | MONAI + argmax s | MONAI peak GB | MONAI / medimg | same labels |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])  # fmt: skip
    print(body)
    if args.update_md:
        from _report import update_section

        update_section("Sliding-window blending (network taken out)", body)


if __name__ == "__main__":
    main()
