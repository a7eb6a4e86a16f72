"""The arguments of each ``medimg`` sub-command: one function per command (see :func:`medimg.cli.build_parser`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from medimg.cli.commands import (
    cmd_adapt,
    cmd_classify,
    cmd_convert,
    cmd_demo,
    cmd_evaluate,
    cmd_explain,
    cmd_export,
    cmd_plan,
    cmd_runs,
    cmd_scan,
    cmd_segment,
)

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_scan(sub: SubParsers) -> None:
    p = sub.add_parser("scan", help="list the DICOM series under a folder with their QA problems")
    p.add_argument("path", help="folder, DICOM file or DICOMDIR")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_scan)


def add_convert(sub: SubParsers) -> None:
    p = sub.add_parser("convert", help="write every usable series as NIfTI + JSON sidecar")
    p.add_argument("path", help="folder, DICOM file or DICOMDIR")
    p.add_argument("out_dir", help="output folder")
    p.add_argument("--series", help="convert only this series (UID or UID#part as `medimg scan` prints)")
    p.add_argument("--include-localizers", action="store_true", help="also convert localizer/scout images")
    p.add_argument(
        "--uneven",
        choices=("error", "resample"),
        default="error",
        help="uneven slice gaps: refuse (default) or interpolate onto a regular grid",
    )
    p.add_argument("--split-4d", action="store_true", help="write each volume of a 4D series as its own 3D file")
    p.add_argument(
        "--philips-scaling",
        choices=("precise", "display"),
        default="precise",
        help="Philips MR values: floating-point FP = (SV*RS+RI)/(RS*SS) (default, as dcm2niix) or display SV*RS+RI",
    )
    p.add_argument("--no-compress", action="store_true", help="write .nii instead of .nii.gz (faster; dcm2niix -z n)")
    p.set_defaults(func=cmd_convert)


def add_segment(sub: SubParsers) -> None:
    p = sub.add_parser("segment", help="segment a DICOM folder or NIfTI with a trained checkpoint")
    p.add_argument(
        "ckpt",
        nargs="+",
        help="checkpoint written by `medimg fit`, or MODEL.onnx / MODEL.pt2 from `medimg export`; several: an "
        "ensemble (one recipe), written with uncertainty maps and a risk JSON beside the mask",
    )
    p.add_argument("input", help="DICOM folder/file or .nii/.nii.gz")
    p.add_argument(
        "output", help="mask to write (.nii.gz), in the input's geometry; .dcm writes a DICOM SEG of a DICOM input"
    )
    p.add_argument("--precision", default="32", choices=("32", "bf16-mixed", "16-mixed"))
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (torch or onnxruntime)")
    p.add_argument("--timings", default=None, help="write the stage timings (seconds, voxel rate, peak RSS) as JSON")
    p.add_argument("--tta", action="store_true", help="test-time flips: uncertainty maps, risk JSON beside the mask")
    p.add_argument(
        "--probabilities",
        metavar="OUT_prob.dcm",
        help="also write the calibrated probability of --probability-class as a DICOM Parametric Map (DICOM input)",
    )
    p.add_argument("--probability-class", type=int, default=1, help="the class of --probabilities (default 1)")
    p.set_defaults(func=cmd_segment)


def add_export(sub: SubParsers) -> None:
    p = sub.add_parser("export", help="export a checkpoint with its preprocessing to ONNX or torch.export (.pt2)")
    p.add_argument("ckpt", help="checkpoint written by `medimg fit` (segmentation or classification)")
    p.add_argument("out", help="file to write: MODEL.onnx or MODEL.pt2")
    p.add_argument("--format", default="onnx", choices=("onnx", "pt2"))
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.set_defaults(func=cmd_export)


def add_classify(sub: SubParsers) -> None:
    p = sub.add_parser("classify", help="print the class probabilities of an image with an exported classifier")
    p.add_argument("model", help="MODEL.onnx or MODEL.pt2 written by `medimg export`")
    p.add_argument("input", help="DICOM folder/file or .nii/.nii.gz")
    p.add_argument("--threads", type=int, default=None, help="intra-op CPU threads")
    p.set_defaults(func=cmd_classify)


def add_explain(sub: SubParsers) -> None:
    p = sub.add_parser(
        "explain", help="heatmap of why the model labelled class K (HiResCAM, Grad-CAM, Grad-CAM++, occlusion)"
    )
    p.add_argument("--ckpt", required=True, help="checkpoint written by `medimg fit`")
    p.add_argument("--input", help="DICOM folder/file or .nii/.nii.gz")
    p.add_argument("--label", type=int, default=1, help="class to explain (default 1)")
    p.add_argument(
        "--out",
        help="heatmap to write (.nii.gz), in the input's geometry; .dcm writes a DICOM Parametric Map of a DICOM input",
    )
    p.add_argument("--png", help="also write a three-plane PNG into this folder")
    p.add_argument("--cases", help="instead of --input: a worklist (folder, dataset.json or CSV case_id,image[,label])")
    p.add_argument("--out-dir", help="with --cases: folder of precomputed explanations (resumable) for `session`")
    # the names of medimg.explain.methods.EXPLAIN_METHODS, spelled here so that `medimg --help` imports no torch
    # (tests/test_explain.py holds the two equal)
    p.add_argument("--method", default="hirescam", choices=("hirescam", "gradcam", "gradcampp", "occlusion"))
    p.add_argument("--layer", help="target layer (default: the last convolution before the output block)")
    p.set_defaults(func=cmd_explain)


def add_plan(sub: SubParsers) -> None:
    p = sub.add_parser(
        "plan", help="fingerprint a dataset and write a training config planned for it (nnU-Net's rules)"
    )
    p.add_argument("dataset_dir", help="dataset folder with dataset.json (MSD or nnU-Net v2 raw layout)")
    p.add_argument("--out", help="YAML to write (default: configs/plan_<dataset name>.yaml)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--gpu-memory", help="plan for a GPU with this much memory, e.g. 24GB")
    budget.add_argument("--device", choices=("cpu", "cuda"), help="plan for this device (default: a GPU if any)")
    p.add_argument("--time-budget", help="training time, e.g. 2h, 90m, 00:02:00:00 (default: 1h CPU, 24h GPU)")
    p.set_defaults(func=cmd_plan)


def add_runs(sub: SubParsers) -> None:
    p = sub.add_parser("runs", help="the training runs under a folder side by side: config diff, scores, cost")
    p.add_argument("root", help="a folder `medimg fit` wrote into (searched for lightning_logs/version_N)")
    p.add_argument("--baseline", help="the run whose config the others are compared with (default: the oldest)")
    p.add_argument("--csv", help="also write the table (all columns, the whole diff) to this CSV file")
    p.set_defaults(func=cmd_runs)


def add_adapt(sub: SubParsers) -> None:
    p = sub.add_parser("adapt", help="adapt a segmentation checkpoint to a new site's unlabelled images (AdaBN / TENT)")
    p.add_argument("ckpt", help="checkpoint written by `medimg fit`")
    p.add_argument("--images", required=True, help="folder of the new site's images (.nii/.nii.gz, DICOM folders)")
    p.add_argument("--out", required=True, help="adapted checkpoint to write (not written if the proxy gets worse)")
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "adabn", "tent", "adabn+tent"),
        help="auto (default): AdaBN for batch-norm nets, TENT for the planned instance-norm nets",
    )
    p.add_argument("--windows", type=int, default=8, help="windows sampled per image (default 8)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.set_defaults(func=cmd_adapt)


def add_demo(sub: SubParsers) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on bundled sample data")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.set_defaults(func=cmd_demo)


def add_evaluate(sub: SubParsers) -> None:
    p = sub.add_parser("evaluate", help="score predictions against labels per case and class, distances in mm")
    p.add_argument("pred", help="folder of predicted label maps (.nii/.nii.gz, DICOM SEG .dcm), named like the labels")
    p.add_argument("labels", help="folder of reference label maps; scores are computed on each label's grid")
    p.add_argument("--out", help="per-case per-class CSV to write (the summary goes beside it as *_summary.csv)")
    p.add_argument(
        "--nsd-tolerance", nargs="+", metavar="MM", help="NSD tolerance in mm, or CLASS=MM per class (default 2)"
    )
    p.add_argument("--lesion-classes", nargs="+", type=int, default=[], help="classes scored lesion-wise too")
    p.add_argument(
        "--ckpt",
        help="predict first: segment every case of --cases with this model into PRED; also reports its ECE before "
        "and after its temperature (reliability diagrams in <out>_calibration.csv)",
    )
    p.add_argument("--cases", help="with --ckpt: a worklist (folder, dataset.json or CSV case_id,image[,label])")
    p.set_defaults(func=cmd_evaluate)
