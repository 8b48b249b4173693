"""Per-provider circuit breakers, and the shared file other processes read them from.

A breaker opens after ``circuit_failure_threshold`` consecutive failures, stays open for
``circuit_cooldown_s``, then lets exactly one probe through (half-open): its success
closes the circuit, its failure opens it again. A 401/403 marks the provider
misconfigured and opens the circuit at once.

Each process keeps its own breakers in memory (the hot path never touches disk) and
writes their state to ``providers.db`` in the data dir whenever it changes, so
`huntaze health` run beside a daemon shows the daemon's view.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.storage.sqlite.db import Database

State = Literal["closed", "open", "half_open"]

_MIGRATIONS = [
    (
        "providers_001_state",
        """
        CREATE TABLE provider_state (
            provider TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            consecutive_failures INTEGER NOT NULL,
            misconfigured INTEGER NOT NULL,
            last_error TEXT,
            last_error_kind TEXT,
            last_error_at TEXT,
            last_ok_at TEXT,
            opened_at TEXT,
            updated_at TEXT NOT NULL,
            pid INTEGER NOT NULL
        )
        """,
    )
]


@dataclass(slots=True)
class ProviderState:
    """What `health` shows of one provider: the last view any process wrote."""

    provider: str
    state: State
    consecutive_failures: int
    misconfigured: bool
    last_error: str | None
    last_error_kind: str | None
    last_error_at: datetime | None
    last_ok_at: datetime | None
    opened_at: datetime | None
    updated_at: datetime
    pid: int


class StateStore:
    """The shared providers.db file; writes are rare (state changes and errors only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(path, _MIGRATIONS, what="provider state")

    def save(self, state: ProviderState) -> None:
        with self._db.write("saving provider state") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO provider_state VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    state.provider,
                    state.state,
                    state.consecutive_failures,
                    int(state.misconfigured),
                    state.last_error,
                    state.last_error_kind,
                    _iso(state.last_error_at),
                    _iso(state.last_ok_at),
                    _iso(state.opened_at),
                    _iso(state.updated_at),
                    state.pid,
                ),
            )

    def load(self) -> dict[str, ProviderState]:
        with self._db.read("reading provider state") as conn:
            rows = conn.execute("SELECT * FROM provider_state").fetchall()
        return {
            row[0]: ProviderState(
                provider=row[0],
                state=row[1],
                consecutive_failures=row[2],
                misconfigured=bool(row[3]),
                last_error=row[4],
                last_error_kind=row[5],
                last_error_at=_parse(row[6]),
                last_ok_at=_parse(row[7]),
                opened_at=_parse(row[8]),
                updated_at=_parse(row[9]) or datetime.now(UTC),
                pid=row[10],
            )
            for row in rows
        }

    def close(self) -> None:
        self._db.close()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> one half-open probe after cooldown."""

    def __init__(
        self,
        provider: str,
        *,
        threshold: int,
        cooldown_s: float,
        store: StateStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_change: Callable[[str, State], None] | None = None,
    ) -> None:
        self.provider = provider
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.state: State = "closed"
        self.failures = 0
        self.misconfigured = False
        self.last_error: str | None = None
        self.last_error_kind: str | None = None
        self._last_error_at: datetime | None = None
        self._last_ok_at: datetime | None = None
        self._opened_wall: datetime | None = None
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._store = store
        self._clock = clock
        self._on_change = on_change

    def allow(self) -> bool:
        """May a call go to this provider now? Half-open admits exactly one probe."""
        if self.state == "closed":
            return True
        if self.state == "open":
            if self._clock.monotonic() - self._opened_at < self.cooldown_s:
                return False
            self._set("half_open")
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def ready_in(self) -> float:
        """Seconds until ``allow`` could say yes (0 when it may now)."""
        if self.state == "open":
            return max(0.0, self._opened_at + self.cooldown_s - self._clock.monotonic())
        if self.state == "half_open" and self._probe_in_flight:
            return self.cooldown_s
        return 0.0

    def release(self) -> None:
        """A probe ended without an outcome (cancelled): let another probe through."""
        self._probe_in_flight = False

    def success(self) -> None:
        self._probe_in_flight = False
        changed = self.state != "closed" or self.failures or self.misconfigured
        self.failures = 0
        self.misconfigured = False
        self._last_ok_at = self._clock.now()
        if self.state != "closed":
            self._set("closed")
        elif changed:
            self._save()

    def failure(self, kind: str, message: str, *, misconfigured: bool = False) -> None:
        self._probe_in_flight = False
        self.failures += 1
        self.last_error = message
        self.last_error_kind = kind
        self._last_error_at = self._clock.now()
        self.misconfigured = self.misconfigured or misconfigured
        if self.state == "half_open" or misconfigured or self.failures >= self.threshold:
            self._opened_at = self._clock.monotonic()
            self._opened_wall = self._clock.now()
            self._set("open")
        else:
            self._save()

    def _set(self, state: State) -> None:
        self.state = state
        self._save()
        if self._on_change:
            self._on_change(self.provider, state)

    def snapshot(self) -> ProviderState:
        return ProviderState(
            provider=self.provider,
            state=self.state,
            consecutive_failures=self.failures,
            misconfigured=self.misconfigured,
            last_error=self.last_error,
            last_error_kind=self.last_error_kind,
            last_error_at=self._last_error_at,
            last_ok_at=self._last_ok_at,
            opened_at=self._opened_wall if self.state != "closed" else None,
            updated_at=self._clock.now(),
            pid=os.getpid(),
        )

    def _save(self) -> None:
        if self._store is not None:
            # Losing a state write must never fail a generation: health shows a stale view.
            with contextlib.suppress(Exception):
                self._store.save(self.snapshot())
