"""The cost ledger's SQLite tables: their columns, their migrations, the usage upsert.

``events`` holds raw events (keyed by attempt id, ``ts`` in integer microseconds since
the epoch, UTC); ``rollup_daily``, ``rollup_slot``, ``rollup_usage`` and ``rollup_scope``
hold the rollups every report reads. The write path (ledger.py) and the report queries
(ledger_reports.py) both name columns from here, so the three cannot drift apart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import Any

from huntaze_cli.clock import from_micros
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import (
    COUNTER_FIELDS,
    DAILY_COUNTER_FIELDS,
    LATENCY_BUCKETS,
    OUTPUT_BUCKETS,
    USAGE_FLOAT_FIELDS,
    USAGE_INT_FIELDS,
    Counters,
    UsageRollup,
    aggregate_usage,
    latency_bucket,
)
from huntaze_cli.storage.sqlite.db import Migration, split_script

# Rows are rebuilt positionally as Counters(*row[...]); that needs both in one order,
# and the latest migration's columns.
if tuple(f.name for f in fields(Counters)) != COUNTER_FIELDS:  # pragma: no cover
    raise RuntimeError("Counters fields and COUNTER_FIELDS disagree")

# Raw events per batch of the usage backfill.
_BACKFILL_BATCH = 10_000

# The events table's columns are CostEvent's fields, in order (money as cost_nano).
EVENT_COLUMNS = tuple(CostEvent.model_fields)
DAILY_KEYS = ("day", "provider", "model", "account", "campaign_id", "tenant", "response_model")
SLOT_KEYS = ("slot", "provider")
SCOPE_KEYS = ("slot", "provider", "model", "account", "campaign_id", "tenant")
LATENCY_COLUMNS = tuple(f"lat_{i}" for i in range(LATENCY_BUCKETS))
USAGE_KEYS = ("day", "provider", "model", "campaign_id", "experiment", "arm", "route_reason")
OUTPUT_COLUMNS = tuple(f"out_{i}" for i in range(OUTPUT_BUCKETS))
USAGE_SUMS = (*USAGE_INT_FIELDS, *USAGE_FLOAT_FIELDS, *LATENCY_COLUMNS, *OUTPUT_COLUMNS)


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
_USAGE_KEYS_002 = USAGE_KEYS[:6]  # rollup_usage before ledger_007 added route_reason


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
            {_columns_sql(LATENCY_COLUMNS, "INTEGER")},
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
            {_columns_sql(LATENCY_COLUMNS, "INTEGER")},
            {_columns_sql(OUTPUT_COLUMNS, "INTEGER")},
            PRIMARY KEY (day, provider, model, campaign_id, experiment, arm)
        ) WITHOUT ROWID;
        -- An experiment report reads only its own rows.
        CREATE INDEX rollup_usage_experiment ON rollup_usage (experiment, day);
        """,
    ),
    # Usage rollups of the events stored before they existed (raw events are kept
    # retention_days, so this touches at most that window, once).
    ("ledger_003_usage_backfill", lambda conn: _backfill_usage(conn, _USAGE_KEYS_002)),
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
    # What a budget changed about a call (a downgraded model, a throttle); no rollup.
    ("ledger_006_budget_action", "ALTER TABLE events ADD COLUMN budget_action TEXT;"),
    # The route reason, a usage rollup key of its own: a campaign's drill-down counts
    # attempts and cost per reason. Rebuilt as in 004, then split from the raw events.
    ("ledger_007_usage_route_reason", lambda conn: _usage_route_reason(conn)),
    # The latency histogram of the quarter-hour rollups, per scope too: a tenant's stats
    # give its own p50/p95 from the same buckets as the global ones. Filled from the raw
    # events still kept; older slots keep an empty histogram (no percentile).
    (
        "ledger_008_scope_latency",
        lambda conn: _add_scope_latency(conn),
    ),
]


def _add_scope_latency(conn: sqlite3.Connection) -> None:
    """Add the latency columns to ``rollup_scope`` and count the kept events in them."""
    for column in LATENCY_COLUMNS:
        conn.execute(f"ALTER TABLE rollup_scope ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    buckets: dict[tuple[Any, ...], list[int]] = {}
    sql = (
        "SELECT ts / 1000000 - (ts / 1000000) % 900, provider, model, COALESCE(account, ''), "
        "COALESCE(campaign_id, ''), tenant, latency_ms FROM events"
    )
    for *key, latency_ms in conn.execute(sql):
        found = buckets.get(tuple(key))
        if found is None:
            found = buckets[tuple(key)] = [0] * LATENCY_BUCKETS
        found[latency_bucket(latency_ms)] += 1
    where = " AND ".join(f"{name} = ?" for name in SCOPE_KEYS)
    update = (
        f"UPDATE rollup_scope SET {', '.join(f'{c} = ?' for c in LATENCY_COLUMNS)} WHERE {where}"
    )
    conn.executemany(update, [(*found, *key) for key, found in buckets.items()])


def upsert_sql(table: str, keys: Sequence[str], counters: Sequence[str]) -> str:
    columns = (*keys, *counters)
    updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in counters)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


UPSERT_USAGE = upsert_sql("rollup_usage", USAGE_KEYS, USAGE_SUMS)


def _usage_values(rollup: UsageRollup, keys: int = len(USAGE_KEYS)) -> tuple[Any, ...]:
    return (
        *rollup.key[:keys],
        *(getattr(rollup, name) for name in USAGE_INT_FIELDS),
        *(getattr(rollup, name) for name in USAGE_FLOAT_FIELDS),
        *rollup.latency,
        *rollup.output,
    )


def upsert_usage(conn: sqlite3.Connection, events: Sequence[CostEvent]) -> None:
    conn.executemany(UPSERT_USAGE, [_usage_values(u) for u in aggregate_usage(events).values()])


def _stored_events(conn: sqlite3.Connection) -> Iterator[list[CostEvent]]:
    """The raw events already stored, in batches, with the fields usage rollups read."""
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
        if len(batch) >= _BACKFILL_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _backfill_usage(conn: sqlite3.Connection, keys: Sequence[str]) -> None:
    """Build usage rollups from the raw events already stored (migration step)."""
    upsert = upsert_sql("rollup_usage", keys, USAGE_SUMS)
    for batch in _stored_events(conn):
        rows = aggregate_usage(batch).values()
        conn.executemany(upsert, [_usage_values(u, len(keys)) for u in rows])


def _usage_route_reason(conn: sqlite3.Connection) -> None:
    """Give usage rollups a route reason key (migration step).

    Every existing rollup moves over under the reason "" (unknown); then the raw events
    still kept are moved from there to their own reason: each one's figures are added
    under its reason and taken off the "" row of the same other keys. What remains under
    "" is the traffic whose raw events are gone (past ``retention_days``).
    """
    keys = ", ".join(_USAGE_KEYS_002)
    sums = ", ".join(USAGE_SUMS)
    script = f"""
        CREATE TABLE rollup_usage_new (
            day TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            experiment TEXT NOT NULL,
            arm TEXT NOT NULL,
            route_reason TEXT NOT NULL,
            {_columns_sql(USAGE_INT_FIELDS, "INTEGER")},
            {_columns_sql(USAGE_FLOAT_FIELDS, "REAL")},
            {_columns_sql(LATENCY_COLUMNS, "INTEGER")},
            {_columns_sql(OUTPUT_COLUMNS, "INTEGER")},
            PRIMARY KEY ({keys}, route_reason)
        ) WITHOUT ROWID;
        INSERT INTO rollup_usage_new ({keys}, route_reason, {sums})
            SELECT {keys}, '', {sums} FROM rollup_usage;
        DROP TABLE rollup_usage;
        ALTER TABLE rollup_usage_new RENAME TO rollup_usage;
        CREATE INDEX rollup_usage_experiment ON rollup_usage (experiment, day);
    """
    for statement in split_script(script):
        conn.execute(statement)
    upsert = upsert_sql("rollup_usage", (*_USAGE_KEYS_002, "route_reason"), USAGE_SUMS)
    for batch in _stored_events(conn):
        rows = [_usage_values(u) for u in aggregate_usage(batch).values()]
        conn.executemany(upsert, rows)
        conn.executemany(upsert, [(*row[:6], "", *(-v for v in row[7:])) for row in rows])
    conn.execute("DELETE FROM rollup_usage WHERE route_reason = '' AND attempts <= 0")
