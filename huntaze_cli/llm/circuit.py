"""Per-provider circuit breakers, and the shared store other processes read them from.

A breaker opens after ``circuit_failure_threshold`` consecutive failures, stays open for
``circuit_cooldown_s``, then lets exactly one probe through (half-open): its success
closes the circuit, its failure opens it again. A 401/403 marks the provider
misconfigured and opens the circuit at once.

Each process keeps its own breakers in memory (the hot path never touches storage) and
writes their state to the shared ``ProviderStateStore`` whenever it changes, so
`huntaze health` on any host sharing the store shows what the daemons saw, and the
orchestrator ``adopt``s a circuit another process opened (it reads the store every few
seconds), so one host's dead provider is skipped by the others too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import datetime

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.storage.providers import ProviderState, ProviderStateStore, State

__all__ = ["CircuitBreaker", "ProviderState", "State"]


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> one half-open probe after cooldown."""

    def __init__(
        self,
        provider: str,
        *,
        threshold: int,
        cooldown_s: float,
        store: ProviderStateStore | None = None,
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

    def adopt(self, shared: ProviderState) -> None:
        """Open this breaker when another process (on any host) opened the provider's
        circuit and its cooldown is still running; a closed breaker here would keep
        sending to a provider that process found failing. Nothing is written back.
        A provider misconfigured there (its key missing or refused) is not adopted: keys
        are each process's own, and this one may well have a good one."""
        if self.state != "closed" or shared.state != "open" or shared.opened_at is None:
            return
        if shared.misconfigured:
            return
        age = max((self._clock.now() - shared.opened_at).total_seconds(), 0.0)
        if age >= self.cooldown_s:
            return
        self._opened_at = self._clock.monotonic() - age
        self._opened_wall = shared.opened_at
        self.last_error, self.last_error_kind = shared.last_error, shared.last_error_kind
        self.state = "open"
        if self._on_change:
            self._on_change(self.provider, "open")

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
