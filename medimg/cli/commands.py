"""What each ``medimg`` sub-command does: thin handlers that import the room they need when they run (so that
``medimg --help`` stays light) and print what a user reads."""

from __future__ import annotations

import argparse
import json
import sys

from medimg.errors import MedimgError

EXIT_USER_ERROR = 2


def cmd_scan(args: argparse.Namespace) -> int:
    from medimg.io.dicom.scan import scan
    from medimg.viz.tables import scan_text

    found = scan(args.path)
    if args.json:
        print(json.dumps([s.summary() for s in found] + [d.summary() for d in found.derived], indent=2))
    else:
        print(scan_text(found))
        if found.skipped:
            path, why = next(iter(found.skipped.items()))
            print(f"({len(found.skipped)} file(s) skipped as not DICOM or damaged, e.g. {path}: {why})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from medimg.io.dicom.convert import convert

    report = convert(
        args.path,
        args.out_dir,
        series=args.series,
        include_localizers=args.include_localizers,
        uneven=args.uneven,
        split_4d=args.split_4d,
        philips_scaling=args.philips_scaling,
        compress=not args.no_compress,
    )
    for path in report.written:
        print(f"wrote {path}")
    for key, notes in report.notes.items():
        for note in notes:
            print(f"note {key}: {note}")
    for key, why in report.skipped.items():
        print(f"skipped {key}: {why}")
    for key, why in report.refused.items():
        print(f"medimg: refused {key} ({args.path}): {why}", file=sys.stderr)
    return 0 if report.ok else EXIT_USER_ERROR


def cmd_runs(args: argparse.Namespace) -> int:
    from medimg.tasks.runs import table
    from medimg.viz.runs import runs_text

    runs = table(args.root, baseline=args.baseline)
    print(runs_text(runs))
    if args.csv:
        runs.write_csv(args.csv)
        print(f"wrote {args.csv}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from medimg.demo import run_demo

    run_demo(args.out)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from medimg.plan import plan_dataset

    plan, path = plan_dataset(
        args.dataset_dir, args.out, device=args.device, gpu_memory=args.gpu_memory, time_budget=args.time_budget
    )
    print("\n".join(plan.summary))
    print(f"wrote {path}; train with: medimg fit --config {path}")
    return 0


def run_lightning(argv: list[str]) -> int:
    """fit / validate / test: LightningCLI, with MedimgError turned into one line and exit code 2.

    ``medimg fit --data.dataset_dir DIR`` without ``--config`` plans first (:mod:`medimg.plan`), prints the plan
    and fits with it; the other options still override the planned values.
    """
    try:
        from medimg.tasks.lightning_cli import run_cli

        if argv[0] == "fit" and _needs_plan(argv[1:]):
            argv = _plan_for_fit(argv)
        return run_cli(argv)
    except MedimgError as exc:
        print(f"medimg: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _needs_plan(argv: list[str]) -> bool:
    has_config = any(a == "--config" or a.startswith("--config=") or a == "-c" for a in argv)
    return not has_config and _option(argv, "--data.dataset_dir") is not None


def _plan_for_fit(argv: list[str]) -> list[str]:
    """Plan the dataset of ``--data.dataset_dir`` (for ``--trainer.accelerator`` and ``--trainer.max_time``)
    and put the plan's YAML in front of the other options."""
    from pathlib import Path

    from medimg.plan import plan_dataset

    rest = argv[1:]
    dataset = str(_option(rest, "--data.dataset_dir"))
    accelerator = _option(rest, "--trainer.accelerator")
    device = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}.get(accelerator or "")
    root = _option(rest, "--trainer.default_root_dir") or f"outputs/runs/plan_{Path(dataset).resolve().name}"
    plan, path = plan_dataset(
        dataset, Path(root) / "plan.yaml", device=device, time_budget=_option(rest, "--trainer.max_time")
    )
    print("medimg: no --config given; planned the dataset first:")
    print("\n".join(f"  {line}" for line in plan.summary))
    print(f"  (plan written to {path}; reuse it with --config {path})")
    return ["fit", "--config", str(path), "--trainer.default_root_dir", root, *rest]


def cmd_segment(args: argparse.Namespace) -> int:
    if len(args.ckpt) > 1 or args.tta or args.probabilities:  # uncertainty maps and risk beside the mask
        from medimg.cli.uncertainty import cmd_segment_uncertain

        return cmd_segment_uncertain(args)
    from medimg.inference.model import open_model  # no Lightning on this path, checkpoint or export
    from medimg.inference.timings import Timings

    timings = Timings()
    with timings.stage("load"):  # opening the model counts as loading
        model = open_model(args.ckpt[0], device=args.device, threads=args.threads)
    timings.device = "cuda" if model.on_gpu else "cpu"
    vol = model.segment(args.input, args.output, precision=args.precision, progress=True, timings=timings)
    print(timings.summary())
    if args.timings:
        timings.save(args.timings)
    import numpy as np

    values, counts = np.unique(vol.array, return_counts=True)
    labels = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
    print(f"wrote {args.output}: shape {vol.shape}, voxels per label {labels}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from medimg.export.exporter import export_checkpoint

    report = export_checkpoint(args.ckpt, args.out, fmt=args.format, opset=args.opset, precision=args.precision)
    print(report.summary())
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from medimg.inference.model import open_model

    probs = open_model(args.model, threads=args.threads).classify(args.input)
    for name, p in probs.items():
        print(f"{name}\t{p:.4f}")
    return 0


def cmd_explain_cases(args: argparse.Namespace) -> int:
    """``--cases``: every case of a worklist into ``--out-dir`` (resumable), for reading sessions."""
    from medimg.explain.batch import explain_cases
    from medimg.review.study.worklist import read_worklist

    worklist = read_worklist(args.cases)
    for skipped in worklist.skipped:
        print(f"note: skipped {skipped}")
    cases = [(c.case_id, c.image) for c in worklist.cases]
    report = explain_cases(args.ckpt, cases, args.out_dir, label=args.label, method=args.method, layer=args.layer)
    for case_id, why in report.failed.items():
        print(f"medimg: failed {case_id}: {why}", file=sys.stderr)
    print(f"{report.summary()}; explanations in {args.out_dir}")
    return EXIT_USER_ERROR if report.failed else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from medimg.explain.api import explain_case

    if (args.cases is None) == (args.input is None) or (args.cases is None) != (args.out_dir is None):
        raise MedimgError("give either --input and --out (one case) or --cases and --out-dir (a worklist)")
    if args.cases is not None:
        return cmd_explain_cases(args)
    if args.out is None:
        raise MedimgError("--input needs --out (the heatmap file to write)")
    if args.out.lower().endswith(".dcm"):  # a Parametric Map needs the DICOM source: refuse before computing
        from medimg.io.derived import source_slices

        source_slices(args.input, purpose="a DICOM Parametric Map")
    ex = explain_case(args.ckpt, args.input, args.label, method=args.method, layer=args.layer)
    ex.save(args.out)
    print(f"wrote {args.out}: {ex.method} of class {ex.label} on layer {ex.layer}")
    if ex.sanity is not None:
        print(ex.sanity)
    if args.png:
        from pathlib import Path

        from medimg.viz import figure_png, render_planes

        png = Path(args.png) / (Path(args.out).name.split(".")[0] + ".png")
        png.parent.mkdir(parents=True, exist_ok=True)
        fig = render_planes(ex.image, heatmap=ex.heatmap, prediction=ex.prediction, title=f"{ex.method}, {ex.layer}")
        from medimg.io.atomic import atomic_path

        with atomic_path(png) as tmp:
            tmp.write_bytes(figure_png(fig))
        print(f"wrote {png}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from medimg.tasks.adapt import adapt_checkpoint

    report = adapt_checkpoint(
        args.ckpt, args.images, args.out, method=args.method, device=args.device, windows_per_image=args.windows
    )
    print(f"{report.method} on {len(report.images)} image(s), {report.windows} windows")
    print(f"proxy before: {report.before}")
    print(f"proxy after:  {report.after}")
    print(f"wrote {args.out}")
    return 0


def _predict_cases(ckpt: str, cases: str, pred_dir: str) -> None:
    """Segment every case of a worklist into ``pred_dir/<case_id>.nii.gz`` with one opened model; cases already
    predicted are kept (the job resumes)."""
    from pathlib import Path

    from medimg.inference.model import open_model
    from medimg.review.study.worklist import read_worklist

    model = open_model(ckpt)
    folder = Path(pred_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for case in read_worklist(cases).cases:
        out = folder / f"{case.case_id}.nii.gz"
        if not out.exists():
            model.segment(case.image, out)
            print(f"predicted {case.case_id}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medimg.metrics.evaluate import evaluate_folders, write_csv
    from medimg.metrics.summary import summary_text

    if (args.ckpt is None) != (args.cases is None):
        raise MedimgError("--ckpt and --cases go together (predict every case into PRED, then score)")
    if args.ckpt is not None:
        _predict_cases(args.ckpt, args.cases, args.pred)
    result = evaluate_folders(
        args.pred,
        args.labels,
        nsd_tolerance_mm=_nsd_tolerances(args.nsd_tolerance),
        lesion_classes=args.lesion_classes or (),
    )
    print(summary_text(result.summary, result.counts))
    for note in sorted({str(r["note"]) for r in result.rows if r["note"]}):
        print(f"note: {note}")
    if result.missing_predictions:
        ids = ", ".join(result.missing_predictions)
        print(f"{len(result.missing_predictions)} label(s) without a prediction, not scored: {ids}")
    if result.missing_labels:
        ids = ", ".join(result.missing_labels)
        print(f"{len(result.missing_labels)} prediction(s) without a label, not scored: {ids}")
    if args.out:
        out = write_csv(result.rows, args.out)
        beside = out.with_name(f"{out.name.removesuffix('.csv')}_summary.csv")
        counts = {c["class"]: c for c in result.counts}  # each summary row with its class's status counts
        summary = write_csv([{**r, **counts[r["class"]]} for r in result.summary], beside)
        print(f"wrote {out} and {summary}")
    if args.ckpt is not None:  # the model is at hand: are its probabilities calibrated on these cases?
        from medimg.cli.uncertainty import report_calibration

        report_calibration(args.ckpt, args.cases, args.labels, args.out)
    return 0


def _nsd_tolerances(values: list[str] | None) -> float | dict[int, float]:
    """``--nsd-tolerance 2`` (mm, every class) or ``--nsd-tolerance 1=2 2=1.5`` (class=mm)."""
    from medimg.errors import ConfigError
    from medimg.metrics import DEFAULT_NSD_TOLERANCE_MM

    if not values:
        return DEFAULT_NSD_TOLERANCE_MM
    try:
        if len(values) == 1 and "=" not in values[0]:
            return float(values[0])
        return {int(c): float(mm) for c, mm in (v.split("=", 1) for v in values)}
    except ValueError:
        raise ConfigError(f"--nsd-tolerance takes MM or CLASS=MM ..., not {' '.join(values)}") from None
