"""A reader study's worklist: the cases to read, the ones that had to be skipped, and each reader's order.

Cases come from a folder (NIfTI files and DICOM study folders), an MSD ``dataset.json`` split, or a CSV with the
columns ``case_id, image[, label]`` (paths relative to the CSV). A case whose file is missing is not an error
that stops the study: it is skipped, and the skip is shown in the session and listed in the report.

Blinding: every reader sees the cases in an order drawn from a seed derived from the reader's name, so the order
is the same at every sitting and differs between readers (a reader cannot follow another's order). That is the
default. Triage is the other order: ``order="risk"`` shows the riskiest case first, by the risk records
``medimg segment`` writes beside each mask with an ensemble or ``--tta`` (``<case>_risk.json``, see
:mod:`medimg.inference.uncertainty`); each case carries its risk and reason (:attr:`Worklist.risk`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medimg.data.datasets import read_csv_rows, read_spec
from medimg.errors import ConfigError, ReviewError
from medimg.io.load import list_images

__all__ = [
    "ORDERS",
    "CaseRisk",
    "ReadingCase",
    "SkippedCase",
    "Worklist",
    "check_reader",
    "read_risks",
    "read_worklist",
    "reader_order",
    "reader_seed",
    "risk_order",
]

#: the case orders a worklist offers: each reader's blinded random order (default), or riskiest first
ORDERS = ("blinded", "risk")
#: what the study report calls each order
ORDER_NAMES = {"blinded": "blinded random", "risk": "by risk, highest first"}


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


@dataclass(frozen=True)
class CaseRisk:
    """A case's risk (0..1, higher is riskier) and its reason in words, from its ``<case>_risk.json``."""

    risk: float
    reason: str

    def __str__(self) -> str:
        return f"risk {self.risk:.2f}: {self.reason}"


@dataclass
class Worklist:
    """The readable cases (in the list's order), the skipped ones, the ``order`` readers get (:data:`ORDERS`)
    and each case's ``risk`` (by case id; empty unless risk records were read)."""

    cases: list[ReadingCase]
    skipped: list[SkippedCase] = field(default_factory=list)
    source: str = ""
    order: str = "blinded"
    risk: dict[str, CaseRisk] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ConfigError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")

    @property
    def order_name(self) -> str:
        """The order in words, as the study report names it."""
        return ORDER_NAMES[self.order]

    def for_reader(self, reader: str) -> list[ReadingCase]:
        """The cases in ``reader``'s order: blinded (drawn from the reader's name) or by risk, highest first."""
        ids = [c.case_id for c in self.cases]
        if self.order == "risk":
            check_reader(reader)
            return [self.cases[i] for i in risk_order(ids, self.risk)]
        return [self.cases[i] for i in reader_order(ids, reader)]

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


def risk_order(case_ids: Sequence[str], risks: Mapping[str, CaseRisk]) -> list[int]:
    """Indices into ``case_ids``, riskiest first; equal risks by case id (so the order is the same at every
    sitting, whatever the list's order on disk). A case without a risk record comes first: nothing says it is
    safe."""
    missing = float("inf")
    return sorted(
        range(len(case_ids)),
        key=lambda i: (-(risks[case_ids[i]].risk if case_ids[i] in risks else missing), case_ids[i]),
    )


def read_risks(folder: str | os.PathLike[str]) -> dict[str, CaseRisk]:
    """The risk records (``*_risk.json``, as ``medimg segment`` writes them beside each mask) under ``folder``,
    by case id. A damaged record is refused naming the file."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError("risk folder not found (the folder medimg segment --tta / an ensemble wrote into)", root)
    found: dict[str, CaseRisk] = {}
    for path in sorted(root.rglob("*_risk.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            case_id = str(record.get("case_id") or path.name[: -len("_risk.json")])
            found[case_id] = CaseRisk(float(record["risk"]), str(record.get("reason", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"not a risk record medimg wrote ({type(exc).__name__}: {exc})", path) from exc
    return found


def read_worklist(
    cases: str | os.PathLike[str],
    split: str = "test",
    *,
    order: str = "blinded",
    risk: str | os.PathLike[str] | Mapping[str, CaseRisk] | None = None,
) -> Worklist:
    """Read a case list: a folder of NIfTI files / DICOM study folders, a ``dataset.json`` (or its folder;
    ``split`` is ``test`` or ``training``), or a CSV ``case_id, image[, label]``.

    ``order="risk"`` (triage, riskiest first) needs ``risk``: the folder of ``<case>_risk.json`` records (or a
    mapping case id -> :class:`CaseRisk`); with the default blinded order, risks given are only shown."""
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "risk" and risk is None:
        raise ConfigError(
            "order='risk' needs the risk records: pass risk=<the folder medimg segment --tta (or an ensemble) wrote>"
        )
    worklist = _read_cases(cases, split)
    worklist.order = order
    if risk is not None:
        worklist.risk = dict(risk) if isinstance(risk, Mapping) else read_risks(risk)
    return worklist


def _read_cases(cases: str | os.PathLike[str], split: str) -> Worklist:
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
