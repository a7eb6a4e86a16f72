"""``medimg segment`` with several models or ``--tta`` (uncertainty maps and a risk JSON beside the mask; with
``--probabilities`` also the calibrated probability of a class as a DICOM Parametric Map), ``medimg calibrate``
(temperature scaling on labelled validation cases), and the calibration report of ``medimg evaluate --ckpt``."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from medimg.errors import MedimgError

if TYPE_CHECKING:
    from pathlib import Path

    from medimg.inference.ensemble import Ensemble
    from medimg.io.derived import SourceSlices
    from medimg.io.volume import Volume

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_calibrate", "cmd_calibrate", "cmd_segment_uncertain", "report_calibration"]


def cmd_segment_uncertain(args: argparse.Namespace) -> int:
    """Segment with an ensemble (``ckpt`` several paths), one model's flips (``--tta``), or one model alone when
    ``--probabilities`` asks for its (calibrated) probability map."""
    from medimg.inference.ensemble import open_ensemble, outputs_beside

    if args.precision != "32":
        raise MedimgError("uncertainty maps are computed in float32: drop --precision (or segment without them)")
    outputs_beside(args.output)  # a wrong name is refused before any model is read
    source = None
    if args.probabilities:
        from medimg.io.derived import source_slices

        source = source_slices(args.input, purpose="a DICOM Parametric Map")  # DICOM input, before inference
    start = time.perf_counter()
    ensemble = open_ensemble(args.ckpt, tta=args.tta, device=args.device, threads=args.threads)
    k = args.probability_class if source is not None else None
    result = ensemble.segment(args.input, args.output, probability_class=k)
    seconds = time.perf_counter() - start
    if source is not None and result.probability is not None:
        result.written["probabilities"] = _write_probabilities(ensemble, result.probability, source, args)
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


def _write_probabilities(
    ensemble: Ensemble, probability: Volume, source: SourceSlices, args: argparse.Namespace
) -> Path:
    """The mean calibrated probability of ``--probability-class`` as a Parametric Map of the DICOM input."""
    from medimg.io.derived.parametric_map import write_probability_map

    recipe, k = ensemble.recipe, args.probability_class
    temperatures = [float(m.recipe.temperature) for m in ensemble.members]
    algorithm = ensemble.members[0].algorithm()  # the first member's name, version and checkpoint SHA-256
    return write_probability_map(
        probability, source, args.probabilities, label=k, temperatures=temperatures,
        label_name=recipe.class_names.get(k), algorithm=algorithm,
    )  # fmt: skip


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


def report_calibration(ckpt: str, cases: str, labels: str, out: str | None) -> None:
    """``medimg evaluate --ckpt``: the model's ECE on the cases of ``cases`` that have a reference in ``labels``
    (by case id), before and after its temperature; the reliability diagrams go to ``<out>_calibration.csv``."""
    from pathlib import Path

    from medimg.inference.calibrate import measure
    from medimg.inference.model import open_model
    from medimg.metrics.evaluate import list_cases, write_csv
    from medimg.review.study.worklist import read_worklist

    refs = list_cases(labels)
    pairs = [(c.image, refs[c.case_id]) for c in read_worklist(cases).cases if c.case_id in refs]
    if not pairs:
        raise MedimgError("no case of --cases has a reference label in LABELS (matched by case id)", cases)
    model = open_model(ckpt)
    fit = measure(model, pairs)
    note = "" if fit.temperature != 1.0 else " (the model carries no temperature: run medimg calibrate)"
    print(f"calibration on {len(pairs)} case(s): {fit}{note}")
    if out:
        path = Path(out)
        written = write_csv(fit.rows(), path.with_name(f"{path.name.removesuffix('.csv')}_calibration.csv"))
        print(f"wrote the reliability diagrams: {written}")
