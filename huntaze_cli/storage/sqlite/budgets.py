"""Budget reservations in one SQLite file (``budgets.db`` beside the ledger): one host.

Implements ``storage.budgets.ReservationStore``. One row per budget period holds its
``spent_nano`` and ``reserved_nano`` counters, so deciding a reservation reads one row
per budget; one row per (reservation, budget) remembers what each call in flight holds
and until when, so an expired one can be given back. ``reserve`` and ``settle`` are each
one ``BEGIN IMMEDIATE`` transaction: the counters of every budget move together, and the
check-then-add cannot interleave with another process's.

Expired reservations are released lazily, by a ``reserve`` that would otherwise be
refused and by ``usage``: a full budget is the only moment their money matters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from huntaze_cli.clock import SYSTEM_CLOCK, Clock, seconds_to_micros
from huntaze_cli.storage.budgets import BudgetUsage, Claim, Reservation, Settlement
from huntaze_cli.storage.sqlite.db import Database, Migration

if TYPE_CHECKING:
    from huntaze_cli.config import Config

BUDGET_MIGRATIONS: list[Migration] = [
    (
        "budgets_001_reservations",
        """
        CREATE TABLE budget_periods (
            budget TEXT NOT NULL,
            period TEXT NOT NULL,
            spent_nano INTEGER NOT NULL DEFAULT 0,
            reserved_nano INTEGER NOT NULL DEFAULT 0,
            refused_nano INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (budget, period)
        ) WITHOUT ROWID;
        CREATE TABLE reservations (
            id TEXT NOT NULL,
            budget TEXT NOT NULL,
            period TEXT NOT NULL,
            amount_nano INTEGER NOT NULL,
            expires_us INTEGER NOT NULL,
            PRIMARY KEY (id, budget)
        ) WITHOUT ROWID;
        CREATE INDEX reservations_expiry ON reservations (budget, period, expires_us);
        """,
    ),
]

_USAGE = (
    "SELECT spent_nano, reserved_nano, refused_nano FROM budget_periods "
    "WHERE budget = ? AND period = ?"
)
_HOLD = (
    "INSERT INTO budget_periods (budget, period, reserved_nano) VALUES (?, ?, ?) "
    "ON CONFLICT (budget, period) DO UPDATE SET "
    "reserved_nano = reserved_nano + excluded.reserved_nano, refused_nano = 0"
)
_REFUSED = (
    "INSERT INTO budget_periods (budget, period, refused_nano) VALUES (?, ?, ?) "
    "ON CONFLICT (budget, period) DO UPDATE SET refused_nano = excluded.refused_nano"
)
_NOTE = "INSERT INTO reservations (id, budget, period, amount_nano, expires_us) VALUES (?,?,?,?,?)"
_TAKE = "DELETE FROM reservations WHERE id = ? AND budget = ? RETURNING amount_nano"
_SETTLE = (
    "INSERT INTO budget_periods (budget, period, spent_nano, reserved_nano) VALUES (?, ?, ?, 0) "
    "ON CONFLICT (budget, period) DO UPDATE SET spent_nano = spent_nano + excluded.spent_nano, "
    "reserved_nano = reserved_nano - ?"
)
_EXPIRED = (
    "DELETE FROM reservations WHERE budget = ? AND period = ? AND expires_us < ? "
    "RETURNING amount_nano"
)
_RELEASE = (
    "UPDATE budget_periods SET reserved_nano = reserved_nano - ? WHERE budget = ? AND period = ?"
)


class SQLiteReservationStore:
    """The ``ReservationStore`` protocol on one SQLite file; safe across threads and processes."""

    # A reservation is one short local transaction: callers may make it on the event loop.
    inline = True

    def __init__(self, path: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = Path(path)
        self._clock = clock
        self._db = Database(self.path, BUDGET_MIGRATIONS, what="budget reservations")

    @classmethod
    def from_config(cls, config: Config) -> SQLiteReservationStore:
        return cls(config.ledger_path.parent / "budgets.db")

    def reserve(self, reservation_id: str, claims: Sequence[Claim], *, ttl_s: float) -> Reservation:
        used: dict[str, int] = {}
        with self._db.write("reserving budget") as conn:
            now_us = seconds_to_micros(self._clock.time())
            for claim in claims:
                spent, reserved, _ = self._read(conn, claim)
                if spent + reserved + claim.amount_nano > claim.limit_nano:
                    reserved -= self._release_expired(conn, claim.budget, claim.period, now_us)
                    if spent + reserved + claim.amount_nano > claim.limit_nano:
                        # Nothing was held for the claims before it; the expired ones
                        # released above stay released.
                        conn.execute(_REFUSED, (claim.budget, claim.period, claim.amount_nano))
                        refused = Reservation(
                            claim.budget, {claim.budget: spent + reserved}, {claim.budget: reserved}
                        )
                        break
                used[claim.budget] = spent + reserved + claim.amount_nano
            else:
                expires_us = now_us + seconds_to_micros(ttl_s)
                for claim in claims:
                    conn.execute(_HOLD, (claim.budget, claim.period, claim.amount_nano))
                    conn.execute(
                        _NOTE,
                        (reservation_id, claim.budget, claim.period, claim.amount_nano, expires_us),
                    )
                return Reservation(None, used)
        return refused

    @staticmethod
    def _read(conn: sqlite3.Connection, claim: Claim) -> tuple[int, int, int]:
        row = conn.execute(_USAGE, (claim.budget, claim.period)).fetchone()
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)

    @staticmethod
    def _release_expired(conn: sqlite3.Connection, budget: str, period: str, now_us: int) -> int:
        freed = sum(int(r[0]) for r in conn.execute(_EXPIRED, (budget, period, now_us)))
        if freed:
            conn.execute(_RELEASE, (freed, budget, period))
        return freed

    def settle(self, settlements: Sequence[Settlement]) -> None:
        if not settlements:
            return
        with self._db.write("settling budget reservations") as conn:
            for settlement in settlements:
                for claim in settlement.claims:
                    row = conn.execute(_TAKE, (settlement.reservation_id, claim.budget)).fetchone()
                    # Gone: it expired and was released; the money was spent all the same.
                    held = int(row[0]) if row else 0
                    conn.execute(_SETTLE, (claim.budget, claim.period, settlement.cost_nano, held))

    def usage(self, budget: str, period: str) -> BudgetUsage:
        probe = Claim(budget, period, 0, 0)
        with self._db.write("reading budget usage") as conn:
            self._release_expired(conn, budget, period, seconds_to_micros(self._clock.time()))
            spent, reserved, refused = self._read(conn, probe)
        return BudgetUsage(spent, reserved, refused)

    def close(self) -> None:
        self._db.close()
