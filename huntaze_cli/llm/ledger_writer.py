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

from huntaze_cli.llm.batching import Batcher
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


class LedgerWriter(Batcher[CostEvent]):
    """Batches cost events and writes them off the event loop (see ``Batcher``).

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
        super().__init__(
            ledger.record,
            what="cost ledger write",
            max_batch=max_batch,
            interval_s=interval_s,
            warn=warn,
        )
        self.ledger = ledger
        self.journal = journal

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
        super().add(event)

    def written_batch(self, batch: list[CostEvent]) -> None:
        if self.journal is not None:
            self.journal.settled(event.attempt_id for event in batch)

    async def aclose(self) -> None:
        await super().aclose()
        if self.journal is not None:
            await self._close_journal(self.journal)

    async def _close_journal(self, journal: CostJournal) -> None:
        """Record attempts begun and never ended (a cancelled call) as interrupted."""
        from huntaze_cli.storage.journal import interrupted

        intents = journal.unsettled()
        if intents:
            await asyncio.to_thread(self.ledger.record, [interrupted(i) for i in intents])
        journal.close()
