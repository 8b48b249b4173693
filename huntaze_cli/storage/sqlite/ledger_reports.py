"""The cost ledger's report queries on SQLite: rollups and raw events read back.

``LedgerReports`` holds every read of the ``Ledger`` protocol; ``SQLiteLedger`` (ledger.py)
adds the write path. Each query is one short read through the store's ``Database``:
sums and groups are computed in SQL, so only the answer crosses into Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from huntaze_cli.clock import from_micros, micros
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import (
    COUNTER_FIELDS,
    DAILY_COUNTER_FIELDS,
    GROUP_FIELDS,
    LATENCY_BUCKETS,
    SCOPE_FIELDS,
    SCOPE_GROUPS,
    USAGE_FLOAT_FIELDS,
    USAGE_GROUPS,
    USAGE_INT_FIELDS,
    Counters,
    DailyRollup,
    SlotCost,
    SlotRollup,
    UsageRollup,
)
from huntaze_cli.storage.sqlite.db import Database
from huntaze_cli.storage.sqlite.ledger_schema import (
    DAILY_KEYS,
    EVENT_COLUMNS,
    LATENCY_COLUMNS,
    SLOT_KEYS,
    USAGE_KEYS,
    USAGE_SUMS,
)

# Rows per page of events(); each page is its own short read, so a slow consumer never
# pins an old snapshot (which would stop WAL checkpoints) or blocks other threads.
_PAGE = 1000

_SELECT_USAGE = (
    f"SELECT {', '.join((*USAGE_KEYS, *USAGE_SUMS))} FROM rollup_usage WHERE day >= ? AND day < ?"
)
_SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
_SELECT_DAILY = (
    f"SELECT {', '.join((*DAILY_KEYS, *DAILY_COUNTER_FIELDS))} FROM rollup_daily "
    "WHERE day >= ? AND day < ? "
    "ORDER BY day, provider, model, account, campaign_id, tenant, response_model"
)
_SELECT_SLOTS = (
    f"SELECT {', '.join((*SLOT_KEYS, *COUNTER_FIELDS, *LATENCY_COLUMNS))} FROM rollup_slot "
    "WHERE slot >= ? AND slot < ? ORDER BY slot, provider"
)
_SELECT_SLOT_COSTS = (
    "SELECT slot, provider, cost_nano FROM rollup_slot "
    "WHERE slot >= ? AND slot < ? ORDER BY slot, provider"
)
# Slot rollups of one range summed per provider, in SQL: stats and thresholds read only this.
_SUM_SLOTS = (
    "SELECT provider, "
    + ", ".join(f"SUM({c})" for c in (*COUNTER_FIELDS, *LATENCY_COLUMNS))
    + " FROM rollup_slot WHERE slot >= ? AND slot < ? GROUP BY provider"
)

# The same of the scope rollups of one range, to which the scope's filters are added.
_SUM_SCOPE_SLOTS = (
    "SELECT provider, "
    + ", ".join(f"SUM({c})" for c in (*DAILY_COUNTER_FIELDS, *LATENCY_COLUMNS))
    + " FROM rollup_scope WHERE slot >= ? AND slot < ?"
)


# The counters of a grouped rollup query, summed; then the group's columns.
_SUMS = ", ".join(f"SUM({name})" for name in DAILY_COUNTER_FIELDS)
# Absent account/campaign/response model are stored as "" and reported as None; other
# values as text (a scope rollup's slot is an integer).
_NULLABLE = ("account", "campaign_id", "response_model")


def _groups(
    rows: Sequence[Sequence[Any]], columns: Sequence[str]
) -> list[tuple[tuple[str | None, ...], Counters]]:
    """Rows of ``SELECT _SUMS, <columns> ... GROUP BY <columns>`` as (key, counters)."""
    n = len(DAILY_COUNTER_FIELDS)
    nullable = [name in _NULLABLE for name in columns]
    return [
        (
            tuple(
                (v or None) if null else str(v) for v, null in zip(row[n:], nullable, strict=True)
            ),
            Counters(*row[:n]),
        )
        for row in rows
        # Without GROUP BY an empty range still yields one row, of NULL sums.
        if row[0] is not None
    ]


def _ceil_seconds(us: int) -> int:
    return -(-us // 1_000_000)


def _day(value: date) -> str:
    # A datetime is also a date; its ISO string would not compare with stored days.
    return (value.date() if isinstance(value, datetime) else value).isoformat()


class LedgerReports:
    """The reads of the ``Ledger`` protocol, over the ``Database`` a store opened."""

    _db: Database

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
        sql = f"SELECT {', '.join([_SUMS, *columns])} FROM rollup_daily"
        sql += " WHERE day >= ? AND day < ?"
        if columns:
            sql += f" GROUP BY {', '.join(columns)}"
        with self._db.read("reading daily cost rollups") as conn:
            rows = conn.execute(sql, (_day(since), _day(until))).fetchall()
        return _groups(rows, columns)

    def scope_groups(
        self,
        since: datetime,
        until: datetime,
        group_by: Sequence[str],
        where: Mapping[str, str] | None = None,
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        """Scope rollups in ``[since, until)`` filtered by ``where``, summed in SQL."""
        columns = [SCOPE_GROUPS[key] for key in group_by]
        sql = (
            f"SELECT {', '.join([_SUMS, *columns])} FROM rollup_scope WHERE slot >= ? AND slot < ?"
        )
        lo, hi = _ceil_seconds(micros(since)), _ceil_seconds(micros(until))
        params: list[Any] = [lo, hi]
        for key, value in (where or {}).items():
            sql += f" AND {SCOPE_FIELDS[key]} = ?"
            params.append(value)
        if columns:
            sql += f" GROUP BY {', '.join(columns)}"
        with self._db.read("reading scope cost rollups") as conn:
            rows = conn.execute(sql, params).fetchall()
        return _groups(rows, columns)

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
        return self._sum_slots(_SUM_SLOTS, ranges, (), len(COUNTER_FIELDS), "quarter-hour")

    def scope_slot_groups(
        self, ranges: Sequence[tuple[datetime, datetime]], where: Mapping[str, str]
    ) -> list[dict[str, SlotRollup]]:
        """Per range, the scope rollups matching ``where`` summed by provider (in SQL),
        latency histograms included; ``mismatches`` is not kept per scope (0)."""
        sql = _SUM_SCOPE_SLOTS + "".join(f" AND {SCOPE_FIELDS[key]} = ?" for key in where)
        sql += " GROUP BY provider"
        params = tuple(where.values())
        return self._sum_slots(sql, ranges, params, len(DAILY_COUNTER_FIELDS), "scope")

    def _sum_slots(
        self,
        sql: str,
        ranges: Sequence[tuple[datetime, datetime]],
        params: tuple[str, ...],
        counters: int,
        what: str,
    ) -> list[dict[str, SlotRollup]]:
        """Run ``sql`` (provider, ``counters`` counter sums, latency sums; its first two
        parameters a range's bounds, then ``params``) once per range."""
        n = 1 + counters
        out: list[dict[str, SlotRollup]] = []
        with self._db.read(f"reading {what} cost rollups") as conn:
            for start, end in ranges:
                lo, hi = _ceil_seconds(micros(start)), _ceil_seconds(micros(end))
                out.append(
                    {
                        row[0]: SlotRollup(lo, row[0], Counters(*row[1:n]), list(row[n:]))
                        for row in conn.execute(sql, (lo, hi, *params))
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
            name if name in keys else ("MIN(day)" if name == "day" else "''") for name in USAGE_KEYS
        ]
        sql = (
            f"SELECT {', '.join(columns)}, {', '.join(f'SUM({c})' for c in USAGE_SUMS)} "
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
        return [_usage_from_row(row) for row in rows if row[_N_KEYS] is not None]

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
    data = dict(zip(EVENT_COLUMNS, row, strict=True))
    data["ts"] = from_micros(data["ts"])
    data["priced"] = bool(data["priced"])
    # The row was a validated CostEvent when it went in; validating it again would
    # double the cost of an export for nothing.
    return CostEvent.model_construct(**data)


_N_KEYS = len(USAGE_KEYS)
_N_INT = len(USAGE_INT_FIELDS)
_N_FLOAT = len(USAGE_FLOAT_FIELDS)


def _usage_from_row(row: tuple[Any, ...]) -> UsageRollup:
    sums = row[_N_KEYS:]
    lat_end = _N_INT + _N_FLOAT + LATENCY_BUCKETS
    rollup = UsageRollup(
        date.fromisoformat(row[0]), row[1], row[2], row[3] or None, row[4] or None,
        row[5] or None, row[6] or None,
    )  # fmt: skip
    for name, value in zip((*USAGE_INT_FIELDS, *USAGE_FLOAT_FIELDS), sums, strict=False):
        setattr(rollup, name, value)
    rollup.latency = list(sums[_N_INT + _N_FLOAT : lat_end])
    rollup.output = list(sums[lat_end:])
    return rollup
