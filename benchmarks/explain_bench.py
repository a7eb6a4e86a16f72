"""Cost of a heatmap: CAM time / forward time on one 3D input, and medimg vs monai.visualize.GradCAM.

    .venv/bin/python benchmarks/explain_bench.py [--size 96] [--repeats 5] [--update-md]

Model: the 3D ResNet-18 classifier (MONAI layout) and the default MONAI UNet (16..256); one 1 x size^3 input;
target layer ``layer4`` (classifier). medimg's ``GradCAM`` and MONAI's ``GradCAM`` run on the same model and
layer, interleaved, median of ``--repeats``; CPU, 2 threads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import race, update_section

from medimg.explain import GradCAM, class_score, region_score
from medimg.models import create_backbone, segmentation_net


def main() -> None:
    from monai.visualize import GradCAM as MonaiGradCAM

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--update-md", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    x = torch.rand(1, 1, args.size, args.size, args.size)

    clf = create_backbone("resnet18", num_classes=2, spatial_dims=3).eval()
    monai_cam = MonaiGradCAM(nn_module=clf, target_layers="net.layer4")
    ours = GradCAM(clf, "net.layer4")

    def medimg_cam() -> torch.Tensor:
        with ours:
            return ours(x, class_score(1))

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return clf(x)

    t = race({"forward": forward, "medimg": medimg_cam, "monai": lambda: monai_cam(x, class_idx=1)}, args.repeats)

    seg = segmentation_net("unet").eval()
    layer = "model.1.submodule.2.1.conv.unit0.conv"
    cam = GradCAM(seg, layer, "hirescam")

    def seg_cam() -> torch.Tensor:
        with cam:
            return cam(x, region_score(1))

    def seg_forward() -> torch.Tensor:
        with torch.no_grad():
            return seg(x)

    s = race({"forward": seg_forward, "medimg": seg_cam}, args.repeats)
    lines = [
        f"CPU, 2 threads, fp32, one 1 x {args.size}^3 input, median of {args.repeats} (interleaved); "
        f"torch {torch.__version__}.",
        "",
        "| model / map | forward s | map s | map / forward | MONAI GradCAM s | MONAI / medimg |",
        "|---|---|---|---|---|---|",
        f"| 3D ResNet-18 classifier, Grad-CAM on layer4 | {t['forward']:.3f} | {t['medimg']:.3f} | "
        f"{t['medimg'] / t['forward']:.2f} | {t['monai']:.3f} | {t['monai'] / t['medimg']:.2f} |",
        f"| UNet 16..256, HiResCAM of the class-1 region | {s['forward']:.3f} | {s['medimg']:.3f} | "
        f"{s['medimg'] / s['forward']:.2f} | - | - |",
        "",
        "Reproduce: `.venv/bin/python benchmarks/explain_bench.py --update-md`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.update_md:
        update_section("Explanations (issue 6)", text)


if __name__ == "__main__":
    main()
