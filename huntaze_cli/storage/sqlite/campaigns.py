"""The campaign store in campaigns.db (SQLite): one host, any number of processes.

Implements ``storage.campaigns.CampaignStore`` (states and promises described there).
Transitions are ``UPDATE ... WHERE state = <the state it leaves>`` inside ``BEGIN
IMMEDIATE`` transactions; the same transaction moves the number of rows it changed
between two ``message_counts`` rows (one per campaign and state; ``_shift``), so
``counts`` reads six rows however large the campaign. (Triggers would do the same per
row and cost a fifth of the generation rate.)
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.storage.campaigns import (
    MESSAGE_STATES,
    CampaignRow,
    DeadLetter,
    Heartbeat,
    PendingMessage,
    finished_state,
    split_key,
)
from huntaze_cli.storage.sqlite.db import Database

if TYPE_CHECKING:
    from huntaze_cli.config import Config

STOPPED_WORKERS_KEPT = 10
STOPPED_WORKERS_KEPT_S = 3600.0
DEAD_WORKERS_KEPT_S = 7 * 86400.0

# SQLite page cache of this connection. Messages are written and read by key in batches of
# a few hundred rows, which 8 MB serves as fast as the 64 MB default (sized for the
# ledger's write rate). With the default, this cache and the queue's grew a campaign
# process by about 0.6 KB per recipient until full (DESIGN.md: <= 200 MB for 100k).
CACHE_MB = 8

_MIGRATIONS = [
    (
        "campaigns_001_tables",
        """
        CREATE TABLE campaigns (
            id TEXT PRIMARY KEY,
            idempotency_key TEXT UNIQUE,
            name TEXT NOT NULL,
            account TEXT NOT NULL,
            tenant TEXT NOT NULL,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            system TEXT,
            prompt TEXT NOT NULL,
            max_tokens INTEGER,
            temperature REAL,
            state TEXT NOT NULL,
            recipients INTEGER NOT NULL,
            estimated_cost_nano INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX campaigns_created ON campaigns (created_at);
        CREATE TABLE messages (
            campaign_id TEXT NOT NULL,
            recipient_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            fields TEXT NOT NULL,
            state TEXT NOT NULL,
            text TEXT,
            provider TEXT,
            error TEXT,
            sent_at TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (campaign_id, recipient_id)
        ) WITHOUT ROWID;
        CREATE INDEX messages_state ON messages (campaign_id, state, seq);
        CREATE TABLE workers (
            worker_id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            beat_at TEXT NOT NULL,
            delivered INTEGER NOT NULL,
            stopped INTEGER NOT NULL DEFAULT 0
        );
        """,
    ),
    (
        "campaigns_002_generation_leases",
        """
        CREATE TABLE generation_leases (
            campaign_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            until TEXT NOT NULL
        );
        """,
    ),
    (
        "campaigns_003_message_counts",
        """
        CREATE TABLE message_counts (
            campaign_id TEXT NOT NULL,
            state TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (campaign_id, state)
        ) WITHOUT ROWID;
        INSERT INTO message_counts
            SELECT campaign_id, state, COUNT(*) FROM messages GROUP BY campaign_id, state;
        """,
    ),
]


class SQLiteCampaignStore:
    """The ``CampaignStore`` protocol on one SQLite file (WAL, BEGIN IMMEDIATE)."""

    def __init__(self, path: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self._clock = clock
        self._db = Database(path, _MIGRATIONS, what="campaign store", cache_mb=CACHE_MB)

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock = SYSTEM_CLOCK) -> SQLiteCampaignStore:
        """The store ``[campaigns]`` describes (``backend = "sqlite"``)."""
        return cls(config.campaigns_path, clock=clock)

    def _now(self, offset_s: float = 0.0) -> str:
        """The clock's time (``offset_s`` ahead, or behind when negative), as stored."""
        return (self._clock.now() + timedelta(seconds=offset_s)).isoformat()

    # --- transactions ------------------------------------------------------------------

    def _write(self, doing: str) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.write(doing)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._db.read("reading campaigns") as conn:
            return conn.execute(sql, params).fetchall()

    # --- campaigns ---------------------------------------------------------------------

    def create(
        self,
        *,
        campaign_id: str,
        idempotency_key: str | None,
        spec: dict[str, Any],
        recipients: Iterable[tuple[str, dict[str, str]]],
        estimated_cost_nano: int,
        generation_owner: str | None = None,
        lease_s: float = 60.0,
    ) -> int:
        """Store a campaign and all its recipients in one transaction; returns the count.

        If ``recipients`` raises (a bad line), nothing at all is stored. With
        ``generation_owner`` the campaign is stored with that owner's generation lease,
        so no worker takes it as orphaned before its creator starts generating.
        """
        now = self._now()
        with self._write("creating the campaign") as conn:
            conn.execute(
                "INSERT INTO campaigns VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    campaign_id,
                    idempotency_key,
                    spec["name"],
                    spec["account"],
                    spec["tenant"],
                    spec["model"],
                    spec["provider"],
                    spec.get("system"),
                    spec["prompt"],
                    spec.get("max_tokens"),
                    spec.get("temperature"),
                    "estimating",
                    0,
                    estimated_cost_nano,
                    now,
                    now,
                ),
            )
            count = 0
            batch: list[tuple[Any, ...]] = []
            for recipient_id, fields in recipients:
                batch.append((campaign_id, recipient_id, count, json.dumps(fields), "pending", now))
                count += 1
                if len(batch) >= 2000:
                    self._insert_messages(conn, batch)
                    batch = []
            self._insert_messages(conn, batch)
            conn.execute(
                "UPDATE campaigns SET recipients = ?, state = 'generating' WHERE id = ?",
                (count, campaign_id),
            )
            _shift(conn, campaign_id, None, "pending", count)
            if generation_owner is not None:
                until = self._now(lease_s)
                conn.execute(
                    "INSERT OR REPLACE INTO generation_leases VALUES (?, ?, ?)",
                    (campaign_id, generation_owner, until),
                )
        return count

    @staticmethod
    def _insert_messages(conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
        conn.executemany(
            "INSERT INTO messages (campaign_id, recipient_id, seq, fields, state, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            batch,
        )

    def find_by_key(self, idempotency_key: str) -> str | None:
        rows = self._read("SELECT id FROM campaigns WHERE idempotency_key = ?", (idempotency_key,))
        return rows[0][0] if rows else None

    def get(self, campaign_id: str) -> CampaignRow | None:
        rows = self._read("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
        return _campaign(rows[0]) if rows else None

    def recent(self, limit: int = 20) -> list[CampaignRow]:
        rows = self._read("SELECT * FROM campaigns ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_campaign(row) for row in rows]

    def set_state(self, campaign_id: str, state: str) -> None:
        with self._write("updating the campaign") as conn:
            conn.execute(
                "UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ?",
                (state, self._now(), campaign_id),
            )

    def counts(self, campaign_id: str) -> dict[str, int]:
        rows = self._read(
            "SELECT state, n FROM message_counts WHERE campaign_id = ?", (campaign_id,)
        )
        counts = dict.fromkeys(MESSAGE_STATES, 0)
        counts.update({state: n for state, n in rows})
        return counts

    def dead_letters(self, campaign_id: str, *, limit: int) -> list[DeadLetter]:
        rows = self._read(
            "SELECT recipient_id, seq, text IS NOT NULL, error, updated_at FROM messages "
            "WHERE campaign_id = ? AND state = 'dead' ORDER BY seq LIMIT ?",
            (campaign_id, limit),
        )
        return [
            DeadLetter(rid, seq, "delivery" if has_text else "generation", error,
                       datetime.fromisoformat(updated))
            for rid, seq, has_text, error, updated in rows
        ]  # fmt: skip

    def refresh_state(self, campaign_id: str) -> str:
        """Move a delivering campaign to completed(_with_errors) once nothing is open."""
        campaign = self.get(campaign_id)
        if campaign is None:
            return "unknown"
        state = finished_state(self.counts(campaign_id))
        if campaign.state != "delivering" or state is None:
            return campaign.state
        with self._write("completing the campaign") as conn:
            conn.execute(
                "UPDATE campaigns SET state = ?, updated_at = ? "
                "WHERE id = ? AND state = 'delivering'",
                (state, self._now(), campaign_id),
            )
        return state

    # --- messages ----------------------------------------------------------------------

    def pending(self, campaign_id: str, *, after_seq: int, limit: int) -> list[PendingMessage]:
        rows = self._read(
            "SELECT recipient_id, seq, fields FROM messages "
            "WHERE campaign_id = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
            (campaign_id, after_seq, limit),
        )
        return [PendingMessage(r[0], r[1], json.loads(r[2])) for r in rows]

    def generated(self, campaign_id: str) -> Iterator[tuple[str, str]]:
        """(recipient_id, text) of messages generated but not yet queued."""
        after = -1
        while True:
            rows = self._read(
                "SELECT recipient_id, text, seq FROM messages WHERE campaign_id = ? "
                "AND state = 'generated' AND seq > ? ORDER BY seq LIMIT 1000",
                (campaign_id, after),
            )
            if not rows:
                return
            for recipient_id, text, seq in rows:
                after = seq
                yield recipient_id, text

    def save_generated(self, campaign_id: str, rows: Sequence[tuple[str, str, str]]) -> None:
        """(recipient_id, text, provider) for messages just generated."""
        now = self._now()
        with self._write("saving generated messages") as conn:
            moved = conn.executemany(
                "UPDATE messages SET state = 'generated', text = ?, provider = ?, error = NULL,"
                " updated_at = ? WHERE campaign_id = ? AND recipient_id = ? AND state = 'pending'",
                [(text, provider, now, campaign_id, rid) for rid, text, provider in rows],
            ).rowcount
            _shift(conn, campaign_id, "pending", "generated", moved)

    def generation_failed(
        self, campaign_id: str, rows: Sequence[tuple[str, str]], *, final: bool
    ) -> None:
        """Keep the error; ``final`` makes the message dead, else it stays pending."""
        state = "dead" if final else "pending"
        now = self._now()
        with self._write("recording generation failures") as conn:
            moved = conn.executemany(
                "UPDATE messages SET state = ?, error = ?, updated_at = ? "
                "WHERE campaign_id = ? AND recipient_id = ? AND state = 'pending'",
                [(state, error, now, campaign_id, rid) for rid, error in rows],
            ).rowcount
            _shift(conn, campaign_id, "pending", state, moved)

    def mark_queued(self, campaign_id: str, recipient_ids: Sequence[str]) -> None:
        now = self._now()
        with self._write("marking messages queued") as conn:
            moved = conn.executemany(
                "UPDATE messages SET state = 'queued', updated_at = ? "
                "WHERE campaign_id = ? AND recipient_id = ? AND state = 'generated'",
                [(now, campaign_id, rid) for rid in recipient_ids],
            ).rowcount
            _shift(conn, campaign_id, "generated", "queued", moved)

    def delivery_outcome(
        self, key: str, state: str, *, sent_at: str | None, error: str | None
    ) -> None:
        """A delivery attempt's result: sent, failed (will retry) or dead. Sent is final."""
        campaign_id, recipient_id = split_key(key)
        with self._write("recording a delivery") as conn:
            row = conn.execute(
                "SELECT state FROM messages WHERE campaign_id = ? AND recipient_id = ?",
                (campaign_id, recipient_id),
            ).fetchone()
            if row is None or row[0] == "sent":
                return
            conn.execute(
                "UPDATE messages SET state = ?, sent_at = COALESCE(?, sent_at), error = ?,"
                " updated_at = ? WHERE campaign_id = ? AND recipient_id = ?",
                (state, sent_at, error, self._now(), campaign_id, recipient_id),
            )
            _shift(conn, campaign_id, row[0], state, 1)

    def requeued(self, campaign_id: str) -> int:
        """Dead messages that have text go back to queued (see `huntaze requeue`)."""
        with self._write("requeueing dead messages") as conn:
            cursor = conn.execute(
                "UPDATE messages SET state = 'queued', error = NULL, updated_at = ? "
                "WHERE campaign_id = ? AND state = 'dead' AND text IS NOT NULL",
                (self._now(), campaign_id),
            )
            _shift(conn, campaign_id, "dead", "queued", cursor.rowcount)
            conn.execute(
                "UPDATE campaigns SET state = 'delivering', updated_at = ? "
                "WHERE id = ? AND state LIKE 'completed%' AND ? > 0",
                (self._now(), campaign_id, cursor.rowcount),
            )
            return cursor.rowcount

    def retry_failed_generation(self, campaign_id: str) -> int:
        """Dead messages without text (generation gave up) become pending again."""
        with self._write("resetting failed generations") as conn:
            moved: int = conn.execute(
                "UPDATE messages SET state = 'pending', updated_at = ? "
                "WHERE campaign_id = ? AND state = 'dead' AND text IS NULL",
                (self._now(), campaign_id),
            ).rowcount
            _shift(conn, campaign_id, "dead", "pending", moved)
            return moved

    def needs_generation(self, campaign_id: str) -> bool:
        """Whether any message is pending or gave up generating (a resume retries it)."""
        rows = self._read(
            "SELECT 1 FROM messages WHERE campaign_id = ? AND (state = 'pending' "
            "OR (state = 'dead' AND text IS NULL)) LIMIT 1",
            (campaign_id,),
        )
        return bool(rows)

    # --- generation leases ---------------------------------------------------------------
    # Whoever generates a campaign's messages (send-campaign, resume, a worker, serve)
    # holds its lease and renews it; a campaign left generating with no live lease (the
    # process was interrupted or killed) is orphaned, and the next worker or serve that
    # looks claims it and finishes it.

    def claim_generation(self, campaign_id: str, owner: str, *, lease_s: float) -> bool:
        """Take (or renew) the lease on generating ``campaign_id``; False if held by another."""
        until = self._now(lease_s)
        with self._write("claiming a campaign's generation") as conn:
            cursor = conn.execute(
                "INSERT INTO generation_leases (campaign_id, owner, until) VALUES (?, ?, ?) "
                "ON CONFLICT (campaign_id) DO UPDATE SET owner = excluded.owner, "
                "until = excluded.until WHERE generation_leases.owner = excluded.owner "
                "OR generation_leases.until < ?",
                (campaign_id, owner, until, self._now()),
            )
            return cursor.rowcount == 1

    def release_generation(self, campaign_id: str, owner: str) -> None:
        """Give the lease up (generation finished or stopped)."""
        with self._write("releasing a campaign's generation") as conn:
            conn.execute(
                "DELETE FROM generation_leases WHERE campaign_id = ? AND owner = ?",
                (campaign_id, owner),
            )

    def generation_owner(self, campaign_id: str) -> str | None:
        """Who holds a live lease on generating ``campaign_id``, if anyone."""
        rows = self._read(
            "SELECT owner FROM generation_leases WHERE campaign_id = ? AND until >= ?",
            (campaign_id, self._now()),
        )
        return str(rows[0][0]) if rows else None

    def orphaned(self, *, limit: int = 10) -> list[str]:
        """Campaigns left generating (or paused by a budget) with no live lease, oldest first."""
        rows = self._read(
            "SELECT c.id FROM campaigns c LEFT JOIN generation_leases l ON l.campaign_id = c.id "
            "WHERE c.state IN ('estimating', 'generating', 'paused_budget') "
            "AND (l.until IS NULL OR l.until < ?) "
            "ORDER BY c.created_at LIMIT ?",
            (self._now(), limit),
        )
        return [str(r[0]) for r in rows]

    # --- workers -----------------------------------------------------------------------

    def heartbeat(
        self, worker_id: str, *, started_at: datetime, delivered: int, stopped: bool = False
    ) -> None:
        with self._write("recording a worker heartbeat") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO workers VALUES (?,?,?,?,?,?,?)",
                (
                    worker_id,
                    socket.gethostname(),
                    os.getpid(),
                    started_at.isoformat(),
                    self._now(),
                    delivered,
                    int(stopped),
                ),
            )
            if stopped:
                # `worker --once` from cron stops every minute: keep the last few stopped
                # workers (status and health show them) and any that stopped recently.
                conn.execute(
                    "DELETE FROM workers WHERE stopped = 1 AND beat_at < ? AND worker_id NOT IN "
                    "(SELECT worker_id FROM workers WHERE stopped = 1 "
                    "ORDER BY beat_at DESC LIMIT ?)",
                    (self._now(-STOPPED_WORKERS_KEPT_S), STOPPED_WORKERS_KEPT),
                )
                # One that died without stopping (kill -9) is forgotten after a week.
                conn.execute(
                    "DELETE FROM workers WHERE beat_at < ?", (self._now(-DEAD_WORKERS_KEPT_S),)
                )

    def heartbeats(self) -> list[Heartbeat]:
        rows = self._read("SELECT * FROM workers ORDER BY beat_at DESC LIMIT 50")
        return [
            Heartbeat(
                r[0],
                r[1],
                r[2],
                datetime.fromisoformat(r[3]),
                datetime.fromisoformat(r[4]),
                r[5],
                bool(r[6]),
            )
            for r in rows
        ]

    def close(self) -> None:
        self._db.close()


def _shift(conn: sqlite3.Connection, campaign_id: str, old: str | None, new: str, n: int) -> None:
    """Move ``n`` messages from ``old``'s count to ``new``'s, in the caller's transaction."""
    if n <= 0 or old == new:
        return
    if old is not None:
        conn.execute(
            "UPDATE message_counts SET n = n - ? WHERE campaign_id = ? AND state = ?",
            (n, campaign_id, old),
        )
    conn.execute(
        "INSERT INTO message_counts VALUES (?, ?, ?) "
        "ON CONFLICT (campaign_id, state) DO UPDATE SET n = n + excluded.n",
        (campaign_id, new, n),
    )


def _campaign(row: Sequence[Any]) -> CampaignRow:
    values = list(row)
    values[14] = datetime.fromisoformat(values[14])
    values[15] = datetime.fromisoformat(values[15])
    return CampaignRow(*values)
