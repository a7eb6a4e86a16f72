"""Which case order each reader had: blinded random or by risk (triage). A reader who saw the riskiest cases first
reads them with other expectations than one in random order, so the study report says, per reader, which order
(or orders, over several sittings) the answers were given in.

Kept in the review store's SQLite file, in its own table ``reading_orders`` (reader, order, first sitting in UTC),
created when first needed: the answers' table and its schema version are not touched, and concurrent sittings
are serialised by SQLite as the answers are.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone

from medimg.errors import ReviewError

__all__ = ["read_orders", "record_order"]

_TABLE = """CREATE TABLE IF NOT EXISTS reading_orders (
    reader TEXT NOT NULL, case_order TEXT NOT NULL, first_utc TEXT NOT NULL, PRIMARY KEY (reader, case_order))"""


def _connect(store: str | os.PathLike[str]) -> sqlite3.Connection:
    con = sqlite3.connect(store, timeout=30.0, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 30000")
    con.execute(_TABLE)
    return con


def record_order(store: str | os.PathLike[str], reader: str, order: str) -> None:
    """Note that ``reader`` sat with the cases in ``order`` (its name in words); the first sitting's time is kept."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        con = _connect(store)
        try:
            con.execute("INSERT OR IGNORE INTO reading_orders VALUES (?, ?, ?)", (reader, order, now))
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ReviewError(f"cannot record the reader's case order ({exc})", store) from exc


def read_orders(store: str | os.PathLike[str]) -> dict[str, str]:
    """Each reader's case order(s) in words, in the order of their first sittings (``"blinded random, then by
    risk, highest first"``); a reader of a store written before orders were kept is absent."""
    try:
        con = _connect(store)
        try:
            rows = con.execute(
                "SELECT reader, case_order FROM reading_orders ORDER BY first_utc, case_order"
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ReviewError(f"cannot read the readers' case orders ({exc})", store) from exc
    found: dict[str, list[str]] = {}
    for reader, order in rows:
        found.setdefault(str(reader), []).append(str(order))
    return {reader: ", then ".join(orders) for reader, orders in found.items()}
