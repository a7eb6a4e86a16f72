"""``medimg listen --model MODEL --port P --ae MEDIMG --send-to PACS``: segment what the scanner or PACS sends,
push SEG + SR back with verification (see :mod:`medimg.pacs.listen`). One line per series on stdout; SIGTERM
(SLURM's or a container's stop) finishes the series in hand and exits 0."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_listen"]


def add_listen(sub: SubParsers) -> None:
    p = sub.add_parser("listen", help="receive DICOM (C-STORE SCP), segment each complete series, push SEG + SR")
    p.add_argument("--model", required=True, help="the model: .ckpt or exported .onnx")
    p.add_argument("--port", type=int, required=True, help="port to listen on")
    p.add_argument("--ae", default="MEDIMG", help="our AE title (default MEDIMG)")
    p.add_argument("--send-to", help="name of the PACS (in the PACS config file) to push results to; none: keep")
    p.add_argument("--via", choices=("dicomweb", "dimse"), help="push protocol (default: DICOMweb when configured)")
    p.add_argument("--workdir", default="medimg-listen", help="where received series and results are kept")
    p.add_argument("--idle", type=float, default=10.0, help="seconds without a new instance before a series "
                   "counts as complete (default 10)")  # fmt: skip
    p.add_argument("--modality", action="append", help="handle only series of this modality (repeatable)")
    p.add_argument("--threads", type=int, help="CPU threads for the model")
    p.add_argument("--explain", nargs="?", type=int, const=1, metavar="LABEL", help="also write and push the "
                   "HiResCAM heatmap of LABEL (default 1) as a DICOM Parametric Map (needs a .ckpt model)")  # fmt: skip
    p.set_defaults(func=cmd_listen)


def cmd_listen(args: argparse.Namespace) -> int:
    from medimg.errors import ModelError
    from medimg.inference.model import open_model
    from medimg.pacs import connect, load_pacs
    from medimg.pacs.listen import Listener, SeriesOutcome
    from medimg.pacs.rules import SeriesRules

    send_to = None
    if args.send_to:
        pacs = load_pacs(args.send_to)
        send_to = connect(pacs, args.via)
        send_to.echo()  # a wrong address or password is said now, not after the first study
    model = open_model(args.model, threads=args.threads)
    if args.explain is not None and model.module is None:
        raise ModelError(f"--explain needs the network's layers: pass the training checkpoint, not {args.model}")
    rules = SeriesRules(modalities=frozenset(m.upper() for m in args.modality) if args.modality else None)

    def report(outcome: SeriesOutcome) -> None:
        print(outcome.line(), flush=True)

    listener = Listener(model, ae_title=args.ae, port=args.port, workdir=args.workdir, send_to=send_to,
                        idle_s=args.idle, rules=rules, on_outcome=report, explain_label=args.explain)  # fmt: skip

    def stop(signum: int, frame: Any) -> None:
        print("medimg listen: stopping after the series in hand", file=sys.stderr, flush=True)
        listener.request_stop()

    previous = signal.signal(signal.SIGTERM, stop)

    def ready() -> None:
        print(f"medimg listen: listening on port {args.port} as {args.ae}", flush=True)

    try:
        listener.serve(ready)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("medimg listen: stopped", flush=True)
    return 0
