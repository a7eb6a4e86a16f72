"""Parameters and CPU forward time of every default medimg model at a typical input.

    .venv/bin/python benchmarks/models_bench.py [--repeats 3] [--update-md]

2D backbones: batch 1 of 1 x 224 x 224; 3D backbones and segmentation nets: batch 1 of 1 x 96 x 96 x 96.
Median of ``--repeats`` timed forwards after one warm-up, ``torch.no_grad()``, eval mode, fp32, 2 threads.
The anchor is the same architecture fed the gray image copied into 3 channels (what users do without the
single-channel rule): the ratio shows what summing the kernels saves (first layer only, so it is small).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section

from medimg.models import create_backbone, segmentation_net
from medimg.models.backbones import BACKBONES_2D


def timed(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    model.eval()
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--update-md", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = ["| model | input | params (M) | forward s | 3-channel copy s | ratio |", "|---|---|---|---|---|---|"]
    x2 = torch.rand(1, 1, 224, 224)
    for name in BACKBONES_2D:
        one = create_backbone(name, num_classes=2)
        three = create_backbone(name, num_classes=2, in_channels=3)
        t1, t3 = timed(one, x2, args.repeats), timed(three, x2.repeat(1, 3, 1, 1), args.repeats)
        rows.append(f"| {name} (2D) | 1x224^2 | {params(one):.2f} | {t1:.3f} | {t3:.3f} | {t3 / t1:.2f}x |")
        print(rows[-1], flush=True)
    x3 = torch.rand(1, 1, 96, 96, 96)
    for name, kw in (("resnet10", {}), ("resnet18", {}), ("resnet18", {"inflate_from_2d": True})):
        model = create_backbone(name, num_classes=2, spatial_dims=3, **kw)  # type: ignore[arg-type]
        label = f"{name} (3D{', inflated' if kw else ''})"
        rows.append(f"| {label} | 1x96^3 | {params(model):.2f} | {timed(model, x3, args.repeats):.3f} | - | - |")
        print(rows[-1], flush=True)
    for name in ("unet", "dynunet", "segresnet", "swinunetr"):
        net = segmentation_net(name)
        rows.append(f"| {name} (seg) | 1x96^3 | {params(net):.2f} | {timed(net, x3, args.repeats):.3f} | - | - |")
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            f"CPU, 2 threads, fp32, eval, batch 1, median of {args.repeats}; torch {torch.__version__}.",
            "",
            *rows,
            "",
            "Reproduce: `.venv/bin/python benchmarks/models_bench.py --update-md`",
        ]
    )
    print(text)
    if args.update_md:
        update_section("Models (issue 4)", text)


if __name__ == "__main__":
    main()
