"""The reading session as a widget: "case 12 of 40", previous / next / first unanswered, and the case's viewer.

``session(cases, checkpoint, store=..., reader=...)`` is the one call for a notebook; the Voila page
(:mod:`medimg.review.study.app`) shows the same widget after asking the reader's name. A case that cannot be
opened is reported in the page (no traceback) and listed as skipped in the report.
"""

from __future__ import annotations

import html
import os
from typing import Any

from medimg.errors import MedimgError
from medimg.review.store import FeedbackStore
from medimg.review.study.reading import ReadingSession, open_session
from medimg.review.study.worklist import Worklist
from medimg.review.viewer import ReviewWidget

__all__ = ["SessionWidget", "session"]


class SessionWidget:
    """Navigation + the current case's :class:`~medimg.review.viewer.ReviewWidget`; ``.widget`` to display."""

    def __init__(self, state: ReadingSession) -> None:
        import ipywidgets as w

        self.state = state
        self.viewer: ReviewWidget | None = None
        self.header = w.HTML()
        self.previous = w.Button(description="previous", icon="arrow-left")
        self.next = w.Button(description="next", icon="arrow-right")
        self.unanswered = w.Button(description="first unanswered", icon="forward")
        self.notes = w.HTML(_skipped_html(state))
        self.message = w.HTML()
        self.body = w.VBox()
        self.previous.on_click(lambda _b: self.show(self.state.position - 1))
        self.next.on_click(lambda _b: self.show(self.state.position + 1))
        self.unanswered.on_click(lambda _b: self.show(self.state.first_unanswered()))
        nav = w.HBox([self.previous, self.next, self.unanswered, self.header])
        self.widget = w.VBox([nav, self.notes, self.message, self.body])
        self.show(state.position)

    def show(self, position: int) -> None:
        """Open the case at ``position`` of the reader's order (with this reader's earlier answer, if any)."""
        case = self.state.go(position)
        self.message.value = f"<i>opening case {self.state.position + 1} ...</i>"
        try:
            ex = self.state.explanation(case)
            reference = self.state.reference(case)
        except MedimgError as exc:
            self.state.mark_failed(case, str(exc))
            self.viewer, self.body.children = None, ()
            self.message.value = (
                f"<b style='color:#b00'>{html.escape(case.case_id)} cannot be opened: {html.escape(str(exc))}</b>"
            )
            self.notes.value = _skipped_html(self.state)
            self._update_header()
            return
        self.viewer = ReviewWidget(
            ex,
            case_id=case.case_id,
            store=self.state.store,
            label=reference,
            reviewer=self.state.reader,
            previous=self.state.answers().get(case.case_id),
        )
        self.viewer.reviewer.disabled = True  # the session's reader, fixed when the session opened
        self.viewer.submit.on_click(lambda _b: self._update_header())
        self.message.value = ""
        self.body.children = (self.viewer.widget,)
        self._update_header()

    def _update_header(self) -> None:
        n, done = len(self.state), len(self.state.answers())
        self.header.value = (
            f"<b>case {self.state.position + 1} of {n}</b> &nbsp; ({done} answered by {html.escape(self.state.reader)})"
        )
        risk = self.state.worklist.risk.get(self.state.current.case_id)  # triage: the risk and its reason
        self.header.value += f" &nbsp; <span class='risk'>{html.escape(str(risk))}</span>" if risk else ""
        self.previous.disabled = self.state.position == 0
        self.next.disabled = self.state.position == n - 1


def _skipped_html(state: ReadingSession) -> str:
    if not state.skipped:
        return ""
    items = "".join(f"<li>{html.escape(str(s))}</li>" for s in state.skipped)
    summary = f"<summary style='color:#b00'>{len(state.skipped)} case(s) skipped</summary>"
    return f"<details open>{summary}<ul>{items}</ul></details>"


def session(
    cases: str | os.PathLike[str] | Worklist,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    store: str | os.PathLike[str] | FeedbackStore = "data/reviews.sqlite",
    reader: str,
    precomputed: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> SessionWidget:
    """A reading session over ``cases`` (folder, ``dataset.json`` or CSV ``case_id, image[, label]``) for
    ``reader``, opened at this reader's first unanswered case; answers go to ``store``.

    ``precomputed``: the folder ``medimg explain --cases ... --out-dir`` wrote; without it each case is
    explained with ``checkpoint`` when first opened."""
    state = open_session(cases, checkpoint, store=store, reader=reader, precomputed=precomputed, **kwargs)
    return SessionWidget(state)
