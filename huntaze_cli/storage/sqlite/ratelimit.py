"""The per-account compliance rate limiter in one SQLite file: one host, many processes.

The rule (DESIGN.md, invariant 3), made exact. Grants are stamped in integer
microseconds. A grant at ``g`` occupies the window ``(now - per_seconds, now]`` for every
``now`` in ``[g, g + per_seconds)``, so with the grants of an account sorted,

    g[i + messages] - g[i] >= per_seconds        for every i,

which is the same as: every half-open interval ``[t, t + per_seconds)`` holds at most
``messages`` grants. A slot freed by the grant at ``g`` can be taken again at exactly
``g + per_seconds``, no earlier, and ``retry_after_s`` points at that instant. (A
*closed* interval of exactly ``per_seconds`` counts both its ends and so may hold a full
burst at each; no platform counts a minute that way.)

Only the last ``messages`` grants of an account can ever matter, so the log is one row
per account holding them (oldest first): ``acquire`` is one primary-key read and, when
it grants, one upsert, inside one ``BEGIN IMMEDIATE`` transaction. The clock is read
*after* the write lock is taken, so grants of processes on one host are stamped in the
order they commit. Should a clock still go back (a test clock, a stepped system clock),
``now`` is raised to the account's latest grant: grants are never stamped out of order.
Grants that left the window are dropped from the row as it is rewritten; rows of accounts
idle for a day are deleted now and then.

Quotas (``take_quota``) are rows of ``quotas`` by (key, period): read and raised in one
``BEGIN IMMEDIATE`` transaction, deleted by the same pruning once they expire.

``next_slot`` (ratelimit.py) is the decision itself, shared with the DynamoDB limiter so both apply
the same rule to the same stored list.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from huntaze_cli.clock import SYSTEM_CLOCK, Clock, from_micros, micros, seconds_to_micros
from huntaze_cli.storage.ratelimit import (
    IDLE_MARGIN_US,
    Grant,
    next_slot,
    refusal,
    window_micros,
)
from huntaze_cli.storage.sqlite.db import Database, Migration

if TYPE_CHECKING:
    from huntaze_cli.config import Config


# How often one process looks for idle accounts' rows, and how long a row must have been
# idle. The margin is far beyond any window, so a clock stepped back a little never
# finds an account's history gone.
_PRUNE_EVERY_S = 3600.0
_PRUNE_CHUNK = 1000

RATELIMIT_MIGRATIONS: list[Migration] = [
    (
        "ratelimit_001_windows",
        """
        CREATE TABLE windows (
            account TEXT PRIMARY KEY,
            -- the account's last grants (at most `messages`), microseconds since the
            -- epoch, oldest first, separated by spaces (readable with the sqlite3 shell)
            grants TEXT NOT NULL,
            last_us INTEGER NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
    (
        "ratelimit_002_quotas",
        """
        CREATE TABLE quotas (
            key TEXT NOT NULL,
            period TEXT NOT NULL,
            used INTEGER NOT NULL,
            expires_us INTEGER NOT NULL,
            PRIMARY KEY (key, period)
        ) WITHOUT ROWID;
        """,
    ),
]

_SELECT = "SELECT grants FROM windows WHERE account = ?"
_UPSERT = (
    "INSERT INTO windows (account, grants, last_us) VALUES (?, ?, ?) "
    "ON CONFLICT (account) DO UPDATE SET grants = excluded.grants, last_us = excluded.last_us"
)
_PRUNE = (
    "DELETE FROM windows WHERE account IN (SELECT account FROM windows WHERE last_us < ? LIMIT ?)"
)
_QUOTA_USED = "SELECT used FROM quotas WHERE key = ? AND period = ?"
_QUOTA_TAKE = (
    "INSERT INTO quotas (key, period, used, expires_us) VALUES (?, ?, 1, ?) "
    "ON CONFLICT (key, period) DO UPDATE SET used = used + 1"
)
_QUOTA_PRUNE = "DELETE FROM quotas WHERE expires_us < ?"


class SQLiteRateLimiter:
    """The ``RateLimiter`` protocol on one SQLite file; safe across threads and processes."""

    def __init__(
        self,
        path: Path,
        *,
        messages: int = 10,
        per_seconds: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if messages < 1:
            raise ValueError(f"messages must be at least 1, got {messages}")
        self.path = Path(path)
        self.messages = messages
        self.per_seconds = per_seconds
        self._per_us = window_micros(per_seconds)
        self._clock = clock
        self._next_prune = 0.0
        self._db = Database(self.path, RATELIMIT_MIGRATIONS, what="rate limiter")

    @classmethod
    def from_config(cls, config: Config) -> SQLiteRateLimiter:
        """The limiter ``[rate_limit]`` describes (``backend = "sqlite"``)."""
        return cls(
            config.ratelimit_path,
            messages=config.rate_limit.messages,
            per_seconds=config.rate_limit.per_seconds,
        )

    def __enter__(self) -> SQLiteRateLimiter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def acquire(self, account: str, *, now: datetime | None = None) -> Grant:
        """Take a slot for ``account`` if its window has room, else say how long to wait."""
        fixed_us = micros(now) if now is not None else None
        with self._db.write("taking a rate-limit slot") as conn:
            # Read under the write lock: the process that commits first has the
            # earlier stamp.
            now_us = fixed_us if fixed_us is not None else seconds_to_micros(self._clock.time())
            row = conn.execute(_SELECT, (account,)).fetchone()
            stored = [int(us) for us in row[0].split()] if row else []
            slot = next_slot(stored, now_us, messages=self.messages, per_us=self._per_us)
            if slot.at_us is not None:
                text = " ".join(map(str, slot.grants))
                conn.execute(_UPSERT, (account, text, slot.at_us))
                self._maybe_prune(conn, slot.at_us)
        if slot.at_us is None:
            return refusal(slot.wait_us)
        return Grant(True, at=from_micros(slot.at_us))

    def take_quota(self, key: str, period: str, limit: int, *, expires_at: datetime) -> bool:
        """Count one against ``key`` in ``period`` unless ``limit`` are counted already."""
        with self._db.write("counting a delivery quota") as conn:
            row = conn.execute(_QUOTA_USED, (key, period)).fetchone()
            if row is not None and row[0] >= limit:
                return False
            conn.execute(_QUOTA_TAKE, (key, period, micros(expires_at)))
        return True

    def _maybe_prune(self, conn: sqlite3.Connection, now_us: int) -> None:
        """Delete, at most hourly per process, rows of accounts idle for a day.

        Such a row holds no grant inside any window that matters, so deleting it
        changes no decision; it only keeps the file as small as the active accounts.
        Done inside an acquire's transaction (and with its clock) to need no job.
        """
        if self._clock.monotonic() < self._next_prune:
            return
        self._next_prune = self._clock.monotonic() + _PRUNE_EVERY_S
        cutoff = now_us - self._per_us - IDLE_MARGIN_US
        conn.execute(_QUOTA_PRUNE, (now_us,))
        if conn.execute(_PRUNE, (cutoff, _PRUNE_CHUNK)).rowcount >= _PRUNE_CHUNK:
            # More to go: the next acquire takes the next chunk, so no transaction
            # holds the write lock for long.
            self._next_prune = 0.0

    def close(self) -> None:
        self._db.close()
