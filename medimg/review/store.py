"""The feedback store: radiologists' answers in SQLite, each tied to the exact model and input of its map.

SQLite in WAL mode with a busy timeout: two notebook kernels (or two readers' Voila pages) writing at once both
succeed; each answer is one transaction. An answer is never overwritten: an amendment is a new row that names
the row it amends (``amends``), so the history of a reader's opinion on a case stays readable. The schema carries
a version (``PRAGMA user_version``); older stores are migrated in place, newer ones are refused untouched.

Schema history: 1 = first release; 2 = adds the ``cannot assess`` verdict and the ``amends`` column.
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

from medimg.errors import ReviewError

__all__ = ["CANNOT_ASSESS", "SCHEMA_VERSION", "VERDICTS", "Feedback", "FeedbackStore"]

SCHEMA_VERSION = 2
#: the verdict of a reader who cannot judge the map (image quality, out of their field, ...)
CANNOT_ASSESS = "cannot assess"
VERDICTS = ("agree", "partly", "disagree", CANNOT_ASSESS)
Verdict = Literal["agree", "partly", "disagree", "cannot assess"]

_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_utc TEXT NOT NULL,
    case_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'partly', 'disagree', 'cannot assess')),
    localisation INTEGER CHECK (localisation BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    checkpoint_sha256 TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    method TEXT NOT NULL,
    layer TEXT NOT NULL,
    label INTEGER NOT NULL,
    sanity_rho REAL,
    amends INTEGER REFERENCES feedback (id)
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS feedback_case ON feedback (case_id);
CREATE INDEX IF NOT EXISTS feedback_checkpoint ON feedback (checkpoint_sha256);
CREATE INDEX IF NOT EXISTS feedback_reviewer ON feedback (reviewer);
"""
#: the columns schema 1 had (all kept by the migration to 2)
_V1_COLUMNS = (
    "id, created_utc, case_id, reviewer, verdict, localisation, comment, checkpoint_sha256, input_sha256, "
    "method, layer, label, sanity_rho"
)


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
    amends: int | None = None  # id of the earlier answer (same reader, same case) this one replaces

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        if self.localisation is not None and not 1 <= self.localisation <= 5:
            raise ReviewError(f"localisation score must be 1..5, got {self.localisation}")
        if not self.reviewer.strip():
            raise ReviewError("reviewer name is required")
        if len(self.checkpoint_sha256) != 64:
            raise ReviewError("checkpoint_sha256 must be a SHA-256 hex digest")


class FeedbackStore:
    """Answers in a SQLite file (default ``data/reviews.sqlite``)."""

    def __init__(self, path: str | os.PathLike[str] = "data/reviews.sqlite", timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                _create_or_migrate(con, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise ReviewError(
                f"cannot open the review store ({exc}); give a writable SQLite file path", self.path
            ) from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            con.execute("PRAGMA journal_mode=WAL")
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

    def all(
        self, case_id: str | None = None, checkpoint_sha256: str | None = None, reviewer: str | None = None
    ) -> list[Feedback]:
        """Every answer (amendments included, oldest first), optionally of one case / checkpoint / reviewer."""
        query, args = "SELECT * FROM feedback WHERE 1=1", list[str]()
        for column, value in (("case_id", case_id), ("checkpoint_sha256", checkpoint_sha256), ("reviewer", reviewer)):
            if value is not None:
                query, args = query + f" AND {column} = ?", [*args, value]
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(query + " ORDER BY id", args).fetchall()
        return [Feedback(**dict(r)) for r in rows]

    def latest(self, reviewer: str | None = None) -> dict[tuple[str, str], Feedback]:
        """The current answer of each (case, reviewer): the last row, amendments replacing what they amend."""
        return {(a.case_id, a.reviewer): a for a in self.all(reviewer=reviewer)}

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


def _create_or_migrate(con: sqlite3.Connection, path: Path) -> None:
    """Bring the database to :data:`SCHEMA_VERSION` in one transaction (two first openers may race)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ReviewError(
                f"review database has schema version {version}, newer than this medimg ({SCHEMA_VERSION}); "
                "upgrade medimg",
                path,
            )
        if version == 1:
            _migrate_1_to_2(con)
        else:
            con.execute(_TABLE.format(name="feedback"))
        for statement in filter(str.strip, _INDEXES.split(";")):
            con.execute(statement)
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _migrate_1_to_2(con: sqlite3.Connection) -> None:
    """SQLite cannot alter a CHECK constraint: copy the rows into a table with the new one."""
    con.execute(_TABLE.format(name="feedback_v2"))
    con.execute(f"INSERT INTO feedback_v2 ({_V1_COLUMNS}) SELECT {_V1_COLUMNS} FROM feedback")
    con.execute("DROP TABLE feedback")
    con.execute("ALTER TABLE feedback_v2 RENAME TO feedback")
