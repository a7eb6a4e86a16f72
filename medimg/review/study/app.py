"""The reading session as a page with no code (Voila): the reader's name first, then the session.

``make review`` serves ``notebooks/review-app.ipynb`` (one call to :func:`reading_app`) with Voila on 127.0.0.1
behind a token. What to read comes from the environment, so the page has no parameter cell:

* ``MEDIMG_REVIEW_CASES``: folder, ``dataset.json`` or CSV of the cases (default: the demo's reading set, when
  the page passes ``demo_model``, e.g. :func:`medimg.demo.ensure_demo_model`);
* ``MEDIMG_REVIEW_CHECKPOINT``: the model (default: the demo's);
* ``MEDIMG_REVIEW_EXPLANATIONS``: folder written by ``medimg explain --cases ... --out-dir`` (optional);
* ``MEDIMG_REVIEW_STORE``: the SQLite store (default ``data/reviews.sqlite`` of the repository checkout).

Each browser page gets its own kernel; all of them write to the same store (WAL, busy timeout), so readers
working at the same time lose no answer. Errors a reader can meet (empty name, unreadable store, a missing
case file) are shown as one line in the page, never as a traceback.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medimg.errors import MedimgError, ReviewError

__all__ = ["ENV_CASES", "ENV_CHECKPOINT", "ENV_EXPLANATIONS", "ENV_STORE", "reading_app"]

ENV_CASES = "MEDIMG_REVIEW_CASES"
ENV_CHECKPOINT = "MEDIMG_REVIEW_CHECKPOINT"
ENV_EXPLANATIONS = "MEDIMG_REVIEW_EXPLANATIONS"
ENV_STORE = "MEDIMG_REVIEW_STORE"


def _workspace() -> Path:
    """The repository checkout medimg runs from (``make review``), else the current folder (an installed medimg)."""
    repo = Path(__file__).resolve().parents[2]
    return repo if (repo / "configs").is_dir() else Path.cwd()


#: what trains (once) and returns the demo's model: ``demo_model(out_dir)["checkpoint"]``
DemoModel = Callable[[Path], Mapping[str, Path]]


def _settings(env: Mapping[str, str], demo_model: DemoModel | None) -> dict[str, Any]:
    """The session's arguments from the environment; the demo's reading set where no cases are named."""
    cases, ckpt = env.get(ENV_CASES), env.get(ENV_CHECKPOINT)
    if not cases:
        if demo_model is None:
            raise ReviewError(f"no cases to read: set {ENV_CASES} (and {ENV_CHECKPOINT}) before starting the page")
        from medimg.review.study.reading import mni_reading_set

        demo = _workspace() / "outputs" / "demo"
        cases, ckpt = str(mni_reading_set(demo / "reading_set")), ckpt or str(demo_model(demo)["checkpoint"])
    return {
        "cases": cases,
        "checkpoint": ckpt or None,
        "precomputed": env.get(ENV_EXPLANATIONS) or None,
        "store": env.get(ENV_STORE) or str(_workspace() / "data" / "reviews.sqlite"),
    }


def reading_app(env: Mapping[str, str] | None = None, demo_model: DemoModel | None = None) -> Any:
    """The page's widget: a name field and a start button; the session replaces them once it opens.

    ``env``: the settings (default: ``os.environ``); ``demo_model``: injected by the page (the demo lives in a
    higher room than ``review``), used only when no cases are named."""
    import ipywidgets as w

    name = w.Text(placeholder="your name", description="Reader")
    start = w.Button(description="Start reading", button_style="primary", icon="play")
    message = w.HTML()
    page = w.VBox(
        [w.HTML("<h2>Reading session</h2><p>Enter your name: your answers and your case order are kept under it.</p>"),
         w.HBox([name, start]), message]
    )  # fmt: skip

    def begin(_button: object) -> None:
        from medimg.review.study.session_view import session
        from medimg.review.study.worklist import check_reader

        start.disabled = True
        try:
            reader = check_reader(str(name.value))
            message.value = "<i>opening the session ...</i>"
            view = session(reader=reader, **_settings(os.environ if env is None else env, demo_model))
        except MedimgError as exc:
            message.value = f"<b style='color:#b00'>{html.escape(str(exc))}</b>"
            start.disabled = False
            return
        page.children = (w.HTML(f"<h2>Reading session: {html.escape(reader)}</h2>"), view.widget)

    start.on_click(begin)
    return page
