"""A reader study's worklist: the cases to read, the ones that had to be skipped, and each reader's order.

Cases come from a folder (NIfTI files and DICOM study folders), an MSD ``dataset.json`` split, or a CSV with the
columns ``case_id, image[, label]`` (paths relative to the CSV). A case whose file is missing is not an error
that stops the study: it is skipped, and the skip is shown in the session and listed in the report.

Blinding: every reader sees the cases in an order drawn from a seed derived from the reader's name, so the order
is the same at every sitting and differs between readers (a reader cannot follow another's order).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medimg.data.datasets import read_csv_rows, read_spec
from medimg.errors import ConfigError, ReviewError
from medimg.io.load import list_images

__all__ = ["ReadingCase", "SkippedCase", "Worklist", "check_reader", "read_worklist", "reader_order", "reader_seed"]


@dataclass(frozen=True)
class ReadingCase:
    """One case to read: its identifier (shown to the reader and stored with answers), image, optional label."""

    case_id: str
    image: Path
    label: Path | None = None


@dataclass(frozen=True)
class SkippedCase:
    """A case of the list that cannot be read, and why (e.g. its file is missing)."""

    case_id: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.case_id}: {self.reason} ({self.path})"


@dataclass
class Worklist:
    """The readable cases (in the list's order) and the skipped ones."""

    cases: list[ReadingCase]
    skipped: list[SkippedCase] = field(default_factory=list)
    source: str = ""

    def for_reader(self, reader: str) -> list[ReadingCase]:
        """The cases in ``reader``'s blinded order."""
        return [self.cases[i] for i in reader_order([c.case_id for c in self.cases], reader)]

    def case(self, case_id: str) -> ReadingCase:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise ReviewError(f"case {case_id!r} is not on the worklist", self.source)


def check_reader(reader: str) -> str:
    """The reader's name as stored (surrounding blanks removed); an empty name is refused."""
    name = reader.strip()
    if not name:
        raise ReviewError("enter your name first: each reader's answers and case order are kept under it")
    return name


def reader_seed(reader: str) -> int:
    """A 64-bit seed from the reader's name (case and surrounding blanks ignored): stable across sittings."""
    digest = hashlib.sha256(check_reader(reader).casefold().encode()).digest()
    return int.from_bytes(digest[:8], "little")


def reader_order(case_ids: Sequence[str], reader: str) -> list[int]:
    """Indices into ``case_ids`` in ``reader``'s order. The permutation is drawn over the sorted identifiers,
    so it does not depend on how the list happened to be ordered on disk."""
    by_name = sorted(range(len(case_ids)), key=lambda i: case_ids[i])
    perm = np.random.default_rng(reader_seed(reader)).permutation(len(case_ids))
    return [by_name[int(p)] for p in perm]


def read_worklist(cases: str | os.PathLike[str], split: str = "test") -> Worklist:
    """Read a case list: a folder of NIfTI files / DICOM study folders, a ``dataset.json`` (or its folder;
    ``split`` is ``test`` or ``training``), or a CSV ``case_id, image[, label]``."""
    path = Path(cases)
    if path.is_file() and path.suffix.lower() == ".csv":
        found = _from_csv(path)
    elif path.is_file() and path.name == "dataset.json":
        found = _from_msd(path, split)
    elif path.is_dir() and (path / "dataset.json").is_file():
        found = _from_msd(path / "dataset.json", split)
    elif path.is_dir():
        found = _from_folder(path)
    else:
        raise ConfigError("case list not found: give a folder, a dataset.json or a CSV (case_id, image[, label])", path)
    return _checked(found, str(path))


def _checked(found: list[tuple[str, Path, Path | None]], source: str) -> Worklist:
    """Split the listed cases into readable and skipped; refuse a list that names a case twice or none."""
    ids = [case_id for case_id, _, _ in found]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigError(f"the case list names {', '.join(twice)} more than once; case ids must be unique", source)
    cases, skipped = [], []
    for case_id, image, label in found:
        if not image.exists():
            skipped.append(SkippedCase(case_id, str(image), "image file missing"))
        else:
            cases.append(ReadingCase(case_id, image, label if label is not None and label.exists() else None))
    if not cases:
        raise ConfigError("the case list has no readable case", source)
    return Worklist(cases, skipped, source)


def _from_folder(folder: Path) -> list[tuple[str, Path, Path | None]]:
    # a DICOM study/series folder is named by itself, a NIfTI file by its name before the first dot
    return [(p.name if p.is_dir() else p.name.split(".")[0], p, None) for p in list_images(folder)]


def _from_msd(spec: Path, split: str) -> list[tuple[str, Path, Path | None]]:
    meta = read_spec(spec)
    if split not in ("test", "training"):
        raise ConfigError(f"split must be 'test' or 'training', got {split!r}", spec)
    found: list[tuple[str, Path, Path | None]] = []
    for entry in meta.get(split, []):
        rel = entry if isinstance(entry, str) else entry["image"]
        image = (spec.parent / rel).resolve()
        if isinstance(entry, dict) and entry.get("label"):
            label: Path | None = (spec.parent / entry["label"]).resolve()
        else:  # medimg's phantoms keep the held-out labels in labelsTs/ (not part of MSD)
            label = (spec.parent / "labelsTs" / image.name).resolve()
        found.append((image.name.split(".")[0], image, label))
    return found


def _from_csv(path: Path) -> list[tuple[str, Path, Path | None]]:
    return [
        (row["case_id"], Path(row["image"]), (path.parent / row["label"]).resolve() if row.get("label") else None)
        for row in read_csv_rows(path, required=("case_id", "image"))
    ]
