"""The QA table of a scan -- one row per series, problems last -- as fixed-width text and as HTML.

``medimg scan`` prints :func:`scan_text`; a notebook shows :class:`ScanTable` (HTML, blocking problems in red).
The rows are read from :meth:`medimg.io.dicom.series.Series.summary` through named fields (:class:`SeriesRow`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from medimg.io.dicom.scan import ScanResult

__all__ = ["ScanTable", "SeriesRow", "scan_html", "scan_text"]

#: Width of the description column in the text table.
DESCRIPTION_WIDTH = 28
TEXT_FOOTNOTE = "('!' marks a problem that stops loading; see `medimg scan --json` for all fields)"


class SeriesRow(NamedTuple):
    """One series as display cells; ``problems`` are the summary's dicts (code, detail, blocking)."""

    key: str
    modality: str
    n_files: str
    shape: str
    spacing: str
    orientation: str
    description: str
    problems: Sequence[Mapping[str, Any]]

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], sep: str) -> SeriesRow:
        """Cells of one ``Series.summary()``; ``sep`` joins shape and spacing values (``"x"`` or ``" x "``)."""
        spacing = summary["spacing"]
        return cls(
            key=summary["key"],
            modality=summary["modality"],
            n_files=str(summary["n_files"]),
            shape=sep.join(map(str, summary["shape"])),
            spacing="-" if spacing is None else sep.join(f"{v:.4g}" for v in spacing),
            orientation=summary["orientation"] or "-",
            description=summary["description"] or "",
            problems=summary["problems"],
        )


def _problems_text(problems: Sequence[Mapping[str, Any]]) -> str:
    """``code! (detail)`` per problem, ``!`` on blocking ones; ``ok`` when there are none."""
    return "; ".join(f"{p['code']}{'!' if p['blocking'] else ''} ({p['detail']})" for p in problems) or "ok"


def scan_text(result: ScanResult) -> str:
    """The QA table as fixed-width text, one row per series, problems last (what ``medimg scan`` prints), then
    the DICOM SEG / Parametric Map objects found, if any."""
    head = ("key", "mod", "files", "shape", "spacing mm", "orient", "description")
    rows = [SeriesRow.from_summary(s.summary(), "x") for s in result.series]
    lines = [(*head, "problems")] + [
        (
            r.key,
            r.modality,
            r.n_files,
            r.shape,
            r.spacing,
            r.orientation,
            r.description[:DESCRIPTION_WIDTH],
            _problems_text(r.problems),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1] for line in lines]
    out.append(TEXT_FOOTNOTE)
    if result.derived:
        from medimg.io.dicom.derived_listing import derived_table

        out.append(derived_table(result.derived))
    return "\n".join(out)


def _html_cells(r: SeriesRow) -> tuple[str, ...]:
    listed = "<br>".join(
        f"<span style='color:{'#b00' if p['blocking'] else '#a60'}'>{html.escape(p['code'])}</span>: "
        f"{html.escape(p['detail'])}"
        for p in r.problems
    )
    return (
        f"<span title='{html.escape(r.key)}'>...{html.escape(r.key[-14:])}</span>",
        html.escape(r.modality),
        r.n_files,
        r.shape,
        r.spacing,
        html.escape(r.orientation),
        html.escape(r.description),
        listed or "<span style='color:green'>ok</span>",
    )


def scan_html(result: ScanResult) -> str:
    """The QA table as HTML, for notebooks: the full key on hover, blocking problems in red."""
    head = ("series", "modality", "files", "shape", "spacing (mm)", "orientation", "description", "problems")
    rows = [
        "<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in _html_cells(r)) + "</tr>"
        for r in (SeriesRow.from_summary(s.summary(), " x ") for s in result.series)
    ]
    header = "".join(f"<th style='text-align:left'>{h}</th>" for h in head)
    note = f"<p>{len(result.skipped)} file(s) skipped (not DICOM or damaged).</p>" if result.skipped else ""
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>{note}"


@dataclass(frozen=True)
class ScanTable:
    """A scan's QA table that a notebook shows as HTML and ``print`` shows as text: ``ScanTable(scan(folder))``."""

    result: ScanResult

    def __str__(self) -> str:
        return scan_text(self.result)

    def _repr_html_(self) -> str:
        return scan_html(self.result)
