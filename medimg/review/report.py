"""A self-contained HTML review report (images embedded) and the CSV of the answers."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

from medimg.explain.api import Explanation
from medimg.explain.overlay import figure_png, render_planes
from medimg.io.atomic import atomic_write_text
from medimg.review.store import FeedbackStore

__all__ = ["export_report"]


def export_report(
    cases: Sequence[tuple[str, Explanation]],
    out_html: str | os.PathLike[str],
    store: FeedbackStore | None = None,
    *,
    title: str = "medimg heatmap review",
    labels: dict[str, object] | None = None,
    dicom_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write one HTML file with, per case, the three-plane figure (image, prediction contour, heatmap), the
    sanity-check verdict, the identifiers that tie it to its model, and the answers recorded so far. Writes
    ``<out>.csv`` with every answer in ``store`` next to it.

    With ``dicom_dir``, every case made from a DICOM series also leaves as DICOM there: ``<case>_seg.dcm``
    (the prediction), ``<case>_heatmap.dcm`` (Parametric Map) and, once answered, ``<case>_review_ko.dcm`` (a
    Key Object Selection referencing both, the review in its description); see
    :func:`medimg.review.dicom_export.export_case_dicom`."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1300px;margin:auto}img{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        ".fail{color:#b00}.pass{color:#070}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for case_id, ex in cases:
        label_vol = (labels or {}).get(case_id)
        fig = render_planes(
            ex.image,
            heatmap=ex.heatmap,
            prediction=ex.prediction,
            label=label_vol,  # type: ignore[arg-type]
            title=f"{case_id}: {ex.method} on {ex.layer}, class {ex.label}",
        )
        png = base64.b64encode(figure_png(fig)).decode()
        sanity = ""
        if ex.sanity is not None:
            cls = "pass" if ex.sanity.trustworthy else "fail"
            sanity = f"<p class='{cls}'>{html.escape(str(ex.sanity))}</p>"
        parts += [
            f"<h2>{html.escape(case_id)}</h2>",
            f"<img alt='{html.escape(case_id)}' src='data:image/png;base64,{png}'>",
            sanity,
            f"<p><small>checkpoint sha256 {ex.checkpoint_sha256}<br>input sha256 {ex.input_sha256}</small></p>",
        ]
        answers = store.all(case_id=case_id) if store is not None else []
        if dicom_dir is not None:
            from medimg.review.dicom_export import export_case_dicom

            export_case_dicom(case_id, ex, answers, Path(dicom_dir))
        if answers:
            parts.append(
                "<table><tr><th>when (UTC)</th><th>reviewer</th><th>verdict</th><th>localisation</th>"
                "<th>comment</th><th>checkpoint</th></tr>"
            )
            for a in answers:
                parts.append(
                    f"<tr><td>{a.created_utc}</td><td>{html.escape(a.reviewer)}</td><td>{a.verdict}</td>"
                    f"<td>{a.localisation or ''}</td><td>{html.escape(a.comment)}</td>"
                    f"<td>{a.checkpoint_sha256[:12]}</td></tr>"
                )
            parts.append("</table>")
        else:
            parts.append("<p><em>no answers recorded yet</em></p>")
    parts.append("</body></html>")
    out = Path(out_html)
    atomic_write_text(out, "\n".join(parts))
    if store is not None:
        atomic_write_text(out.with_suffix(".csv"), store.to_csv())
    return out
