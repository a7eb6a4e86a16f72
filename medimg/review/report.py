"""A self-contained HTML review report (images embedded) and the CSV of the answers.

With a store, the report opens with the study summary (:mod:`medimg.review.study.study_report`): answers per reader,
agreement with bootstrap intervals, the verdict table with disagreements first, and the skipped cases.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

from medimg.explain.api import Explanation
from medimg.io.atomic import atomic_write_text
from medimg.review.store import Feedback, FeedbackStore
from medimg.review.study.worklist import SkippedCase
from medimg.viz import figure_png, render_planes

__all__ = ["export_report"]

_STYLE = (
    "body{font-family:sans-serif;max-width:1300px;margin:auto}img{max-width:100%}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
    ".fail{color:#b00}.pass{color:#070}.disagree{background:#fee}"
)


def export_report(
    cases: Sequence[tuple[str, Explanation | None]],
    out_html: str | os.PathLike[str],
    store: FeedbackStore | None = None,
    *,
    title: str = "medimg heatmap review",
    labels: dict[str, object] | None = None,
    dicom_dir: str | os.PathLike[str] | None = None,
    skipped: Sequence[SkippedCase] = (),
) -> Path:
    """Write one HTML file with, per case, the three-plane figure (image, prediction contour, heatmap), the
    sanity-check verdict, the identifiers that tie it to its model, and the answers recorded so far. Writes
    ``<out>.csv`` with every answer in ``store`` next to it. A case given without an explanation (None) gets
    its answers only.

    With a ``store``, the page starts with the study summary over these cases (agreement between readers);
    ``skipped`` cases (missing files, unreadable images) are listed there.

    With ``dicom_dir``, every case made from a DICOM series also leaves as DICOM there: ``<case>_seg.dcm``
    (the prediction), ``<case>_heatmap.dcm`` (Parametric Map) and, once answered, ``<case>_review_ko.dcm`` (a
    Key Object Selection referencing both, the review in its description); see
    :func:`medimg.review.dicom_export.export_case_dicom`."""
    answers = _answers_of(store, [case_id for case_id, _ in cases])
    parts = _head(title)
    if store is not None:
        from medimg.review.study.orders import read_orders
        from medimg.review.study.study_report import study_html

        given = [a for case in answers.values() for a in case]
        parts += study_html(given, [c for c, _ in cases], skipped, read_orders(store.path))
    for case_id, ex in cases:
        parts += _case_section(case_id, ex, (labels or {}).get(case_id), answers[case_id])
        if dicom_dir is not None and ex is not None:
            from medimg.review.dicom_export import export_case_dicom

            export_case_dicom(case_id, ex, answers[case_id], Path(dicom_dir))
    parts.append("</body></html>")
    return _write(Path(out_html), parts, store)


def _answers_of(store: FeedbackStore | None, case_ids: Sequence[str]) -> dict[str, list[Feedback]]:
    """Every stored answer per case (amendments included), one query."""
    found: dict[str, list[Feedback]] = {case_id: [] for case_id in case_ids}
    for a in store.all() if store is not None else []:
        if a.case_id in found:
            found[a.case_id].append(a)
    return found


def _head(title: str) -> list[str]:
    return [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]


def _case_section(case_id: str, ex: Explanation | None, label: object, answers: list[Feedback]) -> list[str]:
    parts = [f"<h2 id='case-{html.escape(case_id)}'>{html.escape(case_id)}</h2>"]
    if ex is not None:
        parts += [_figure(case_id, ex, label), _sanity(ex)]
        parts.append(
            f"<p><small>checkpoint sha256 {ex.checkpoint_sha256}<br>input sha256 {ex.input_sha256}</small></p>"
        )
    parts.append(_answers_table(answers) if answers else "<p><em>no answers recorded yet</em></p>")
    return parts


def _figure(case_id: str, ex: Explanation, label: object) -> str:
    fig = render_planes(
        ex.image,
        heatmap=ex.heatmap,
        prediction=ex.prediction,
        label=label,  # type: ignore[arg-type]
        title=f"{case_id}: {ex.method} on {ex.layer}, class {ex.label}",
    )
    png = base64.b64encode(figure_png(fig)).decode()
    return f"<img alt='{html.escape(case_id)}' src='data:image/png;base64,{png}'>"


def _sanity(ex: Explanation) -> str:
    if ex.sanity is None:
        return ""
    cls = "pass" if ex.sanity.trustworthy else "fail"
    return f"<p class='{cls}'>{html.escape(str(ex.sanity))}</p>"


def _answers_table(answers: list[Feedback]) -> str:
    """Every answer, amendments included (an amendment names the row it replaces)."""
    rows = [
        "<table><tr><th>#</th><th>when (UTC)</th><th>reviewer</th><th>verdict</th><th>localisation</th>"
        "<th>comment</th><th>amends</th><th>checkpoint</th></tr>"
    ]
    for a in answers:
        rows.append(
            f"<tr><td>{a.id}</td><td>{a.created_utc}</td><td>{html.escape(a.reviewer)}</td><td>{a.verdict}</td>"
            f"<td>{a.localisation or ''}</td><td>{html.escape(a.comment)}</td><td>{a.amends or ''}</td>"
            f"<td>{a.checkpoint_sha256[:12]}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _write(out: Path, parts: list[str], store: FeedbackStore | None) -> Path:
    atomic_write_text(out, "\n".join(parts))
    if store is not None:
        atomic_write_text(out.with_suffix(".csv"), store.to_csv())
    return out
