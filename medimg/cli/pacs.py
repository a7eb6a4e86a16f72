"""``medimg pacs echo|find|pull|push``: a PACS named in ``~/.config/medimg/pacs.toml`` (or given by flags).

Credentials are never options: they come from ``MEDIMG_PACS_USER`` / ``MEDIMG_PACS_PASSWORD`` (or the
``MEDIMG_PACS_<NAME>_...`` pair) or a netrc file (see :mod:`medimg.pacs.config`). Every failure the user can fix
-- wrong password, unknown AE title, refused C-MOVE destination, unreachable server, an unverified push -- is one
``medimg: error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medimg.pacs.remote import SeriesInfo

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_pacs"]

EPILOG = """The PACS file ($MEDIMG_PACS_CONFIG, else ~/.config/medimg/pacs.toml) names each PACS:
  [research]
  dicomweb = "https://pacs.example.org/dicom-web"
  host = "pacs.example.org"   port = 104   ae_title = "ORTHANC"   calling_ae = "MEDIMG"   receive_port = 11113
Credentials: MEDIMG_PACS_USER / MEDIMG_PACS_PASSWORD (or MEDIMG_PACS_<NAME>_USER / _PASSWORD), or a netrc file."""


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("which PACS (overrides the config file)")
    g.add_argument("--pacs", help="name of the PACS in the config file (default: the only one there)")
    g.add_argument("--url", dest="dicomweb", help="DICOMweb root URL (no user or password in it)")
    g.add_argument("--host", help="DIMSE host")
    g.add_argument("--port", type=int, help="DIMSE port")
    g.add_argument("--ae", dest="ae_title", help="the PACS's AE title (called AE)")
    g.add_argument("--calling-ae", help="medimg's AE title (default MEDIMG)")
    g.add_argument("--receive-port", type=int, help="port of medimg's storage SCP for C-MOVE")
    g.add_argument("--move-ae", help="C-MOVE destination AE title (default: the calling AE)")


def add_pacs(sub: SubParsers) -> None:
    """Register ``medimg pacs`` and its four sub-commands."""
    top = sub.add_parser("pacs", help="talk to a PACS: echo, find, pull, push (DICOMweb or DIMSE)", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    cmds = top.add_subparsers(dest="pacs_command", required=True, metavar="ACTION")

    p = cmds.add_parser("echo", help="check the PACS answers (C-ECHO and/or an authenticated DICOMweb search)")
    p.add_argument("--via", choices=("dicomweb", "dimse"), help="only this protocol (default: every one configured)")
    p.set_defaults(func=cmd_echo)

    p = cmds.add_parser("find", help="list series by patient ID / accession / date / modality, one row per series")
    p.add_argument("--patient-id", help="(0010,0020) Patient ID")
    p.add_argument("--accession", help="(0008,0050) Accession Number")
    p.add_argument("--date", help="(0008,0020) Study Date, YYYYMMDD or YYYYMMDD-YYYYMMDD")
    p.add_argument("--modality", help="(0008,0060) Modality, e.g. CT")
    p.add_argument("--study", help="(0020,000D) Study Instance UID")
    p.add_argument("--via", choices=("dicomweb", "dimse"), help="protocol (default: DICOMweb when configured)")
    p.set_defaults(func=cmd_find)

    p = cmds.add_parser("pull", help="retrieve a study into OUT/STUDY/SERIES/SOP.dcm (resumable), then scan it")
    p.add_argument("study", help="Study Instance UID")
    p.add_argument("-o", "--out", default=".", help="folder to pull into (default: here)")
    p.add_argument("--series", help="only this Series Instance UID")
    p.add_argument("--modality", action="append", help="keep series of this modality (repeatable)")
    p.add_argument("--thickness", help="keep series with slice thickness in MIN-MAX mm, e.g. 0.5-3")
    p.add_argument("--description", help="keep series whose description matches this regex (case-insensitive)")
    p.add_argument("--plane", choices=("axial", "coronal", "sagittal"), help="keep series acquired in this plane")
    p.add_argument("--localizers", action="store_true", help="also keep localizer/scout series")
    p.add_argument("--via", choices=("dicomweb", "get", "move"), help="WADO-RS, C-GET or C-MOVE (default: "
                   "DICOMweb when configured, else C-GET)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pull)

    p = cmds.add_parser("push", help="send SEG/PM/KO/SR files and verify each arrived (exit 0 only if all did)")
    p.add_argument("files", nargs="+", help="DICOM files (Part 10)")
    p.add_argument("--via", choices=("dicomweb", "dimse"), help="STOW-RS or C-STORE (default: DICOMweb if set)")
    p.set_defaults(func=cmd_push)
    for action in cmds.choices.values():
        _common(action)


def _pacs(args: argparse.Namespace) -> Any:
    from medimg.pacs import load_pacs

    keys = ("dicomweb", "host", "port", "ae_title", "calling_ae", "receive_port", "move_ae")
    return load_pacs(args.pacs, **{k: getattr(args, k) for k in keys})


def cmd_echo(args: argparse.Namespace) -> int:
    from medimg.pacs import connect

    pacs = _pacs(args)
    vias = [args.via] if args.via else [v for v, ok in (("dicomweb", pacs.dicomweb), ("dimse", pacs.host)) if ok]
    for via in vias:
        connect(pacs, via).echo()
        print(f"{pacs.where()}: {via} ok")
    return 0


def find_text(rows: list[SeriesInfo]) -> str:
    """One row per series: study UID, series UID, date, modality, instances, description."""
    head = ("study", "series", "date", "mod", "n", "description")
    cells = [(r.study_uid, r.series_uid, r.study_date or "-", r.modality or "-",
              "?" if r.n_instances is None else str(r.n_instances), r.description) for r in rows]  # fmt: skip
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head) - 1)]
    lines = ["  ".join(c[i].ljust(w) for i, w in enumerate(widths)) + "  " + c[-1] for c in [head, *cells]]
    return "\n".join(line.rstrip() for line in lines) + f"\n({len(rows)} series)"


def cmd_find(args: argparse.Namespace) -> int:
    from medimg.pacs import connect
    from medimg.pacs.remote import Query

    query = Query(args.patient_id, args.accession, args.date, args.modality, args.study)
    rows = connect(_pacs(args), args.via).find_series(query)
    print(find_text(sorted(rows, key=lambda r: (r.study_date, r.study_uid, r.series_number or 0))))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from medimg.pacs import connect
    from medimg.pacs.pull import pull
    from medimg.pacs.rules import SeriesRules, parse_range
    from medimg.viz.tables import scan_text

    pacs = _pacs(args)
    via = args.via or ("dicomweb" if pacs.dicomweb else "get")
    remote: Any = connect(pacs, "dicomweb" if via == "dicomweb" else "dimse")
    rules = SeriesRules(
        modalities=frozenset(m.upper() for m in args.modality) if args.modality else None,
        thickness_mm=parse_range(args.thickness) if args.thickness else None,
        description=args.description,
        localizer=args.localizers,
        plane=args.plane,
    )
    bar = None if args.no_progress else _ProgressBar()
    try:
        report = pull(remote, args.study, args.out, series_uid=args.series, rules=rules,
                      fetch=remote.move if via == "move" else None, progress=bar)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    print(scan_text(report.scan))
    for key, why in report.rejected.items():
        print(f"not chosen: {key} ({why})")
    mb = report.bytes / 1e6
    print(f"{report.folder}: {report.fetched} instance(s) fetched, {report.already} already here, "
          f"{len(report.chosen)} series chosen, {mb:.1f} MB, {report.seconds:.1f} s via {via}")  # fmt: skip
    return 0


class _ProgressBar:
    """A tqdm bar on stderr, created at the first instance (when the total is known)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm  # type: ignore[import-untyped]

            self.bar = tqdm(total=total, initial=done - 1, unit="inst", file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_push(args: argparse.Namespace) -> int:
    from medimg.pacs import connect
    from medimg.pacs.push import push

    pacs = _pacs(args)
    report = push(connect(pacs, args.via), args.files)
    print(f"{pacs.where()}: {report.summary()}")
    if not report.verified:
        raise report.failure()
    return 0
