"""Pulling a study into a local folder, resumably, then checking it with ``medimg scan``.

The folder is laid out ``OUT/<Study UID>/<Series UID>/<SOP UID>.dcm`` (:func:`medimg.pacs.remote.instance_path`)
and every file appears atomically. A second pull of the same study asks the PACS which instances each series holds
and fetches only those not yet on disk: an interrupted pull resumes, a finished one fetches nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medimg.errors import MedimgError, SeriesSelectionError
from medimg.pacs.remote import Query, Remote, SeriesInfo, Sink, instance_path, save_instance
from medimg.pacs.rules import SeriesRules

if TYPE_CHECKING:
    from pydicom import Dataset

    from medimg.io.dicom.scan import ScanResult
    from medimg.io.dicom.series import Series

__all__ = ["PullReport", "pull"]

log = logging.getLogger(__name__)

#: ``progress(done, total)`` after each instance written (a progress bar).
Progress = Callable[[int, int], None]
#: ``fetch(remote)`` -> the retrieve method to use (``remote.fetch``, or C-MOVE's ``remote.move``).
Fetch = Callable[[str, str, list[str] | None, Sink], None]


@dataclass
class PullReport:
    """What a pull did: instances fetched now / found complete on disk, the scan of the study folder, and the
    scanned series the rules chose (with why the others were not)."""

    folder: Path
    fetched: int
    already: int
    seconds: float
    scan: ScanResult
    chosen: list[Series] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.rglob("*.dcm"))


def _choose(infos: list[SeriesInfo], series_uid: str | None, rules: SeriesRules | None) -> list[SeriesInfo]:
    chosen = [
        i for i in infos
        if (series_uid is None or i.series_uid == series_uid) and (rules is None or rules.accepts_info(i))
    ]  # fmt: skip
    if not chosen:
        what = f"series {series_uid}" if series_uid else "a series matching the rules"
        raise SeriesSelectionError(f"the study holds {len(infos)} series but not {what}; `medimg pacs find` lists them")
    return chosen


def pull(
    remote: Remote,
    study_uid: str,
    out: str | os.PathLike[str],
    *,
    series_uid: str | None = None,
    rules: SeriesRules | None = None,
    fetch: Fetch | None = None,
    progress: Progress | None = None,
) -> PullReport:
    """Retrieve the chosen series of ``study_uid`` under ``out``, skipping instances already complete there.

    Args:
        remote: the PACS (DICOMweb or DIMSE).
        series_uid: only this series; ``rules`` choose among the study's series otherwise (all of them if None).
        fetch: the retrieve call (default ``remote.fetch``: WADO-RS or C-GET; pass ``remote.move`` for C-MOVE).
        progress: called with (instances done, instances wanted).

    Raises MedimgError when the study is unknown, no series matches, or an instance the PACS listed did not
    arrive.
    """
    from medimg.io.dicom.scan import scan

    start = time.perf_counter()
    infos = remote.find_series(Query(study_uid=study_uid))
    if not infos:
        raise MedimgError(f"the PACS holds no study {study_uid}; `medimg pacs find` lists what it holds")
    plan: list[tuple[SeriesInfo, set[str], list[str]]] = []
    for info in _choose(infos, series_uid, rules):
        wanted = remote.instance_uids(info.study_uid, info.series_uid)
        missing = sorted(s for s in wanted if not instance_path(out, info.study_uid, info.series_uid, s).is_file())
        plan.append((info, wanted, missing))
    total = sum(len(w) for _, w, _ in plan)
    already = sum(len(w) - len(m) for _, w, m in plan)
    counter = _Counter(out, already, total, progress)
    retrieve = fetch or remote.fetch
    for info, wanted, missing in plan:
        if missing:
            # a whole series in one request when nothing is there yet, else only what is missing
            retrieve(info.study_uid, info.series_uid, None if len(missing) == len(wanted) else missing, counter)
        lost = [s for s in wanted if not instance_path(out, info.study_uid, info.series_uid, s).is_file()]
        if lost:
            raise MedimgError(
                f"{len(lost)} of {len(wanted)} instances of series {info.series_uid} did not arrive; pull again "
                "to fetch only those"
            )
    folder = Path(out) / study_uid
    found = scan(folder)
    report = PullReport(folder, counter.done - already, already, time.perf_counter() - start, found)
    for s in found.series:
        why = None if rules is None else rules.why_not(s)
        if series_uid is not None and s.series_uid != series_uid:
            why = "not the series asked for"
        if why is None:
            report.chosen.append(s)
        else:
            report.rejected[s.key] = why
    log.info("pulled %d instance(s), %d already there, in %.1f s", report.fetched, already, report.seconds)
    return report


class _Counter:
    """The sink of a pull: writes each instance at its place and reports progress."""

    def __init__(self, root: str | os.PathLike[str], done: int, total: int, progress: Progress | None) -> None:
        self.root, self.done, self.total, self.progress = root, done, total, progress

    def __call__(self, ds: Dataset) -> Path:
        path = save_instance(self.root, ds)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
        return path
