"""Alert claims in the SQLite ledger file (the ``AlertStore`` of a single host).

Claims live in ``alert_claims``, whose primary key is the whole ``AlertKey``. A claim is
one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` inside a ``BEGIN IMMEDIATE``
transaction: it inserts a new key, or takes over a failed or stale one, and otherwise
changes nothing; the row count says whether this process won. Every process on the host
writes the same file, so two evaluators can never both win.

The table shares the ledger's file (``[ledger] path``), so one backup holds both. Its
first migration carries over the successful sends recorded by earlier versions in the
ledger's ``alerts`` table, so an upgrade mid-period does not alert again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huntaze_cli.errors import BackendError
from huntaze_cli.storage.alerts import CLAIM_LEASE_S, AlertClaim, AlertKey
from huntaze_cli.storage.ratelimit import from_micros, micros
from huntaze_cli.storage.sqlite.db import Migration, open_migrated, sqlite_errors

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
            "SELECT threshold, '', period, 100, channel, 'sent', 'upgrade', "
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
]

_CLAIM = (
    "INSERT INTO alert_claims "
    "(rule, scope, period, level, channel, status, owner, claimed_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, 'claimed', ?, ?, ?) "
    "ON CONFLICT (rule, scope, period, level, channel) DO UPDATE SET "
    "status = 'claimed', owner = excluded.owner, claimed_at = excluded.claimed_at, "
    "updated_at = excluded.updated_at, attempts = attempts + 1, error = NULL "
    "WHERE status = 'failed' OR (status = 'claimed' AND claimed_at <= ?)"
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
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_migrated(
            self.path, ALERT_MIGRATIONS, what="alert store", cache_mb=2
        )

    @classmethod
    def from_config(cls, config: Config) -> SQLiteAlertStore:
        return cls(config.ledger_path)

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite_errors(self.path, doing):
            if self._conn is None:
                raise BackendError(f"{self.path}: the alert store is closed; open it again")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def claim(
        self, key: AlertKey, *, owner: str, now: datetime, lease_s: float = CLAIM_LEASE_S
    ) -> bool:
        now_us = micros(now)
        stale_us = now_us - round(lease_s * 1_000_000)
        with self._transaction("claiming an alert") as conn:
            cursor = conn.execute(_CLAIM, (*_key_values(key), owner, now_us, now_us, stale_us))
            return cursor.rowcount == 1

    def finish(self, key: AlertKey, *, owner: str, now: datetime, error: str | None) -> None:
        status = "sent" if error is None else "failed"
        with self._transaction("recording an alert") as conn:
            conn.execute(_FINISH, (status, micros(now), error, *_key_values(key), owner))

    def claims(self, rule: str, scope: str, period: str) -> list[AlertClaim]:
        with self._transaction("reading alerts") as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE rule = ? AND scope = ? AND period = ? ORDER BY level, channel",
                (rule, scope, period),
            ).fetchall()
        return [_claim_from_row(row) for row in rows]

    def last_sent(self, rule: str, scope: str) -> datetime | None:
        with self._transaction("reading alerts") as conn:
            row = conn.execute(
                "SELECT MAX(updated_at) FROM alert_claims "
                "WHERE rule = ? AND scope = ? AND status = 'sent'",
                (rule, scope),
            ).fetchone()
        return from_micros(row[0]) if row and row[0] is not None else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _key_values(key: AlertKey) -> tuple[Any, ...]:
    return (key.rule, key.scope, key.period, key.level, key.channel)


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
