"""Pushing files to a PACS with proof they arrived.

A store request answered "success" is not proof: a DICOMweb server may answer 200 and store nothing
(dicomweb-client#42), a DIMSE archive may accept and drop. So each SOP Instance UID is looked for before the
store (already there: not sent again, so pushing twice stores nothing twice) and queried back after it. Only an
instance the PACS lists afterwards counts as arrived.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from medimg.errors import MedimgError
from medimg.pacs.remote import Remote

__all__ = ["PushReport", "push"]

log = logging.getLogger(__name__)


@dataclass
class PushReport:
    """SOP Instance UIDs by outcome; ``refused`` and ``not_stored`` map to the PACS's words."""

    arrived: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    not_stored: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """Every instance is on the PACS (arrived now or already there)."""
        return not self.refused and not self.not_stored

    def summary(self) -> str:
        text = f"{len(self.arrived)} arrived, {len(self.already)} already there, {len(self.refused)} refused"
        if self.not_stored:
            text += f", {len(self.not_stored)} accepted but not stored"
        return text

    def failure(self) -> MedimgError:
        """The one-line error of an unverified push."""
        parts = []
        if self.refused:
            sop, why = next(iter(self.refused.items()))
            parts.append(f"{len(self.refused)} refused (first {sop}: {why})")
        if self.not_stored:
            parts.append(
                f"{len(self.not_stored)} accepted but absent when queried back (first {self.not_stored[0]}); "
                "the PACS answered success without storing"
            )
        return MedimgError(f"push not verified: {'; '.join(parts)}")


def _identify(paths: Iterable[str | os.PathLike[str]]) -> dict[str, tuple[str, str, Path]]:
    """SOP Instance UID -> (Study UID, Series UID, file), each file's header read once; a UID given twice is sent
    once."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    found: dict[str, tuple[str, str, Path]] = {}
    for p in paths:
        try:
            ds = dcmread(p, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID",
                                                                     "SOPInstanceUID"])  # fmt: skip
            found.setdefault(str(ds.SOPInstanceUID), (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), Path(p)))
        except (InvalidDicomError, AttributeError, OSError) as exc:
            raise MedimgError(f"not a DICOM instance medimg can send ({type(exc).__name__})", p) from None
    return found


def push(remote: Remote, files: Iterable[str | os.PathLike[str]]) -> PushReport:
    """Send ``files`` (Part 10: SEG, Parametric Map, KO, SR, images) and verify each by querying it back."""
    items = _identify(files)
    if not items:
        raise MedimgError("nothing to push: no files given")
    series = {(study, ser) for study, ser, _ in items.values()}
    before = {key: remote.instance_uids(*key) for key in series}
    report = PushReport()
    to_send = []
    for sop, (study, ser, path) in items.items():
        if sop in before[(study, ser)]:
            report.already.append(sop)
        else:
            to_send.append(path)
    answers = remote.store(to_send) if to_send else {}
    after = {key: remote.instance_uids(*key) for key in series} if to_send else before
    for sop, (study, ser, _) in items.items():
        if sop in before[(study, ser)]:
            continue
        answer = answers.get(sop)
        if answer is not None and answer.status != 0:
            report.refused[sop] = answer.reason
        elif sop in after[(study, ser)]:
            report.arrived.append(sop)
        else:
            report.not_stored.append(sop)
    log.info("push: %s", report.summary())
    return report
