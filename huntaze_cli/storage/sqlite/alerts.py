"""Alert claims in the SQLite ledger file (the ``AlertStore`` of a single host).

Claims live in ``alert_claims``, whose primary key is the whole ``AlertKey``; the history
in ``alert_history`` (by alert id, indexed by time, rule and tenant) and stored rules in
``alert_rules``. A claim is
one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` inside a ``BEGIN IMMEDIATE``
transaction: it inserts a new key, or takes over a failed or stale one, and otherwise
changes nothing; the row count says whether this process won. Every process on the host
writes the same file, so two evaluators can never both win.

The table shares the ledger's file (``[ledger] path``), so one backup holds both. Its
first migration carries over the successful sends recorded by earlier versions in the
ledger's ``alerts`` table, so an upgrade mid-period does not alert again.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huntaze_cli.clock import from_micros, micros
from huntaze_cli.storage.alerts import CLAIM_LEASE_S, AlertClaim, AlertEntry, AlertKey
from huntaze_cli.storage.sqlite.db import Database, Migration

if TYPE_CHECKING:
    from huntaze_cli.config import Config

_KEY_COLUMNS = ("rule", "scope", "period", "level", "channel")


def _carry_over_sent_alerts(conn: sqlite3.Connection) -> None:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alerts'"
    ).fetchone()
    if exists:
        conn.execute(
            "INSERT OR IGNORE INTO alert_claims "
            "(rule, scope, period, level, channel, status, owner, claimed_at, updated_at) "
            # Earlier versions named the global thresholds "daily" and "monthly".
            "SELECT 'global-' || threshold, '', period, 100, channel, 'sent', 'upgrade', "
            "MIN(sent_at), MIN(sent_at) FROM alerts WHERE ok = 1 "
            "GROUP BY threshold, period, channel"
        )


ALERT_MIGRATIONS: list[Migration] = [
    (
        "alerts_001_claims",
        """
        CREATE TABLE alert_claims (
            rule TEXT NOT NULL,
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            level INTEGER NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL,          -- claimed | sent | failed
            owner TEXT NOT NULL,
            claimed_at INTEGER NOT NULL,   -- microseconds since the epoch, UTC
            updated_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 1,
            error TEXT,
            PRIMARY KEY (rule, scope, period, level, channel)
        ) WITHOUT ROWID;
        CREATE INDEX alert_claims_sent ON alert_claims (rule, scope, status, updated_at);
        """,
    ),
    ("alerts_002_carry_over_sent", _carry_over_sent_alerts),
    (
        "alerts_003_history_and_rules",
        """
        CREATE INDEX alert_claims_held ON alert_claims (channel, status, updated_at);
        CREATE TABLE alert_history (
            alert_id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            kind TEXT NOT NULL,
            scope TEXT NOT NULL,
            scope_json TEXT NOT NULL,
            tenant TEXT,
            period TEXT NOT NULL,
            period_label TEXT NOT NULL,
            period_start INTEGER NOT NULL,
            level INTEGER NOT NULL,
            limit_nano INTEGER NOT NULL,
            observed_nano INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            acked_at INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX alert_history_created ON alert_history (created_at);
        CREATE INDEX alert_history_rule ON alert_history (rule, created_at);
        CREATE INDEX alert_history_tenant ON alert_history (tenant, created_at);
        CREATE TABLE alert_rules (
            name TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
]

_CLAIM = (
    "INSERT INTO alert_claims "
    "(rule, scope, period, level, channel, status, owner, claimed_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, 'claimed', ?, ?, ?) "
    "ON CONFLICT (rule, scope, period, level, channel) DO UPDATE SET "
    "status = 'claimed', owner = excluded.owner, claimed_at = excluded.claimed_at, "
    "updated_at = excluded.updated_at, attempts = attempts + 1, error = NULL "
    "WHERE status IN ('failed', 'suppressed') OR (status = 'claimed' AND claimed_at <= ?)"
)
_SUPPRESS = (
    "INSERT INTO alert_claims "
    "(rule, scope, period, level, channel, status, owner, claimed_at, updated_at, attempts) "
    "VALUES (?, ?, ?, ?, ?, 'suppressed', '', ?, ?, 0) "
    "ON CONFLICT (rule, scope, period, level, channel) DO UPDATE SET "
    "status = 'suppressed', updated_at = excluded.updated_at WHERE status = 'failed'"
)
_HISTORY_COLUMNS = (
    "alert_id, rule, kind, scope, scope_json, tenant, period, period_label, period_start, "
    "level, limit_nano, observed_nano, created_at, acked_at"
)
_FINISH = (
    "UPDATE alert_claims SET status = ?, updated_at = ?, error = ? "
    "WHERE rule = ? AND scope = ? AND period = ? AND level = ? AND channel = ? "
    "AND owner = ? AND status = 'claimed'"
)
_SELECT = (
    "SELECT rule, scope, period, level, channel, status, owner, claimed_at, updated_at, "
    "attempts, error FROM alert_claims"
)


class SQLiteAlertStore:
    """The ``AlertStore`` protocol on the ledger's SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = Database(self.path, ALERT_MIGRATIONS, what="alert store", cache_mb=2)

    @classmethod
    def from_config(cls, config: Config) -> SQLiteAlertStore:
        return cls(config.ledger_path)

    def claim(
        self, key: AlertKey, *, owner: str, now: datetime, lease_s: float = CLAIM_LEASE_S
    ) -> bool:
        now_us = micros(now)
        stale_us = now_us - round(lease_s * 1_000_000)
        with self._db.write("claiming an alert") as conn:
            cursor = conn.execute(_CLAIM, (*_key_values(key), owner, now_us, now_us, stale_us))
            return cursor.rowcount == 1

    def finish(self, key: AlertKey, *, owner: str, now: datetime, error: str | None) -> None:
        status = "sent" if error is None else "failed"
        with self._db.write("recording an alert") as conn:
            conn.execute(_FINISH, (status, micros(now), error, *_key_values(key), owner))

    def claims(self, rule: str, scope: str, period: str) -> list[AlertClaim]:
        with self._db.read("reading alerts") as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE rule = ? AND scope = ? AND period = ? ORDER BY level, channel",
                (rule, scope, period),
            ).fetchall()
        return [_claim_from_row(row) for row in rows]

    def last_sent(self, rule: str, scope: str, channel: str | None = None) -> datetime | None:
        sql = (
            "SELECT MAX(updated_at) FROM alert_claims "
            "WHERE rule = ? AND scope = ? AND status = 'sent'"
        )
        params: list[Any] = [rule, scope]
        if channel is not None:
            sql += " AND channel = ?"
            params.append(channel)
        with self._db.read("reading alerts") as conn:
            row = conn.execute(sql, params).fetchone()
        return from_micros(row[0]) if row and row[0] is not None else None

    def suppress(self, key: AlertKey, *, now: datetime) -> None:
        now_us = micros(now)
        with self._db.write("recording a held-back alert") as conn:
            conn.execute(_SUPPRESS, (*_key_values(key), now_us, now_us))

    def suppressed(self, channel: str) -> list[AlertClaim]:
        with self._db.read("reading held-back alerts") as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE channel = ? AND status = 'suppressed' ORDER BY updated_at",
                (channel,),
            ).fetchall()
        return [_claim_from_row(row) for row in rows]

    def record_alert(self, entry: AlertEntry) -> None:
        with self._db.write("recording an alert") as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO alert_history ({_HISTORY_COLUMNS}) "
                f"VALUES ({', '.join('?' * 14)})",
                (
                    entry.alert_id,
                    entry.rule,
                    entry.kind,
                    entry.scope,
                    json.dumps(entry.scope_values, sort_keys=True),
                    entry.scope_values.get("tenant"),
                    entry.period,
                    entry.period_label,
                    micros(entry.period_start),
                    entry.level_pct,
                    entry.limit_nano,
                    entry.observed_nano,
                    micros(entry.created_at),
                    None if entry.acked_at is None else micros(entry.acked_at),
                ),
            )

    def history(
        self,
        *,
        since: datetime,
        rule: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[AlertEntry]:
        sql = f"SELECT {_HISTORY_COLUMNS} FROM alert_history WHERE created_at >= ?"
        params: list[Any] = [micros(since)]
        if rule is not None:
            sql += " AND rule = ?"
            params.append(rule)
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)
        sql += " ORDER BY created_at DESC, alert_id LIMIT ?"
        params.append(limit)
        # One transaction: the entries and their channels' claims from one snapshot.
        with self._db.write("reading the alert history") as conn:
            entries = [_entry_from_row(row) for row in conn.execute(sql, params).fetchall()]
            for entry in entries:
                for row in conn.execute(
                    f"{_SELECT} WHERE rule = ? AND scope = ? AND period = ? AND level = ?",
                    (entry.rule, entry.scope, entry.period_label, entry.level_pct),
                ):
                    claim = _claim_from_row(row)
                    entry.channels[claim.key.channel] = claim
        return entries

    def get_alert(self, alert_id: str) -> AlertEntry | None:
        with self._db.write("reading the alert history") as conn:
            row = conn.execute(
                f"SELECT {_HISTORY_COLUMNS} FROM alert_history WHERE alert_id = ?", (alert_id,)
            ).fetchone()
            if row is None:
                return None
            entry = _entry_from_row(row)
            for claim_row in conn.execute(
                f"{_SELECT} WHERE rule = ? AND scope = ? AND period = ? AND level = ?",
                (entry.rule, entry.scope, entry.period_label, entry.level_pct),
            ):
                claim = _claim_from_row(claim_row)
                entry.channels[claim.key.channel] = claim
        return entry

    def ack(self, alert_id: str, *, now: datetime) -> bool:
        with self._db.write("acknowledging an alert") as conn:
            cursor = conn.execute(
                "UPDATE alert_history SET acked_at = COALESCE(acked_at, ?) WHERE alert_id = ?",
                (micros(now), alert_id),
            )
            return cursor.rowcount == 1

    def put_rule(self, name: str, body: dict[str, Any], *, now: datetime) -> None:
        with self._db.write("storing an alert rule") as conn:
            conn.execute(
                "INSERT INTO alert_rules (name, body, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET body = excluded.body, "
                "updated_at = excluded.updated_at",
                (name, json.dumps(body, sort_keys=True), micros(now)),
            )

    def delete_rule(self, name: str) -> bool:
        with self._db.write("deleting an alert rule") as conn:
            return conn.execute("DELETE FROM alert_rules WHERE name = ?", (name,)).rowcount == 1

    def rules(self) -> list[dict[str, Any]]:
        with self._db.read("reading alert rules") as conn:
            rows = conn.execute("SELECT body FROM alert_rules ORDER BY name").fetchall()
        return [json.loads(row[0]) for row in rows]

    def prune(self, *, now: datetime, history_days: int) -> None:
        cutoff = micros(now) - history_days * 86_400 * 1_000_000
        with self._db.write("pruning the alert history") as conn:
            conn.execute("DELETE FROM alert_history WHERE created_at < ?", (cutoff,))
            conn.execute(
                "DELETE FROM alert_claims WHERE updated_at < ? AND status != 'claimed'",
                (cutoff,),
            )

    def close(self) -> None:
        self._db.close()


def _key_values(key: AlertKey) -> tuple[Any, ...]:
    return (key.rule, key.scope, key.period, key.level, key.channel)


def _entry_from_row(row: tuple[Any, ...]) -> AlertEntry:
    return AlertEntry(
        alert_id=row[0],
        rule=row[1],
        kind=row[2],
        scope=row[3],
        scope_values=json.loads(row[4]),
        period=row[6],
        period_label=row[7],
        period_start=from_micros(row[8]),
        level_pct=row[9],
        limit_nano=row[10],
        observed_nano=row[11],
        created_at=from_micros(row[12]),
        acked_at=None if row[13] is None else from_micros(row[13]),
    )


def _claim_from_row(row: tuple[Any, ...]) -> AlertClaim:
    return AlertClaim(
        key=AlertKey(*row[:5]),
        status=row[5],
        owner=row[6],
        claimed_at=from_micros(row[7]),
        updated_at=from_micros(row[8]),
        attempts=row[9],
        error=row[10],
    )
