"""The cost ledger in one SQLite file: the default, single-host backend.

Raw events live in ``events`` (keyed by attempt id, ``ts`` in integer microseconds since
the epoch, UTC); ``rollup_daily`` and ``rollup_slot`` hold the rollups every report reads.
``record`` writes events and rollups in one ``BEGIN IMMEDIATE`` transaction, so several
processes can record into one file and a replayed attempt never counts twice.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import date, datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huntaze_cli.clock import SYSTEM_CLOCK, Clock, from_micros, micros
from huntaze_cli.errors import BackendError
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import (
    COUNTER_FIELDS,
    DAILY_COUNTER_FIELDS,
    GROUP_FIELDS,
    LATENCY_BUCKETS,
    OUTPUT_BUCKETS,
    SCOPE_FIELDS,
    SCOPE_GROUPS,
    SCOPE_RETENTION_DAYS,
    USAGE_FLOAT_FIELDS,
    USAGE_GROUPS,
    USAGE_INT_FIELDS,
    Counters,
    DailyRollup,
    RecordResult,
    SlotCost,
    SlotRollup,
    UsageRollup,
    aggregate,
    aggregate_scopes,
    aggregate_usage,
    dedupe_batch,
    retention_cutoff,
    slot_of,
)
from huntaze_cli.storage.sqlite.db import Database, Migration

if TYPE_CHECKING:
    from huntaze_cli.config import Config

logger = logging.getLogger(__name__)

# Rows are rebuilt positionally as Counters(*row[...]); that needs both in one order,
# and the latest migration's columns.
if tuple(f.name for f in fields(Counters)) != COUNTER_FIELDS:  # pragma: no cover
    raise RuntimeError("Counters fields and COUNTER_FIELDS disagree")

# Ids per "SELECT ... IN (...)": far below SQLite's limit of bound parameters.
_ID_CHUNK = 500
# Rows per page of events(); each page is its own short read, so a slow consumer never
# pins an old snapshot (which would stop WAL checkpoints) or blocks other threads.
_PAGE = 1000
# Raw events deleted per prune transaction, so other writers interleave with a big prune.
_PRUNE_CHUNK = 10_000
_PRUNE_EVERY_S = 3600.0

# The events table's columns are CostEvent's fields, in order (money as cost_nano).
_EVENT_COLUMNS = tuple(CostEvent.model_fields)
_DAILY_KEYS = ("day", "provider", "model", "account", "campaign_id", "tenant", "response_model")
_SLOT_KEYS = ("slot", "provider")
_SCOPE_KEYS = ("slot", "provider", "model", "account", "campaign_id", "tenant")
_LATENCY_COLUMNS = tuple(f"lat_{i}" for i in range(LATENCY_BUCKETS))
_USAGE_KEYS = ("day", "provider", "model", "campaign_id", "experiment", "arm")
_OUTPUT_COLUMNS = tuple(f"out_{i}" for i in range(OUTPUT_BUCKETS))
_USAGE_SUMS = (*USAGE_INT_FIELDS, *USAGE_FLOAT_FIELDS, *_LATENCY_COLUMNS, *_OUTPUT_COLUMNS)


# Migrations are frozen: each spells out the counters that existed when it shipped.
_COUNTERS_001 = (
    "requests",
    "errors",
    "unpriced",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_nano",
)
_COUNTERS_002 = (*_COUNTERS_001, "mismatches")  # rollup_slot; rollup_daily keeps 001's
if _COUNTERS_002 != COUNTER_FIELDS or _COUNTERS_001 != DAILY_COUNTER_FIELDS:  # pragma: no cover
    raise RuntimeError("a new counter needs a migration adding its columns")


def _columns_sql(names: Sequence[str], ctype: str) -> str:
    return ",\n    ".join(f"{name} {ctype} NOT NULL DEFAULT 0" for name in names)


LEDGER_MIGRATIONS: list[Migration] = [
    (
        "ledger_001_tables",
        f"""
        CREATE TABLE events (
            attempt_id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            ts INTEGER NOT NULL,
            provider TEXT NOT NULL,
            deployment TEXT,
            model TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            cached_input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cost_nano INTEGER NOT NULL,
            priced INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            status TEXT NOT NULL,
            error_kind TEXT,
            route_reason TEXT,
            campaign_id TEXT,
            account TEXT,
            tenant TEXT NOT NULL
        ) WITHOUT ROWID;
        -- Holds (ts, attempt_id): the order events() pages in and prune() deletes by.
        CREATE INDEX events_ts ON events (ts);
        CREATE TABLE rollup_daily (
            day TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            account TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            {_columns_sql(_COUNTERS_001, "INTEGER")},
            PRIMARY KEY (day, provider, model, account, campaign_id, tenant)
        ) WITHOUT ROWID;
        CREATE TABLE rollup_slot (
            slot INTEGER NOT NULL,
            provider TEXT NOT NULL,
            {_columns_sql(_COUNTERS_001, "INTEGER")},
            {_columns_sql(_LATENCY_COLUMNS, "INTEGER")},
            PRIMARY KEY (slot, provider)
        ) WITHOUT ROWID;
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            threshold TEXT NOT NULL,
            period TEXT NOT NULL,
            channel TEXT NOT NULL,
            sent_at INTEGER NOT NULL,
            ok INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX alerts_period ON alerts (threshold, period, sent_at);
        CREATE INDEX alerts_ok ON alerts (threshold, ok, sent_at);
        """,
    ),
    (
        "ledger_002_experiments_usage",
        f"""
        ALTER TABLE events ADD COLUMN experiment TEXT;
        ALTER TABLE events ADD COLUMN arm TEXT;
        CREATE TABLE rollup_usage (
            day TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            experiment TEXT NOT NULL,
            arm TEXT NOT NULL,
            {_columns_sql(USAGE_INT_FIELDS, "INTEGER")},
            {_columns_sql(USAGE_FLOAT_FIELDS, "REAL")},
            {_columns_sql(_LATENCY_COLUMNS, "INTEGER")},
            {_columns_sql(_OUTPUT_COLUMNS, "INTEGER")},
            PRIMARY KEY (day, provider, model, campaign_id, experiment, arm)
        ) WITHOUT ROWID;
        -- An experiment report reads only its own rows.
        CREATE INDEX rollup_usage_experiment ON rollup_usage (experiment, day);
        """,
    ),
    # Usage rollups of the events stored before they existed (raw events are kept
    # retention_days, so this touches at most that window, once).
    ("ledger_003_usage_backfill", lambda conn: _backfill_usage(conn)),
    (
        # The model the provider said served each attempt, a daily rollup key of its own
        # (a primary key cannot grow in place, so the table is rebuilt; rollups are few),
        # and the count of attempts served by another model than the one mapped.
        "ledger_004_response_model",
        f"""
        ALTER TABLE events ADD COLUMN response_model TEXT;
        CREATE TABLE rollup_daily_new (
            day TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            account TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            response_model TEXT NOT NULL,
            {_columns_sql(_COUNTERS_001, "INTEGER")},
            PRIMARY KEY (day, provider, model, account, campaign_id, tenant, response_model)
        ) WITHOUT ROWID;
        INSERT INTO rollup_daily_new
            (day, provider, model, account, campaign_id, tenant, response_model,
             {", ".join(_COUNTERS_001)})
            SELECT day, provider, model, account, campaign_id, tenant, '',
                   {", ".join(_COUNTERS_001)}
            FROM rollup_daily;
        DROP TABLE rollup_daily;
        ALTER TABLE rollup_daily_new RENAME TO rollup_daily;
        ALTER TABLE rollup_slot ADD COLUMN mismatches INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        "ledger_005_scope_rollup",
        # Filled from the raw events still kept, so rules see the current month at once.
        f"""
        CREATE TABLE rollup_scope (
            slot INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            account TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            {_columns_sql(_COUNTERS_001, "INTEGER")},
            PRIMARY KEY (slot, provider, model, account, campaign_id, tenant)
        ) WITHOUT ROWID;
        INSERT INTO rollup_scope
        SELECT ts / 1000000 - (ts / 1000000) % 900, provider, model, COALESCE(account, ''),
               COALESCE(campaign_id, ''), tenant, COUNT(*), SUM(status = 'error'),
               SUM(NOT priced), SUM(input_tokens), SUM(cached_input_tokens),
               SUM(output_tokens), SUM(cost_nano)
        FROM events GROUP BY 1, 2, 3, 4, 5, 6;
        """,
    ),
]


def _upsert_sql(table: str, keys: Sequence[str], counters: Sequence[str]) -> str:
    columns = (*keys, *counters)
    updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in counters)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
)
_UPSERT_DAILY = _upsert_sql("rollup_daily", _DAILY_KEYS, DAILY_COUNTER_FIELDS)
_UPSERT_SLOT = _upsert_sql("rollup_slot", _SLOT_KEYS, (*COUNTER_FIELDS, *_LATENCY_COLUMNS))
_UPSERT_USAGE = _upsert_sql("rollup_usage", _USAGE_KEYS, _USAGE_SUMS)
_SELECT_USAGE = (
    f"SELECT {', '.join((*_USAGE_KEYS, *_USAGE_SUMS))} FROM rollup_usage WHERE day >= ? AND day < ?"
)
_UPSERT_SCOPE = _upsert_sql("rollup_scope", _SCOPE_KEYS, DAILY_COUNTER_FIELDS)
_SELECT_EVENTS = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM events"
_SELECT_DAILY = (
    f"SELECT {', '.join((*_DAILY_KEYS, *DAILY_COUNTER_FIELDS))} FROM rollup_daily "
    "WHERE day >= ? AND day < ? "
    "ORDER BY day, provider, model, account, campaign_id, tenant, response_model"
)
_SELECT_SLOTS = (
    f"SELECT {', '.join((*_SLOT_KEYS, *COUNTER_FIELDS, *_LATENCY_COLUMNS))} FROM rollup_slot "
    "WHERE slot >= ? AND slot < ? ORDER BY slot, provider"
)
_SELECT_SLOT_COSTS = (
    "SELECT slot, provider, cost_nano FROM rollup_slot "
    "WHERE slot >= ? AND slot < ? ORDER BY slot, provider"
)
# Slot rollups of one range summed per provider, in SQL: stats and thresholds read only this.
_SUM_SLOTS = (
    "SELECT provider, "
    + ", ".join(f"SUM({c})" for c in (*COUNTER_FIELDS, *_LATENCY_COLUMNS))
    + " FROM rollup_slot WHERE slot >= ? AND slot < ? GROUP BY provider"
)
_counter_values = attrgetter(*COUNTER_FIELDS)
_daily_counter_values = attrgetter(*DAILY_COUNTER_FIELDS)
# An events row is the CostEvent's fields in _EVENT_COLUMNS order, ts (third) in microseconds.
_BEFORE_TS = attrgetter(*_EVENT_COLUMNS[:2])
_AFTER_TS = attrgetter(*_EVENT_COLUMNS[3:])


def _ceil_seconds(us: int) -> int:
    return -(-us // 1_000_000)


def _day(value: date) -> str:
    # A datetime is also a date; its ISO string would not compare with stored days.
    return (value.date() if isinstance(value, datetime) else value).isoformat()


class SQLiteLedger:
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
            _upsert_usage(conn, new)
            conn.executemany(
                _UPSERT_SCOPE,
                [(*key, *_daily_counter_values(c)) for key, c in aggregate_scopes(new).items()],
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

    # --- reading ------------------------------------------------------------------

    def daily(self, since: date, until: date) -> list[DailyRollup]:
        """Daily rollups with ``since <= day < until``."""
        with self._db.read("reading daily cost rollups") as conn:
            rows = conn.execute(_SELECT_DAILY, (_day(since), _day(until))).fetchall()
        days: dict[str, date] = {}
        result = []
        for row in rows:
            day = days.get(row[0])
            if day is None:
                day = days[row[0]] = date.fromisoformat(row[0])
            result.append(
                DailyRollup(
                    day,
                    row[1],
                    row[2],
                    row[3] or None,
                    row[4] or None,
                    row[5],
                    Counters(*row[7:]),
                    row[6] or None,
                )
            )
        return result

    def daily_groups(
        self, since: date, until: date, group_by: Sequence[str]
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        """Daily rollups with ``since <= day < until`` summed by GROUP_FIELDS keys, in SQL.

        Same answer as ``group_daily(self.daily(since, until), group_by)``: only the
        groups cross into Python, not every rollup row of the range.
        """
        columns = [GROUP_FIELDS[key] for key in group_by]
        sums = ", ".join(f"SUM({name})" for name in DAILY_COUNTER_FIELDS)
        sql = f"SELECT {', '.join([sums, *columns])} FROM rollup_daily"
        sql += " WHERE day >= ? AND day < ?"
        if columns:
            sql += f" GROUP BY {', '.join(columns)}"
        with self._db.read("reading daily cost rollups") as conn:
            rows = conn.execute(sql, (_day(since), _day(until))).fetchall()
        n = len(DAILY_COUNTER_FIELDS)
        # Absent account/campaign are stored as "" and reported as None, as in daily().
        nullable = [name in ("account", "campaign_id", "response_model") for name in columns]
        return [
            (
                tuple(
                    (v or None) if null else v for v, null in zip(row[n:], nullable, strict=True)
                ),
                Counters(*row[:n]),
            )
            for row in rows
            # Without GROUP BY an empty range still yields one row, of NULL sums.
            if row[0] is not None
        ]

    def scope_groups(
        self,
        since: datetime,
        until: datetime,
        group_by: Sequence[str],
        where: Mapping[str, str] | None = None,
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        """Scope rollups in ``[since, until)`` filtered by ``where``, summed in SQL."""
        columns = [SCOPE_GROUPS[key] for key in group_by]
        sums = ", ".join(f"SUM({name})" for name in DAILY_COUNTER_FIELDS)
        sql = f"SELECT {', '.join([sums, *columns])} FROM rollup_scope WHERE slot >= ? AND slot < ?"
        lo, hi = _ceil_seconds(micros(since)), _ceil_seconds(micros(until))
        params: list[Any] = [lo, hi]
        for key, value in (where or {}).items():
            sql += f" AND {SCOPE_FIELDS[key]} = ?"
            params.append(value)
        if columns:
            sql += f" GROUP BY {', '.join(columns)}"
        with self._db.read("reading scope cost rollups") as conn:
            rows = conn.execute(sql, params).fetchall()
        n = len(DAILY_COUNTER_FIELDS)
        nullable = [name in ("account", "campaign_id") for name in columns]
        return [
            (
                tuple(
                    (v or None) if null else str(v)
                    for v, null in zip(row[n:], nullable, strict=True)
                ),
                Counters(*row[:n]),
            )
            for row in rows
            if row[0] is not None
        ]

    def slots(self, since: datetime, until: datetime) -> list[SlotRollup]:
        """Quarter-hour rollups whose slot starts in ``[since, until)``."""
        lo, hi = _ceil_seconds(micros(since)), _ceil_seconds(micros(until))
        with self._db.read("reading quarter-hour cost rollups") as conn:
            rows = conn.execute(_SELECT_SLOTS, (lo, hi)).fetchall()
        n = 2 + len(COUNTER_FIELDS)
        return [SlotRollup(row[0], row[1], Counters(*row[2:n]), list(row[n:])) for row in rows]

    def slot_costs(self, since: datetime, until: datetime) -> list[SlotCost]:
        """``(slot, provider, cost_nano)`` of each quarter-hour rollup in ``[since, until)``."""
        lo, hi = _ceil_seconds(micros(since)), _ceil_seconds(micros(until))
        with self._db.read("reading quarter-hour cost rollups") as conn:
            return conn.execute(_SELECT_SLOT_COSTS, (lo, hi)).fetchall()

    def slot_groups(
        self, ranges: Sequence[tuple[datetime, datetime]]
    ) -> list[dict[str, SlotRollup]]:
        """Per ``[start, end)`` range, slot rollups summed by provider (in SQL)."""
        n = 1 + len(COUNTER_FIELDS)
        out: list[dict[str, SlotRollup]] = []
        with self._db.read("reading quarter-hour cost rollups") as conn:
            for start, end in ranges:
                lo, hi = _ceil_seconds(micros(start)), _ceil_seconds(micros(end))
                out.append(
                    {
                        row[0]: SlotRollup(lo, row[0], Counters(*row[1:n]), list(row[n:]))
                        for row in conn.execute(_SUM_SLOTS, (lo, hi))
                    }
                )
        return out

    def usage(
        self, since: date, until: date, *, experiment: str | None = None
    ) -> list[UsageRollup]:
        """Usage rollups with ``since <= day < until`` (of one experiment if named)."""
        sql, params = _SELECT_USAGE, [_day(since), _day(until)]
        if experiment is not None:
            sql += " AND experiment = ?"
            params.append(experiment)
        with self._db.read("reading usage rollups") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_usage_from_row(row) for row in rows]

    def usage_groups(
        self,
        since: date,
        until: date,
        group_by: Sequence[str],
        *,
        experiment: str | None = None,
    ) -> list[UsageRollup]:
        """Usage rollups summed by USAGE_GROUPS keys, in SQL: only the groups cross over."""
        keys = [USAGE_GROUPS[key] for key in group_by]
        columns = [
            name if name in keys else ("MIN(day)" if name == "day" else "''")
            for name in _USAGE_KEYS
        ]
        sql = (
            f"SELECT {', '.join(columns)}, {', '.join(f'SUM({c})' for c in _USAGE_SUMS)} "
            "FROM rollup_usage WHERE day >= ? AND day < ?"
        )
        params: list[Any] = [_day(since), _day(until)]
        if experiment is not None:
            sql += " AND experiment = ?"
            params.append(experiment)
        if keys:
            sql += f" GROUP BY {', '.join(keys)}"
        with self._db.read("reading usage rollups") as conn:
            rows = conn.execute(sql, params).fetchall()
        # Without GROUP BY an empty range still yields one row, of NULL sums.
        return [_usage_from_row(row) for row in rows if row[6] is not None]

    def events(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[CostEvent]:
        """Raw events with ``since <= ts < until``, oldest first, streamed."""
        hi = micros(until) if until is not None else None
        # Keyset pagination on (ts, attempt_id), the order of the events_ts index.
        after: tuple[int, str] | None = None
        lo = micros(since) if since is not None else None
        while True:
            where: list[str] = []
            params: list[Any] = []
            if after is not None:
                where.append("(ts, attempt_id) > (?, ?)")
                params.extend(after)
            elif lo is not None:
                where.append("ts >= ?")
                params.append(lo)
            if hi is not None:
                where.append("ts < ?")
                params.append(hi)
            sql = _SELECT_EVENTS
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY ts, attempt_id LIMIT ?"
            params.append(_PAGE)
            with self._db.read("reading cost events") as conn:
                rows = conn.execute(sql, params).fetchall()
            for row in rows:
                yield _event_from_row(row)
            if len(rows) < _PAGE:
                return
            after = (rows[-1][2], rows[-1][0])


def _event_from_row(row: tuple[Any, ...]) -> CostEvent:
    data = dict(zip(_EVENT_COLUMNS, row, strict=True))
    data["ts"] = from_micros(data["ts"])
    data["priced"] = bool(data["priced"])
    # The row was a validated CostEvent when it went in; validating it again would
    # double the cost of an export for nothing.
    return CostEvent.model_construct(**data)


_N_INT = len(USAGE_INT_FIELDS)
_N_FLOAT = len(USAGE_FLOAT_FIELDS)


def _usage_values(rollup: UsageRollup) -> tuple[Any, ...]:
    return (
        *rollup.key,
        *(getattr(rollup, name) for name in USAGE_INT_FIELDS),
        *(getattr(rollup, name) for name in USAGE_FLOAT_FIELDS),
        *rollup.latency,
        *rollup.output,
    )


def _upsert_usage(conn: sqlite3.Connection, events: Sequence[CostEvent]) -> None:
    conn.executemany(_UPSERT_USAGE, [_usage_values(u) for u in aggregate_usage(events).values()])


def _usage_from_row(row: tuple[Any, ...]) -> UsageRollup:
    sums = row[6:]
    lat_end = _N_INT + _N_FLOAT + LATENCY_BUCKETS
    rollup = UsageRollup(
        date.fromisoformat(row[0]), row[1], row[2], row[3] or None, row[4] or None, row[5] or None
    )
    for name, value in zip((*USAGE_INT_FIELDS, *USAGE_FLOAT_FIELDS), sums, strict=False):
        setattr(rollup, name, value)
    rollup.latency = list(sums[_N_INT + _N_FLOAT : lat_end])
    rollup.output = list(sums[lat_end:])
    return rollup


def _backfill_usage(conn: sqlite3.Connection) -> None:
    """Build usage rollups from the raw events already stored (migration step)."""
    # Only the columns usage rollups read: later migrations may add others.
    columns = (
        "ts", "provider", "model", "campaign_id", "experiment", "arm", "status", "route_reason",
        "cost_nano", "input_tokens", "cached_input_tokens", "output_tokens", "latency_ms",
    )  # fmt: skip
    batch: list[CostEvent] = []
    for row in conn.execute(f"SELECT {', '.join(columns)} FROM events"):
        data = dict(zip(columns, row, strict=True))
        data["ts"] = from_micros(data["ts"])
        batch.append(CostEvent.model_construct(**data))
        if len(batch) >= _PRUNE_CHUNK:
            _upsert_usage(conn, batch)
            batch = []
    _upsert_usage(conn, batch)
