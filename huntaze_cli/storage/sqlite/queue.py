"""The delivery queue in one SQLite file: the default, single-host backend.

``items`` holds every message not yet delivered, in one of three states:

* ``queued``: waiting; may be leased once ``due_at`` has passed.
* ``leased``: a worker holds it until ``leased_until``. ``due_at`` is set to the same
  time, so "due" means ``due_at <= now`` in both states and one index serves the lease
  query: an expired lease is simply due again, and a crashed worker loses nothing.
* ``dead``: ``max_attempts`` deliveries failed, or one failed for good; kept with its
  last error until ``requeue_dead``.

``delivered`` remembers the keys acked lately, so enqueueing a key that was queued,
leased, dead or delivered before never adds it twice; ``ack`` deletes the item and
records its key in one transaction. A key is needed only while a copy of its message
could still come back: a crash between enqueue and the campaign store's ``queued``
mark re-enqueues it on resume, within a lease or retry window. So every
``PRUNE_EVERY`` acks forget keys older than ``delivered_keep_s`` (by default twice the
longest retry schedule, at least an hour): the table stays bounded by the delivery
rate, not by every delivery ever made. Every change runs in one ``BEGIN IMMEDIATE``
transaction, and ``ack``/``retry``/``release``/``kill`` only act while the lease token
still matches, so several worker processes can share the file: an item is never held by
two unexpired leases, and a worker whose lease expired cannot ack the next holder's.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.storage.queue import AccountDepth, Lease, Outcome, QueueItem
from huntaze_cli.storage.sqlite.db import Database, Migration

if TYPE_CHECKING:
    from huntaze_cli.config import Config


QUEUE_MIGRATIONS: list[Migration] = [
    (
        "queue_001_tables",
        """
        CREATE TABLE items (
            key TEXT PRIMARY KEY,
            campaign_id TEXT NOT NULL,
            account TEXT NOT NULL,
            recipient_id TEXT NOT NULL,
            text TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            due_at REAL NOT NULL,
            lease_token TEXT,
            leased_until REAL,
            last_error TEXT,
            created_at REAL NOT NULL,
            died_at REAL
        );
        -- Due items oldest first; rowid (implicit in every index) breaks ties in
        -- enqueue order. Dead items never take part in a lease, so they stay out.
        CREATE INDEX items_due ON items (due_at) WHERE state != 'dead';
        CREATE INDEX items_account_due ON items (account, due_at) WHERE state != 'dead';
        CREATE INDEX items_dead ON items (campaign_id, died_at) WHERE state = 'dead';
        CREATE TABLE delivered (
            key TEXT PRIMARY KEY,
            delivered_at REAL NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
    ("queue_002_delivered_by_time", "CREATE INDEX delivered_time ON delivered (delivered_at)"),
]

# Acks between two prunes of old delivered keys (one indexed DELETE each time).
PRUNE_EVERY = 1000
MIN_DELIVERED_KEEP_S = 3600.0

# SQLite page cache of this connection: enqueues, leases and acks by key, in batches, go
# as fast with 8 MB as with the 64 MB default (sized for the ledger), which a large
# campaign filled, growing the process with every message queued.
CACHE_MB = 8

# Rows per INSERT batch of enqueue; each batch is one executemany in the transaction.
_ENQUEUE_CHUNK = 500

_ITEM_COLUMNS = "key, campaign_id, account, recipient_id, text"
_INSERT = (
    f"INSERT OR IGNORE INTO items ({_ITEM_COLUMNS}, state, attempts, due_at, created_at) "
    "SELECT ?, ?, ?, ?, ?, 'queued', 0, ?, ? "
    "WHERE NOT EXISTS (SELECT 1 FROM delivered WHERE key = ?)"
)
_SELECT_DUE = f"SELECT {_ITEM_COLUMNS}, attempts FROM items"


def _timestamp(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class SQLiteQueue:
    """The ``DeliveryQueue`` protocol on one SQLite file; safe across threads and processes."""

    def __init__(
        self,
        path: Path,
        *,
        max_attempts: int = 5,
        delivered_keep_s: float = MIN_DELIVERED_KEEP_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.path = Path(path)
        self.max_attempts = max_attempts
        self.delivered_keep_s = delivered_keep_s
        self._acks = 0
        self._clock = clock
        self._db = Database(self.path, QUEUE_MIGRATIONS, what="delivery queue", cache_mb=CACHE_MB)

    @classmethod
    def from_config(cls, config: Config) -> SQLiteQueue:
        """The queue ``[queue]`` describes (``backend = "sqlite"``)."""
        queue = config.queue
        # The longest a message's copies can live: every attempt held a whole lease and
        # waited the longest backoff. Twice that, and never less than an hour.
        window = queue.max_attempts * (queue.lease_s + queue.backoff.max_s)
        return cls(
            config.queue_path,
            max_attempts=queue.max_attempts,
            delivered_keep_s=max(MIN_DELIVERED_KEEP_S, 2 * window),
        )

    def __enter__(self) -> SQLiteQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # --- DeliveryQueue protocol ---------------------------------------------------

    def enqueue(self, items: Sequence[QueueItem]) -> int:
        """Add items not seen before (by key); returns how many were new."""
        if not items:
            return 0
        now = self._clock.time()
        added = 0
        with self._db.write("enqueueing messages") as conn:
            for start in range(0, len(items), _ENQUEUE_CHUNK):
                rows = [
                    (i.key, i.campaign_id, i.account, i.recipient_id, i.text, now, now, i.key)
                    for i in items[start : start + _ENQUEUE_CHUNK]
                ]
                # rowcount of executemany sums the rows each statement inserted.
                added += conn.executemany(_INSERT, rows).rowcount
        return added

    def lease(
        self,
        *,
        limit: int,
        lease_s: float,
        exclude_accounts: Collection[str] = (),
        account: str | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` due items (expired leases included), oldest due first.

        Both filters are honoured. Each item gets its own random token, so an ack can
        only ever settle the lease it was given for.
        """
        if limit <= 0 or (account is not None and account in exclude_accounts):
            return []
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        now = self._clock.time()
        until = now + lease_s
        where = ["state != 'dead'", "due_at <= ?"]
        params: list[Any] = [now]
        if account is not None:
            where.append("account = ?")
            params.append(account)
        excluded = list(exclude_accounts)
        if excluded:
            where.append(f"account NOT IN ({','.join('?' * len(excluded))})")
            params.extend(excluded)
        sql = f"{_SELECT_DUE} WHERE {' AND '.join(where)} ORDER BY due_at, rowid LIMIT ?"
        params.append(limit)
        leases: list[Lease] = []
        with self._db.write("leasing messages") as conn:
            rows = conn.execute(sql, params).fetchall()
            if not rows:
                return leases
            updates = []
            leased_until = _timestamp(until)
            for row in rows:
                token = secrets.token_hex(16)
                updates.append((token, until, until, row[0]))
                leases.append(Lease(QueueItem(*row[:5]), token, row[5], leased_until))
            conn.executemany(
                "UPDATE items SET state = 'leased', lease_token = ?, leased_until = ?, "
                "due_at = ? WHERE key = ?",
                updates,
            )
        return leases

    def ack(self, lease: Lease) -> bool:
        """The item was delivered: forget it and remember its key. False if the token no
        longer matches (the lease expired and someone else leased the item)."""
        with self._db.write("acking a delivered message") as conn:
            deleted = conn.execute(
                "DELETE FROM items WHERE key = ? AND lease_token = ?",
                (lease.item.key, lease.token),
            ).rowcount
            if deleted:
                now = self._clock.time()
                conn.execute(
                    "INSERT OR IGNORE INTO delivered (key, delivered_at) VALUES (?, ?)",
                    (lease.item.key, now),
                )
                self._acks += 1
                if self._acks % PRUNE_EVERY == 0:
                    conn.execute(
                        "DELETE FROM delivered WHERE delivered_at < ?",
                        (now - self.delivered_keep_s,),
                    )
        return bool(deleted)

    def retry(self, lease: Lease, *, delay_s: float, error: str) -> Outcome:
        """Count a failed attempt: due again after ``delay_s``, or dead at ``max_attempts``.

        With a token that no longer matches nothing changes, and the outcome says so
        (``applied=False``, ``due_at=None``, the attempts the lease was given with).
        """
        now = self._clock.time()
        with self._db.write("scheduling a delivery retry") as conn:
            row = conn.execute(
                "SELECT attempts FROM items WHERE key = ? AND lease_token = ?",
                (lease.item.key, lease.token),
            ).fetchone()
            if row is None:
                return Outcome(dead=False, attempts=lease.attempts, due_at=None, applied=False)
            attempts = row[0] + 1
            if attempts >= self.max_attempts:
                self._bury(conn, lease.item.key, attempts, error, now)
                return Outcome(dead=True, attempts=attempts, due_at=None)
            due_at = now + max(delay_s, 0.0)
            conn.execute(
                "UPDATE items SET state = 'queued', attempts = ?, due_at = ?, "
                "lease_token = NULL, leased_until = NULL, last_error = ? WHERE key = ?",
                (attempts, due_at, error, lease.item.key),
            )
        return Outcome(dead=False, attempts=attempts, due_at=_timestamp(due_at))

    def release(self, lease: Lease, *, delay_s: float) -> None:
        """Give the item back without counting an attempt, due after ``delay_s``."""
        with self._db.write("releasing a leased message") as conn:
            conn.execute(
                "UPDATE items SET state = 'queued', due_at = ?, lease_token = NULL, "
                "leased_until = NULL WHERE key = ? AND lease_token = ?",
                (self._clock.time() + max(delay_s, 0.0), lease.item.key, lease.token),
            )

    def kill(self, lease: Lease, *, error: str) -> bool:
        """Dead letter at once: the failed delivery counts as an attempt."""
        with self._db.write("moving a message to dead letters") as conn:
            row = conn.execute(
                "SELECT attempts FROM items WHERE key = ? AND lease_token = ?",
                (lease.item.key, lease.token),
            ).fetchone()
            if row is None:
                return False
            self._bury(conn, lease.item.key, row[0] + 1, error, self._clock.time())
            return True

    @staticmethod
    def _bury(conn: sqlite3.Connection, key: str, attempts: int, error: str, now: float) -> None:
        # due_at keeps its NOT NULL value but is meaningless while dead.
        conn.execute(
            "UPDATE items SET state = 'dead', attempts = ?, last_error = ?, died_at = ?, "
            "lease_token = NULL, leased_until = NULL WHERE key = ?",
            (attempts, error, now, key),
        )

    def requeue_dead(self, campaign_id: str) -> int:
        """Move a campaign's dead letters back to the queue, due now, attempts reset.

        ``last_error`` is kept: it still describes the last failure until the next one.
        """
        with self._db.write("requeueing dead letters") as conn:
            return conn.execute(
                "UPDATE items SET state = 'queued', attempts = 0, due_at = ?, died_at = NULL "
                "WHERE campaign_id = ? AND state = 'dead'",
                (self._clock.time(), campaign_id),
            ).rowcount

    def depth(self) -> dict[str, AccountDepth]:
        """Per account: queued (expired leases included), unexpired leases, dead."""
        with self._db.read("reading the queue depth") as conn:
            rows = conn.execute(
                "SELECT account, "
                "SUM(state = 'queued' OR (state = 'leased' AND due_at <= ?1)), "
                "SUM(state = 'leased' AND due_at > ?1), "
                "SUM(state = 'dead') "
                "FROM items GROUP BY account ORDER BY account",
                (self._clock.time(),),
            ).fetchall()
        return {row[0]: AccountDepth(row[1], row[2], row[3]) for row in rows}
