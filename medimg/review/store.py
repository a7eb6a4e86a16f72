"""The feedback store: radiologists' answers in SQLite, each tied to the exact model and input of its map.

SQLite in WAL mode with a busy timeout: two notebook kernels (or processes) writing at once both succeed;
each answer is one transaction. The schema carries a version (``PRAGMA user_version``) so later medimg versions
can migrate it instead of guessing.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from medimg.errors import MedimgError

__all__ = ["SCHEMA_VERSION", "VERDICTS", "Feedback", "FeedbackStore"]

SCHEMA_VERSION = 1
VERDICTS = ("agree", "partly", "disagree")
Verdict = Literal["agree", "partly", "disagree"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_utc TEXT NOT NULL,
    case_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'partly', 'disagree')),
    localisation INTEGER CHECK (localisation BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    checkpoint_sha256 TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    method TEXT NOT NULL,
    layer TEXT NOT NULL,
    label INTEGER NOT NULL,
    sanity_rho REAL
);
CREATE INDEX IF NOT EXISTS feedback_case ON feedback (case_id);
CREATE INDEX IF NOT EXISTS feedback_checkpoint ON feedback (checkpoint_sha256);
"""


@dataclass(frozen=True)
class Feedback:
    """One answer: the verdict on a heatmap, and what identifies the map it was given on."""

    case_id: str
    reviewer: str
    verdict: Verdict
    checkpoint_sha256: str
    input_sha256: str
    method: str
    layer: str
    label: int = 1
    localisation: int | None = None  # 1 (map misses the finding) .. 5 (map on the finding)
    comment: str = ""
    sanity_rho: float | None = None
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    id: int | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise MedimgError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        if self.localisation is not None and not 1 <= self.localisation <= 5:
            raise MedimgError(f"localisation score must be 1..5, got {self.localisation}")
        if not self.reviewer.strip():
            raise MedimgError("reviewer name is required")
        if len(self.checkpoint_sha256) != 64:
            raise MedimgError("checkpoint_sha256 must be a SHA-256 hex digest")


class FeedbackStore:
    """Answers in a SQLite file (default ``data/reviews.sqlite``)."""

    def __init__(self, path: str | os.PathLike[str] = "data/reviews.sqlite", timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise MedimgError(
                    f"review database has schema version {version}, newer than this medimg ({SCHEMA_VERSION}); "
                    "upgrade medimg",
                    self.path,
                )
            con.executescript(_SCHEMA)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            yield con
        finally:
            con.close()

    @property
    def schema_version(self) -> int:
        with self._connect() as con:
            return int(con.execute("PRAGMA user_version").fetchone()[0])

    def add(self, fb: Feedback) -> int:
        """Store one answer (its own transaction); returns its id."""
        row = {k: v for k, v in asdict(fb).items() if k != "id"}
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute(f"INSERT INTO feedback ({cols}) VALUES ({marks})", tuple(row.values()))
            con.execute("COMMIT")
            return int(cur.lastrowid or 0)

    def all(self, case_id: str | None = None, checkpoint_sha256: str | None = None) -> list[Feedback]:
        query, args = "SELECT * FROM feedback WHERE 1=1", list[str]()
        if case_id is not None:
            query, args = query + " AND case_id = ?", [*args, case_id]
        if checkpoint_sha256 is not None:
            query, args = query + " AND checkpoint_sha256 = ?", [*args, checkpoint_sha256]
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(query + " ORDER BY id", args).fetchall()
        return [Feedback(**dict(r)) for r in rows]

    def to_csv(self) -> str:
        """All answers as CSV text (one row per answer, every column)."""
        rows = self.all()
        buf = io.StringIO()
        fields = [f for f in Feedback.__dataclass_fields__ if f != "id"]
        writer = csv.DictWriter(buf, fieldnames=["id", *fields])
        writer.writeheader()
        for r in rows:
            writer.writerow(asdict(r))
        return buf.getvalue()
