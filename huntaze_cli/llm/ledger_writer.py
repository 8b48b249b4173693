"""Cost events on their way to the ledger: batched, written off the event loop, journalled.

Every provider attempt becomes one cost event (DESIGN.md: the ledger is exact); the
orchestrator hands them here so a call never waits for a ledger write.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from huntaze_cli.errors import BackendError
from huntaze_cli.models import CostEvent

if TYPE_CHECKING:
    from huntaze_cli.storage.journal import CostJournal
    from huntaze_cli.storage.ledger import Ledger


def new_attempt_id() -> str:
    """Unique and time-ordered (nanoseconds, then randomness), as 32 hex digits.

    Ordered ids keep the ledger's primary-key index appending at its end; random ids
    scatter every batch over the whole index and cut SQLite's write rate several-fold
    on a million-event ledger.
    """
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


class LedgerWriter:
    """Batches cost events and writes them off the event loop.

    Events are flushed every ``max_batch`` events or ``interval_s`` seconds, whichever
    comes first, and on ``aclose``. A failed write keeps its events for the next flush.
    With a ``journal`` (storage/journal.py) nothing waits in memory alone: each attempt
    is journalled before its call (``begin``) and when it ends (``add``), and settled
    in the journal once stored, so a killed process's attempts are recovered.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_batch: int = 500,
        interval_s: float = 0.2,
        warn: Callable[[str], None] | None = None,
        journal: CostJournal | None = None,
    ) -> None:
        self.ledger = ledger
        self.journal = journal
        self.max_batch = max_batch
        self.interval_s = interval_s
        self._buffer: list[CostEvent] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        # A full buffer has a flush scheduled that has not taken it yet: events added
        # meanwhile ride along with it instead of each scheduling a flush of its own
        # (which, while a slow write holds the lock, would be a task per event).
        self._full_flush_pending = False
        self._warn = warn
        self.written = 0

    def begin(self, intent: CostEvent) -> None:
        """An attempt is about to call a provider: journal it before any money is spent."""
        if self.journal is not None:
            self.journal.begin(intent)

    def forget(self, attempt_id: str) -> None:
        """The attempt never called its provider (it could not be used at all)."""
        if self.journal is not None:
            self.journal.settled([attempt_id])

    def add(self, event: CostEvent) -> None:
        if self.journal is not None:
            self.journal.end(event)
        self._buffer.append(event)
        if len(self._buffer) >= self.max_batch:
            if not self._full_flush_pending:
                self._full_flush_pending = True
                task = asyncio.get_running_loop().create_task(self._flush_quietly())
                self._flushing.add(task)
                task.add_done_callback(self._flushing.discard)
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        await asyncio.sleep(self.interval_s)
        # Shielded: ``aclose`` cancels the timer, and a write cancelled mid-way would go
        # on in its thread while aclose reports everything written.
        await asyncio.shield(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except BackendError as exc:
            if self._warn:
                self._warn(f"cost ledger write failed, will retry: {exc.message}")

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            self._full_flush_pending = False
            try:
                await asyncio.to_thread(self.ledger.record, batch)
            except BackendError:
                self._buffer[:0] = batch
                raise
            self.written += len(batch)
            if self.journal is not None:
                self.journal.settled(event.attempt_id for event in batch)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.flush()
        if self.journal is not None:
            await self._close_journal(self.journal)

    async def _close_journal(self, journal: CostJournal) -> None:
        """Record attempts begun and never ended (a cancelled call) as interrupted."""
        from huntaze_cli.storage.journal import interrupted

        intents = journal.unsettled()
        if intents:
            await asyncio.to_thread(self.ledger.record, [interrupted(i) for i in intents])
        journal.close()
