"""``medimg listen``: a DICOM storage SCP that segments each series when it is complete and sends the results
back to the PACS with proof they arrived.

A series counts as complete when no instance of it arrived for ``idle_s`` seconds (the rule most routers use;
DICOM has no "series complete" message). Complete series are handled one at a time, in the order their first
instance arrived, by :meth:`Listener.handle`: scan the series' folder, check the series rules, run the model's
``segment`` (which writes the DICOM SEG), write the TID 1500 SR, with ``explain_label`` the HiResCAM heatmap of
that label as a DICOM Parametric Map (:func:`medimg.explain.api.explain_case`, no randomisation check: the listener
delivers the map, the check belongs to the review), push them all with verification. Instances keep
arriving meanwhile (pynetdicom's server threads), so a study sent during another is handled after it. One bad
series is reported and skipped; it never stops the listener. :meth:`Listener.request_stop` (SIGTERM) lets the
series in hand finish, then the server closes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.errors import MedimgError
from medimg.pacs.dimse import STORAGE_CLASSES
from medimg.pacs.push import PushReport, push
from medimg.pacs.remote import Remote, save_instance
from medimg.pacs.rules import SeriesRules

__all__ = ["Listener", "SeriesOutcome"]

log = logging.getLogger(__name__)

#: How often the listener looks for series that went quiet (seconds).
POLL_S = 0.2


@dataclass(frozen=True)
class SeriesOutcome:
    """What became of one received series: the files written, the push report, or why it was skipped/failed."""

    study_uid: str
    series_uid: str
    instances: int
    seconds: dict[str, float]
    written: tuple[Path, ...] = ()
    pushed: PushReport | None = None
    skipped: str | None = None
    error: str | None = None
    stages: str | None = None  # the segmentation's stage timings (medimg.inference.timings), one line

    def line(self) -> str:
        """One log line, no patient identifiers: UIDs, counts, timings, outcome."""
        head = f"study {self.study_uid} series {self.series_uid}: {self.instances} instance(s)"
        times = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        if self.error is not None:
            return f"{head}: failed: {self.error}"
        if self.skipped is not None:
            return f"{head}: skipped ({self.skipped})"
        pushed = "not sent" if self.pushed is None else self.pushed.summary()
        stages = f"; segmentation {self.stages}" if self.stages else ""
        return f"{head}: {times}; {len(self.written)} object(s) written; pushed: {pushed}{stages}"


class Listener:
    """Receive on ``port`` as ``ae_title``, segment with ``model`` (an opened :class:`~medimg.inference.model.Model`),
    write under ``workdir`` (``incoming/`` STUDY/SERIES/SOP.dcm, ``results/`` STUDY/SERIES_{seg,sr}.dcm) and push to
    ``send_to`` (None: write only); with ``explain_label`` (needs a training checkpoint) also
    ``results/`` STUDY/SERIES_pm.dcm, the heatmap of that label."""

    def __init__(
        self,
        model: Any,
        *,
        ae_title: str,
        port: int,
        workdir: str | os.PathLike[str],
        send_to: Remote | None = None,
        idle_s: float = 10.0,
        rules: SeriesRules | None = None,
        on_outcome: Callable[[SeriesOutcome], None] | None = None,
        explain_label: int | None = None,
    ) -> None:
        self.model, self.ae_title, self.port, self.send_to = model, ae_title, port, send_to
        self.incoming, self.results = Path(workdir) / "incoming", Path(workdir) / "results"
        self.idle_s, self.rules, self.on_outcome = idle_s, rules, on_outcome
        self.explain_label = explain_label
        self._last: dict[tuple[str, str], float] = {}  # series -> time of its latest instance
        self._order: dict[tuple[str, str], int] = {}  # series -> arrival rank of its first instance
        self._counter = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # --- receiving ---------------------------------------------------------------------------------------------
    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            save_instance(self.incoming, ds)
        except MedimgError as exc:
            log.warning("refused an instance: %s", exc)
            return 0xC000  # Cannot understand
        except OSError as exc:
            log.error("cannot store a received instance: %s", exc.strerror)
            return 0xA700  # Out of resources
        key = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
        with self._lock:
            self._last[key] = time.monotonic()
            if key not in self._order:
                self._counter += 1
                self._order[key] = self._counter
        return 0x0000

    def _due(self) -> tuple[str, str] | None:
        """The earliest-arrived series that has been quiet for ``idle_s``, taken off the pending list."""
        now = time.monotonic()
        with self._lock:
            quiet = [k for k, t in self._last.items() if now - t >= self.idle_s]
            if not quiet:
                return None
            key = min(quiet, key=self._order.__getitem__)
            del self._last[key]
            del self._order[key]
            return key

    # --- running -----------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the series in hand, then stop (what SIGTERM does)."""
        self._stop.set()

    def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Listen until :meth:`request_stop`; handle each complete series in turn. ``ready()`` is called once the
        port is open."""
        from pynetdicom import AE, evt, sop_class

        ae = AE(ae_title=self.ae_title)
        for name in STORAGE_CLASSES:
            ae.add_supported_context(getattr(sop_class, name))
        try:
            server = ae.start_server(
                ("0.0.0.0", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
            )
        except OSError as exc:
            raise MedimgError(f"cannot listen on port {self.port} ({exc.strerror}); choose another --port") from None
        assert server is not None  # start_server(block=False) returns the server
        log.info("listening on port %d as %s", self.port, self.ae_title)
        if ready is not None:
            ready()
        try:
            while not self._stop.is_set():
                key = self._due()
                if key is None:
                    self._stop.wait(POLL_S)
                    continue
                outcome = self.handle(*key)
                if self.on_outcome is not None:
                    self.on_outcome(outcome)
        finally:
            server.shutdown()

    def handle(self, study_uid: str, series_uid: str) -> SeriesOutcome:
        """Segment one received series and send the results; any failure becomes the outcome's ``error``."""
        folder = self.incoming / study_uid / series_uid
        n = len(list(folder.glob("*.dcm")))
        seconds: dict[str, float] = {}
        try:
            return self._handle(study_uid, series_uid, folder, n, seconds)
        except MedimgError as exc:
            return SeriesOutcome(study_uid, series_uid, n, seconds, error=str(exc))
        except Exception as exc:  # a bug on one series must not stop a listener serving a department
            log.exception("unexpected error on series %s", series_uid)
            return SeriesOutcome(study_uid, series_uid, n, seconds, error=f"{type(exc).__name__} (see the log)")

    def _handle(
        self, study_uid: str, series_uid: str, folder: Path, n: int, seconds: dict[str, float]
    ) -> SeriesOutcome:
        from medimg.inference.timings import Timings
        from medimg.io.derived.sr import write_measurement_report
        from medimg.io.dicom.scan import scan

        start = time.perf_counter()
        found = scan(folder)
        if self.rules is not None and len(found.series) == 1:
            why = self.rules.why_not(found.series[0])
            if why is not None:
                return SeriesOutcome(study_uid, series_uid, n, seconds, skipped=why)
        out = self.results / study_uid
        out.mkdir(parents=True, exist_ok=True)
        seg = out / f"{series_uid}_seg.dcm"
        timings = Timings()
        self.model.segment(folder, seg, timings=timings)
        seconds["segment"] = time.perf_counter() - start
        stages = timings.finish().summary()
        sr, _ = write_measurement_report(seg, folder, out / f"{series_uid}_sr.dcm")
        seconds["report"] = time.perf_counter() - start - seconds["segment"]
        written: tuple[Path, ...] = (seg, sr)
        if self.explain_label is not None:
            from medimg.explain.api import explain_case

            t0 = time.perf_counter()
            ex = explain_case(self.model, folder, self.explain_label, sanity_check=False)
            written += (ex.save(out / f"{series_uid}_pm.dcm"),)
            seconds["explain"] = time.perf_counter() - t0
        pushed = None
        if self.send_to is not None:
            t0 = time.perf_counter()
            pushed = push(self.send_to, written)
            seconds["push"] = time.perf_counter() - t0
            if not pushed.verified:
                return SeriesOutcome(study_uid, series_uid, n, seconds, written, pushed, error=str(pushed.failure()),
                                     stages=stages)  # fmt: skip
        return SeriesOutcome(study_uid, series_uid, n, seconds, written, pushed, stages=stages)
