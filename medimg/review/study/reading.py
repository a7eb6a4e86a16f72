"""A reading session: one reader, a worklist of cases in that reader's blinded order, answers in the store.

:class:`ReadingSession` is the state without any widget (which case, which answers, where to resume), so it can
be tested and timed on its own; :mod:`medimg.review.study.session_view` draws it (``medimg.review.session(...)``).
Explanations come from a precomputed folder (``medimg explain --cases ... --out-dir DIR``), else are computed
on demand with the checkpoint and kept in memory for the rest of the sitting.

Blinding: the session reads only this reader's own answers from the store.
"""

from __future__ import annotations

import os
from pathlib import Path

from medimg.errors import MedimgError, ReviewError
from medimg.explain.api import Explanation
from medimg.explain.methods import DEFAULT_METHOD
from medimg.inference.model import Model
from medimg.io.volume import Volume
from medimg.review.store import Feedback, FeedbackStore
from medimg.review.study.worklist import ReadingCase, SkippedCase, Worklist, check_reader, read_worklist

__all__ = ["ExplanationSource", "ReadingSession", "mni_reading_set", "open_session"]


class ExplanationSource:
    """Where a case's explanation comes from: ``precomputed`` folder first (maps of this checkpoint), else
    :func:`medimg.explain.api.explain_case` with ``checkpoint`` (cached in memory). The checkpoint (a path or an
    opened :class:`~medimg.inference.Model`) is opened once for the whole sitting, its SHA-256 taken from it."""

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | Model | None = None,
        precomputed: str | os.PathLike[str] | None = None,
        *,
        label: int = 1,
        method: str = DEFAULT_METHOD,
    ) -> None:
        if checkpoint is None and precomputed is None:
            raise ReviewError("a reading session needs a checkpoint or a folder of precomputed explanations")
        self._model: Model | None = None
        self._sha256: str | None = None
        if isinstance(checkpoint, Model):
            self._model, checkpoint = checkpoint, checkpoint.path
        elif checkpoint is not None and not Path(checkpoint).is_file():
            raise ReviewError("checkpoint not found", checkpoint)
        if precomputed is not None and not Path(precomputed).is_dir():
            raise ReviewError("folder of precomputed explanations not found; run `medimg explain --cases`", precomputed)
        self.checkpoint, self.precomputed, self.label, self.method = checkpoint, precomputed, label, method
        self._cache: dict[str, Explanation] = {}

    def model(self) -> Model:
        """The session's model, opened (read and hashed) on first use."""
        if self._model is None:
            if self.checkpoint is None:
                raise ReviewError("this reading session has no checkpoint, only precomputed explanations")
            from medimg.inference.model import open_model

            self._model = open_model(self.checkpoint)
        return self._model

    @property
    def checkpoint_sha256(self) -> str | None:
        """The checkpoint's SHA-256: from the opened model, else hashed from the file (once), so a sitting over
        precomputed explanations never builds the network."""
        if self._model is not None:
            return self._model.sha256
        if self.checkpoint is None:
            return None
        if self._sha256 is None:
            from medimg.inference.model import file_sha256

            self._sha256 = file_sha256(self.checkpoint)
        return self._sha256

    def get(self, case: ReadingCase) -> Explanation:
        """The explanation of ``case``; a case the model or the reader cannot use raises MedimgError."""
        if case.case_id in self._cache:
            return self._cache[case.case_id]
        ex = self._load(case)
        self._cache[case.case_id] = ex
        return ex

    def ready(self, case: ReadingCase) -> Explanation | None:
        """The explanation of ``case`` if it needs no computing (opened this sitting, or precomputed)."""
        from medimg.explain.batch import precomputed

        if case.case_id in self._cache:
            return self._cache[case.case_id]
        if self.precomputed is None:
            return None
        return precomputed(self.precomputed, case.case_id, self.checkpoint_sha256, self.method)

    def _load(self, case: ReadingCase) -> Explanation:
        found = self.ready(case)
        if found is not None:
            return found
        if self.checkpoint is None:
            raise ReviewError(f"no precomputed explanation of {case.case_id}; run `medimg explain --cases`")
        from medimg.explain.api import explain_case

        return explain_case(self.model(), case.image, self.label, method=self.method)


class ReadingSession:
    """One reader's sitting over a worklist; ``position`` indexes :attr:`cases` (the reader's order)."""

    def __init__(self, worklist: Worklist, reader: str, store: FeedbackStore, source: ExplanationSource) -> None:
        self.reader = check_reader(reader)
        self.worklist, self.store, self.source = worklist, store, source
        self.cases = worklist.for_reader(self.reader)
        from medimg.review.study.orders import record_order

        record_order(store.path, self.reader, worklist.order_name)  # the study report says which order each had
        self.failed: list[SkippedCase] = []  # cases that could not be opened during this sitting
        self.position = self.first_unanswered()

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def current(self) -> ReadingCase:
        return self.cases[self.position]

    @property
    def skipped(self) -> list[SkippedCase]:
        """Cases left out: missing from the list's folder, or failing to open."""
        return [*self.worklist.skipped, *self.failed]

    def answers(self) -> dict[str, Feedback]:
        """This reader's current answer per case of the worklist (never another reader's: the session is
        blinded)."""
        ids = {c.case_id for c in self.cases}
        return {case: a for (case, _), a in self.store.latest(reviewer=self.reader).items() if case in ids}

    def history(self, case_id: str) -> list[Feedback]:
        """Every answer this reader gave on ``case_id``, the first one first (amendments after it)."""
        return self.store.all(case_id=case_id, reviewer=self.reader)

    def first_unanswered(self) -> int:
        """Position of the first case (in this reader's order) without an answer; the last case when all are."""
        done = self.answers()
        return next((i for i, c in enumerate(self.cases) if c.case_id not in done), len(self.cases) - 1)

    def go(self, position: int) -> ReadingCase:
        """Move to ``position`` (clamped to the worklist)."""
        self.position = max(0, min(int(position), len(self.cases) - 1))
        return self.current

    def explanation(self, case: ReadingCase | None = None) -> Explanation:
        return self.source.get(case or self.current)

    def reference(self, case: ReadingCase | None = None) -> Volume | None:
        """The case's reference label, when the list gives one."""
        from medimg.io import load

        path = (case or self.current).label
        return None if path is None else load(path)

    def mark_failed(self, case: ReadingCase, reason: str) -> None:
        if all(s.case_id != case.case_id for s in self.failed):
            self.failed.append(SkippedCase(case.case_id, str(case.image), reason))

    def export_report(self, out_html: str | os.PathLike[str], *, compute: bool = False) -> Path:
        """The study report over the whole worklist, every reader's answers (for the research team).

        A case's figure is included when its map is at hand (precomputed, or opened in this sitting); with
        ``compute=True`` the missing maps are computed first (slow without a precomputed folder)."""
        from medimg.review.report import export_report

        cases = [(c.case_id, self._report_explanation(c, compute)) for c in self.worklist.cases]
        return export_report(cases, out_html, self.store, title="medimg reading session", skipped=self.skipped)

    def _report_explanation(self, case: ReadingCase, compute: bool) -> Explanation | None:
        try:
            return self.source.get(case) if compute else self.source.ready(case)
        except MedimgError:
            return None


def open_session(
    cases: str | os.PathLike[str] | Worklist,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    store: str | os.PathLike[str] | FeedbackStore = "data/reviews.sqlite",
    reader: str,
    precomputed: str | os.PathLike[str] | None = None,
    label: int = 1,
    method: str = DEFAULT_METHOD,
) -> ReadingSession:
    """A :class:`ReadingSession` from paths: the reader's name is checked first (an empty one is refused
    before anything is read), then the store, the case list and the explanations' source."""
    reader = check_reader(reader)
    feedback = store if isinstance(store, FeedbackStore) else FeedbackStore(store)
    worklist = cases if isinstance(cases, Worklist) else read_worklist(cases)
    return ReadingSession(
        worklist, reader, feedback, ExplanationSource(checkpoint, precomputed, label=label, method=method)
    )


def mni_reading_set(root: str | os.PathLike[str] = "outputs/demo/reading_set", n_cases: int = 4) -> Path:
    """A small set of held-out brain cases for a reading session with the demo's model (made once, seconds);
    returns its ``dataset.json``. The cases are new draws of the demo's MNI152 task (other motion, bias field
    and noise than its training cases), with their reference labels."""
    from medimg.data.phantoms import make_mni_msd

    root = Path(root)
    if not (root / "dataset.json").is_file():
        make_mni_msd(root, n_cases=0, n_test=n_cases, voxel_mm=3.0, seed=14)
    return root / "dataset.json"
