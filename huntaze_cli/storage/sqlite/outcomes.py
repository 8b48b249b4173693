"""Campaign outcomes (revenue and conversion per fan) in outcomes.db, for ROI.

One row per (campaign_id, recipient_id): importing the same outcome again changes
nothing, importing a changed one replaces it. A whole import is one transaction, so a
file either lands completely or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from huntaze_cli.storage.sqlite.db import Database

_MIGRATIONS = [
    (
        "outcomes_001_table",
        """
        CREATE TABLE outcomes (
            campaign_id TEXT NOT NULL,
            recipient_id TEXT NOT NULL,
            revenue_nano INTEGER NOT NULL,
            converted INTEGER NOT NULL,
            PRIMARY KEY (campaign_id, recipient_id)
        ) WITHOUT ROWID;
        """,
    )
]
# Campaign ids per "IN (...)": far below SQLite's limit of bound parameters.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Outcome:
    campaign_id: str
    recipient_id: str
    revenue_nano: int
    converted: bool


@dataclass(slots=True)
class PutResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(slots=True)
class OutcomeTotals:
    outcomes: int = 0
    revenue_nano: int = 0
    conversions: int = 0


class OutcomeStore:
    """The SQLite outcome store; safe for several processes (WAL, BEGIN IMMEDIATE)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(path, _MIGRATIONS, what="outcome store")

    def put(self, outcomes: Sequence[Outcome]) -> PutResult:
        """Store every outcome in one transaction; counts what changed."""
        result = PutResult()
        with self._db.write("storing outcomes") as conn:
            for o in outcomes:
                row = conn.execute(
                    "SELECT revenue_nano, converted FROM outcomes "
                    "WHERE campaign_id = ? AND recipient_id = ?",
                    (o.campaign_id, o.recipient_id),
                ).fetchone()
                if row is None:
                    result.inserted += 1
                elif tuple(row) == (o.revenue_nano, int(o.converted)):
                    result.unchanged += 1
                    continue
                else:
                    result.updated += 1
                conn.execute(
                    "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?)",
                    (o.campaign_id, o.recipient_id, o.revenue_nano, int(o.converted)),
                )
        return result

    def totals(self, campaign_ids: Iterable[str] | None = None) -> dict[str, OutcomeTotals]:
        """Per campaign: outcomes, revenue and conversions (all campaigns when None)."""
        sql = "SELECT campaign_id, count(*), sum(revenue_nano), sum(converted) FROM outcomes"
        out: dict[str, OutcomeTotals] = {}
        for chunk in self._chunks(campaign_ids):
            where = "" if chunk is None else f" WHERE campaign_id IN ({','.join('?' * len(chunk))})"
            with self._db.read("reading outcomes") as conn:
                rows = conn.execute(sql + where + " GROUP BY campaign_id", chunk or []).fetchall()
            for campaign_id, count, revenue, conversions in rows:
                out[campaign_id] = OutcomeTotals(count, revenue, conversions)
        return out

    def of_campaigns(self, campaign_ids: Iterable[str]) -> Iterator[Outcome]:
        """Every outcome of the named campaigns."""
        for chunk in self._chunks(campaign_ids):
            assert chunk is not None
            marks = ",".join("?" * len(chunk))
            with self._db.read("reading outcomes") as conn:
                rows = conn.execute(
                    "SELECT campaign_id, recipient_id, revenue_nano, converted FROM outcomes "
                    f"WHERE campaign_id IN ({marks})",
                    chunk,
                ).fetchall()
            for row in rows:
                yield Outcome(row[0], row[1], row[2], bool(row[3]))

    @staticmethod
    def _chunks(campaign_ids: Iterable[str] | None) -> Iterator[list[str] | None]:
        if campaign_ids is None:
            yield None
            return
        ids = sorted(set(campaign_ids))
        for start in range(0, len(ids), _CHUNK):
            yield ids[start : start + _CHUNK]

    def close(self) -> None:
        self._db.close()
