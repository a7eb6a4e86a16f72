"""A reviewed case back to the hospital as DICOM: its mask (SEG), its heatmap (Parametric Map), and the review
answers as a Key Object Selection that points at both -- what ``export_report(..., dicom_dir=...)`` writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from medimg.explain.api import Explanation
from medimg.io.volume import is_nifti
from medimg.review.store import Feedback

__all__ = ["export_case_dicom", "review_text"]

log = logging.getLogger(__name__)


def review_text(ex: Explanation, answers: Sequence[Feedback]) -> str:
    """The Key Object Description: the latest answer first, then how many there are, then the model's hash."""
    latest = answers[-1]
    where = f"; localisation {latest.localisation}/5" if latest.localisation is not None else ""
    comment = f"; comment: {latest.comment}" if latest.comment else ""
    return (
        f"medimg review of the {ex.method} heatmap of class {ex.label} ({ex.layer}): verdict {latest.verdict}{where}; "
        f"reviewer {latest.reviewer}; {len(answers)} answer(s) recorded; checkpoint sha256 "
        f"{ex.checkpoint_sha256}{comment}"
    )


def export_case_dicom(case_id: str, ex: Explanation, answers: Sequence[Feedback], folder: Path) -> list[Path]:
    """Write ``<case>_seg.dcm``, ``<case>_heatmap.dcm`` and, when there are answers, ``<case>_review_ko.dcm``
    into ``folder``; nothing (and an info log line) when the case's input is not a DICOM series."""
    from medimg.io.derived import source_slices, write_seg
    from medimg.io.derived.key_object import write_key_objects

    source = str(ex.image.meta.get("source", ""))
    if not source or is_nifti(source):
        log.info("case %s: input is not a DICOM series, no DICOM objects written", case_id)
        return []
    name = re.sub(r"[^0-9A-Za-z._-]+", "_", case_id)
    src = source_slices(source)
    top = int(ex.prediction.array.max()) if ex.prediction.array.size else 0
    labels = {k: f"class {k}" for k in range(1, max(top, ex.label) + 1)}
    labels[ex.label] = ex.label_name or labels[ex.label]
    seg = write_seg(ex.prediction, src, folder / f"{name}_seg.dcm", labels={0: "background", **labels})
    heat = ex.save(folder / f"{name}_heatmap.dcm")
    written = [seg, heat]
    if answers:
        reviewer = answers[-1].reviewer
        written.append(
            write_key_objects(
                [seg, heat], folder / f"{name}_review_ko.dcm", description=review_text(ex, answers), reviewer=reviewer
            )
        )
    return written
