"""The study summary of a reader study, as HTML for the report: answers per reader, agreement (Cohen's kappa
per pair, Fleiss' kappa, Krippendorff's alpha, bootstrap 95 % intervals), the verdict table per case with
the cases where readers disagree first and the localisation scores' mean and spread, and the skipped cases."""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Mapping, Sequence

from medimg.review.store import VERDICTS, Feedback
from medimg.review.study.agreement import StudyAgreement, study_agreement
from medimg.review.study.worklist import SkippedCase

__all__ = ["study_html"]


def study_html(
    answers: Sequence[Feedback],
    case_ids: Sequence[str],
    skipped: Sequence[SkippedCase] = (),
    orders: Mapping[str, str] | None = None,
) -> list[str]:
    """The summary's HTML parts (``answers``: every row, amendments included; the current ones count;
    ``orders``: each reader's case order in words, :func:`medimg.review.study.orders.read_orders`)."""
    study = study_agreement(answers, case_ids)
    return [
        "<h2>Study summary</h2>",
        _readers(study, orders or {}),
        _agreement(study),
        _verdicts(study),
        _skipped(skipped),
    ]


def _readers(study: StudyAgreement, orders: Mapping[str, str]) -> str:
    t = study.table
    rows = ["<h3>Answers per reader</h3><table><tr><th>reader</th><th>case order</th><th>answered</th>"]
    rows += [f"<th>{v}</th>" for v in VERDICTS] + ["</tr>"]
    for r, reader in enumerate(t.readers):
        counts = Counter(row[r] for row in t.verdicts if row[r] is not None)
        order = html.escape(orders.get(reader, "not recorded"))
        rows.append(
            f"<tr><td>{html.escape(reader)}</td><td>{order}</td><td>{sum(counts.values())} of {len(t.case_ids)}</td>"
        )
        rows += [f"<td>{counts.get(v, 0)}</td>" for v in VERDICTS] + ["</tr>"]
    rows.append("</table>")
    return "".join(rows) if t.readers else "<p><em>no answers recorded yet</em></p>"


def _agreement(study: StudyAgreement) -> str:
    rows = [
        "<h3>Agreement</h3><table><tr><th>readers</th><th>statistic</th><th>value (95 % CI)</th>"
        "<th>observed agreement</th></tr>"
    ]
    for (a, b), est in study.pairs.items():
        seen = study.observed[(a, b)]
        observed = "" if math.isnan(seen) else f"{100 * seen:.0f} %"
        rows.append(
            f"<tr><td>{html.escape(a)} &amp; {html.escape(b)}</td><td>Cohen's kappa</td>"
            f"<td>{html.escape(str(est))}</td>"
            f"<td>{observed}</td></tr>"
        )
    rows.append(f"<tr><td>all</td><td>Fleiss' kappa</td><td>{html.escape(str(study.fleiss))}</td><td></td></tr>")
    rows.append(f"<tr><td>all</td><td>Krippendorff's alpha</td><td>{html.escape(str(study.alpha))}</td><td></td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _verdicts(study: StudyAgreement) -> str:
    t = study.table
    head = "".join(f"<th>{html.escape(r)}</th>" for r in t.readers)
    rows = [
        "<h3>Verdicts per case (disagreements first)</h3>"
        f"<table><tr><th>case</th>{head}<th>localisation mean (SD, n)</th></tr>"
    ]
    for c in study.case_order():
        mean, sd, n = study.localisation(c)
        loc = "" if n == 0 else f"{mean:.1f} ({sd:.1f}, {n})"
        cls = " class='disagree'" if t.disagreement(c) else ""
        cells = "".join(f"<td>{v or ''}</td>" for v in t.verdicts[c])
        name = html.escape(t.case_ids[c])
        rows.append(f"<tr{cls}><td><a href='#case-{name}'>{name}</a></td>{cells}<td>{loc}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _skipped(skipped: Sequence[SkippedCase]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{html.escape(str(s))}</li>" for s in skipped)
    return f"<h3>Skipped cases ({len(skipped)})</h3><ul>{items}</ul>"
