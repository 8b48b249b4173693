"""The cost ledger in one SQLite file: the default, single-host backend.

Raw events live in ``events`` (keyed by attempt id, ``ts`` in integer microseconds since
the epoch, UTC); ``rollup_daily`` and ``rollup_slot`` hold the rollups every report reads.
``record`` writes events and rollups in one ``BEGIN IMMEDIATE`` transaction, so several
processes can record into one file and a replayed attempt never counts twice.

This module is the write path (record, prune, check); the tables and migrations are in
ledger_schema.py, the report queries in ledger_reports.py.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

from huntaze_cli.clock import SYSTEM_CLOCK, Clock, micros
from huntaze_cli.errors import BackendError
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import (
    COUNTER_FIELDS,
    DAILY_COUNTER_FIELDS,
    SCOPE_RETENTION_DAYS,
    RecordResult,
    aggregate,
    aggregate_scopes,
    dedupe_batch,
    retention_cutoff,
    slot_of,
)
from huntaze_cli.storage.sqlite.db import Database
from huntaze_cli.storage.sqlite.ledger_reports import LedgerReports
from huntaze_cli.storage.sqlite.ledger_schema import (
    DAILY_KEYS,
    EVENT_COLUMNS,
    LATENCY_COLUMNS,
    LEDGER_MIGRATIONS,
    SCOPE_KEYS,
    SLOT_KEYS,
    upsert_sql,
    upsert_usage,
)

if TYPE_CHECKING:
    from huntaze_cli.config import Config

__all__ = ["LEDGER_MIGRATIONS", "SQLiteLedger"]

logger = logging.getLogger(__name__)

# Ids per "SELECT ... IN (...)": far below SQLite's limit of bound parameters.
_ID_CHUNK = 500
# Raw events deleted per prune transaction, so other writers interleave with a big prune.
_PRUNE_CHUNK = 10_000
_PRUNE_EVERY_S = 3600.0

_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)
_UPSERT_DAILY = upsert_sql("rollup_daily", DAILY_KEYS, DAILY_COUNTER_FIELDS)
_UPSERT_SLOT = upsert_sql("rollup_slot", SLOT_KEYS, (*COUNTER_FIELDS, *LATENCY_COLUMNS))
_UPSERT_SCOPE = upsert_sql("rollup_scope", SCOPE_KEYS, (*DAILY_COUNTER_FIELDS, *LATENCY_COLUMNS))
_counter_values = attrgetter(*COUNTER_FIELDS)
_daily_counter_values = attrgetter(*DAILY_COUNTER_FIELDS)
# An events row is the CostEvent's fields in EVENT_COLUMNS order, ts (third) in microseconds.
_BEFORE_TS = attrgetter(*EVENT_COLUMNS[:2])
_AFTER_TS = attrgetter(*EVENT_COLUMNS[3:])


class SQLiteLedger(LedgerReports):
    """The ``Ledger`` protocol on one SQLite file; safe across threads and processes."""

    def __init__(
        self,
        path: Path,
        *,
        retention_days: int = 30,
        rollup_retention_days: int = 400,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.path = Path(path)
        self.retention_days = retention_days
        self.rollup_retention_days = rollup_retention_days
        self._clock = clock
        self._next_prune = 0.0
        self._db = Database(self.path, LEDGER_MIGRATIONS, what="cost ledger")

    @classmethod
    def from_config(cls, config: Config) -> SQLiteLedger:
        return cls(
            config.ledger_path,
            retention_days=config.ledger.retention_days,
            rollup_retention_days=config.ledger.rollup_retention_days,
        )

    def __enter__(self) -> SQLiteLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------

    def record(self, events: Sequence[CostEvent]) -> RecordResult:
        """Store events not yet stored and add them to the rollups, atomically."""
        result = RecordResult()
        if not events:
            return result
        cutoff = micros(retention_cutoff(self._clock.now(), self.retention_days))
        fresh: list[CostEvent] = []
        for event in events:
            if micros(event.ts) < cutoff:
                result.expired += 1
            else:
                fresh.append(event)
        unique, result.duplicates = dedupe_batch(fresh)
        if unique:
            with self._db.write("recording cost events") as conn:
                existing = self._existing_ids(conn, [e.attempt_id for e in unique])
                new = [e for e in unique if e.attempt_id not in existing]
                result.duplicates += len(unique) - len(new)
                result.stored = len(new)
                if new:
                    self._insert(conn, new)
        self._maybe_prune()
        return result

    @staticmethod
    def _existing_ids(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT attempt_id FROM events WHERE attempt_id IN ({marks})"
            found.update(row[0] for row in conn.execute(sql, chunk))
        return found

    @staticmethod
    def _insert(conn: sqlite3.Connection, new: list[CostEvent]) -> None:
        try:
            conn.executemany(
                _INSERT_EVENT, [(*_BEFORE_TS(e), micros(e.ts), *_AFTER_TS(e)) for e in new]
            )
            daily, slots = aggregate(new)
            conn.executemany(
                _UPSERT_DAILY, [(*key, *_daily_counter_values(c)) for key, c in daily.items()]
            )
            conn.executemany(
                _UPSERT_SLOT,
                [
                    (s.slot, s.provider, *_counter_values(s.counters), *s.latency)
                    for s in slots.values()
                ],
            )
            upsert_usage(conn, new)
            conn.executemany(
                _UPSERT_SCOPE,
                [
                    (*key, *_daily_counter_values(s.counters), *s.latency)
                    for key, s in aggregate_scopes(new).items()
                ],
            )
        except OverflowError as exc:
            # sqlite3 refuses ints beyond 64 bits; surface it as a rolled-back ledger
            # write rather than a bare OverflowError.
            raise sqlite3.DataError(f"a count or cost does not fit in 64 bits ({exc})") from exc

    def _maybe_prune(self) -> None:
        """Prune at most once per interval per process, so no separate job is needed."""
        if self._clock.monotonic() < self._next_prune:
            return
        self._next_prune = self._clock.monotonic() + _PRUNE_EVERY_S
        try:
            self.prune(self._clock.now())
        except BackendError as exc:
            # The events are committed; a failed clean-up is retried next interval.
            logger.warning("pruning the cost ledger failed: %s", exc)

    def prune(self, now: datetime) -> None:
        """Delete raw events past retention and rollups past rollup retention."""
        cutoff = micros(retention_cutoff(now, self.retention_days))
        while True:
            with self._db.write("pruning old cost events") as conn:
                deleted = conn.execute(
                    "DELETE FROM events WHERE attempt_id IN "
                    "(SELECT attempt_id FROM events WHERE ts < ? LIMIT ?)",
                    (cutoff, _PRUNE_CHUNK),
                ).rowcount
            if deleted < _PRUNE_CHUNK:
                break
        # A rollup goes once the whole day or slot it covers is past the cutoff.
        rollup_cutoff = retention_cutoff(now, self.rollup_retention_days)
        with self._db.write("pruning old cost rollups") as conn:
            conn.execute(
                "DELETE FROM rollup_daily WHERE day < ?", (rollup_cutoff.date().isoformat(),)
            )
            conn.execute("DELETE FROM rollup_slot WHERE slot < ?", (slot_of(rollup_cutoff),))
            conn.execute(
                "DELETE FROM rollup_usage WHERE day < ?", (rollup_cutoff.date().isoformat(),)
            )
            scope_cutoff = retention_cutoff(now, max(SCOPE_RETENTION_DAYS, self.retention_days))
            conn.execute("DELETE FROM rollup_scope WHERE slot < ?", (slot_of(scope_cutoff),))

    def check(self) -> None:
        """Raise BackendError unless the ledger is reachable and writable."""
        with self._db.write("checking the cost ledger", commit=False) as conn:
            conn.execute("SELECT count(*) FROM _migrations").fetchone()
            # A real write, rolled back: proves the write lock and the schema, costs nothing.
            conn.execute(
                "INSERT INTO alerts (threshold, period, channel, sent_at, ok) "
                "VALUES ('check', '', '', 0, 0)"
            )

    def close(self) -> None:
        self._db.close()
