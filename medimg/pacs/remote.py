"""What medimg asks of a PACS, whatever the protocol: the records it answers with and the folder layout pulls
write into.

:class:`Remote` is the one interface :mod:`medimg.pacs.pull` and :mod:`medimg.pacs.push` use; DICOMweb
(:mod:`medimg.pacs.dicomweb`) and DIMSE (:mod:`medimg.pacs.dimse`) implement it. Pulled instances are laid out
``ROOT/<Study Instance UID>/<Series Instance UID>/<SOP Instance UID>.dcm`` and appear atomically, so a file that
is there is complete: that is what makes a pull resumable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from medimg.errors import MedimgError
from medimg.io.atomic import atomic_path

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["Query", "Remote", "SeriesInfo", "StoreResult", "instance_path", "save_instance"]

#: Called with each instance received: the dataset (with its file meta) -> where it was written.
Sink = Callable[["Dataset"], Path]


@dataclass(frozen=True)
class Query:
    """What ``medimg pacs find`` searches by; None matches anything. ``study_date`` is ``YYYYMMDD`` or a
    DICOM range ``YYYYMMDD-YYYYMMDD``."""

    patient_id: str | None = None
    accession: str | None = None
    study_date: str | None = None
    modality: str | None = None
    study_uid: str | None = None

    def filters(self) -> dict[str, str]:
        """As DICOM keywords: (0010,0020) PatientID, (0008,0050) AccessionNumber, (0008,0020) StudyDate,
        (0008,0060) Modality, (0020,000D) StudyInstanceUID."""
        pairs = {
            "PatientID": self.patient_id,
            "AccessionNumber": self.accession,
            "StudyDate": self.study_date,
            "Modality": self.modality,
            "StudyInstanceUID": self.study_uid,
        }
        return {k: v for k, v in pairs.items() if v}


@dataclass(frozen=True)
class SeriesInfo:
    """One series as the PACS describes it (no patient identifiers kept)."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    study_date: str
    series_number: int | None
    n_instances: int | None


@dataclass(frozen=True)
class StoreResult:
    """The PACS's answer to storing one instance: ``status`` 0 is success (DIMSE status or 0 for an HTTP 2xx
    without a failure item), ``reason`` its words."""

    status: int
    reason: str


class Remote(Protocol):
    """A PACS reached over one protocol."""

    def echo(self) -> None:
        """Check the PACS answers (C-ECHO, or an authenticated QIDO request); raise MedimgError otherwise."""

    def find_series(self, query: Query) -> list[SeriesInfo]:
        """Every series matching ``query``."""

    def instance_uids(self, study_uid: str, series_uid: str) -> set[str]:
        """The SOP Instance UIDs the PACS holds for one series."""

    def fetch(self, study_uid: str, series_uid: str, sop_uids: list[str] | None, sink: Sink) -> None:
        """Retrieve the instances ``sop_uids`` (None: the whole series), handing each to ``sink``."""

    def store(self, paths: Iterable[Path]) -> dict[str, StoreResult]:
        """Send Part 10 files; the PACS's answer per SOP Instance UID."""


def instance_path(root: str | os.PathLike[str], study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """``root/STUDY/SERIES/SOP.dcm``; UIDs are checked to be UIDs (digits and dots) before they become names."""
    for uid in (study_uid, series_uid, sop_uid):
        if not uid or not all(c.isdigit() or c == "." for c in uid) or len(uid) > 64:
            raise MedimgError(f"the PACS sent an instance with an invalid UID {uid[:70]!r}; it cannot be filed")
    return Path(root) / study_uid / series_uid / f"{sop_uid}.dcm"


def save_instance(root: str | os.PathLike[str], ds: Dataset) -> Path:
    """Write one received instance (Part 10, with the file meta it came with) at its place under ``root``."""
    dest = instance_path(root, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    with atomic_path(dest) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return dest
