"""``medimg segment`` with several models or ``--tta`` (uncertainty maps and a risk JSON beside the mask), and
``medimg calibrate`` (temperature scaling on labelled validation cases)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from medimg.errors import MedimgError

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_calibrate", "cmd_calibrate", "cmd_segment_uncertain"]


def cmd_segment_uncertain(args: argparse.Namespace) -> int:
    """Segment with an ensemble (``ckpt`` several paths) or one model's flips (``--tta``)."""
    from medimg.inference.ensemble import open_ensemble, outputs_beside

    if args.precision != "32":
        raise MedimgError("uncertainty maps are computed in float32: drop --precision (or segment without them)")
    outputs_beside(args.output)  # a wrong name is refused before any model is read
    start = time.perf_counter()
    ensemble = open_ensemble(args.ckpt, tta=args.tta, device=args.device, threads=args.threads)
    result = ensemble.segment(args.input, args.output)
    seconds = time.perf_counter() - start
    if args.timings:
        from medimg.io.atomic import atomic_write_text

        atomic_write_text(args.timings, json.dumps({"total_s": seconds, "maps": result.risk.members}) + "\n")
    r = result.risk
    print(f"{ensemble.source}: {r.members} probability maps averaged in {seconds:.1f} s")
    print(
        f"risk {r.risk:.3f} ({r.reason}): pairwise Dice {r.pairwise_dice:.3f}, max-softmax {r.max_softmax:.3f}, "
        f"volume {r.volume_ml:.2f} mL (spread {r.volume_ml_spread:.2f} mL)"
    )
    for kind, path in result.written.items():
        print(f"wrote {kind}: {path}")
    return 0


def add_calibrate(sub: SubParsers) -> None:
    p = sub.add_parser(
        "calibrate", help="fit a checkpoint's temperature on labelled validation cases (ECE before/after)"
    )
    p.add_argument("ckpt", help="checkpoint written by `medimg fit`")
    p.add_argument(
        "cases", help="validation cases with labels: a folder with dataset.json, or a CSV case_id,image,label"
    )
    p.add_argument("--out", required=True, help="calibrated checkpoint to write (same weights, temperature added)")
    p.add_argument("--split", default="training", choices=("training", "test"), help="dataset.json list to use")
    p.add_argument("--region", default="foreground", choices=("foreground", "all"), help="voxels fitted and scored")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from medimg.inference.calibrate import calibrate, write_calibrated
    from medimg.inference.model import open_model
    from medimg.review.study.worklist import read_worklist

    worklist = read_worklist(args.cases, split=args.split)
    cases = [(c.image, c.label) for c in worklist.cases if c.label is not None]
    if not cases:
        raise MedimgError("no case of the list has a label: calibration needs labelled cases", args.cases)
    fit = calibrate(open_model(args.ckpt, device=args.device), cases, region=args.region)
    write_calibrated(args.ckpt, fit, args.out)
    print(f"{len(cases)} case(s): {fit}")
    print(f"wrote {args.out}")
    return 0
