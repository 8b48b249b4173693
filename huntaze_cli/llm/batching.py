"""Items written in batches off the event loop: the cost ledger's writer and budget
settlements share this one mechanism.

Items are flushed every ``max_batch`` items or ``interval_s`` seconds, whichever comes
first, and on ``aclose``; ``write`` runs in a thread. A failed write keeps its items for
the next flush and is reported through ``warn``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from huntaze_cli.errors import BackendError

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items and hands them to ``write`` in batches, in a thread."""

    def __init__(
        self,
        write: Callable[[list[T]], object],
        *,
        what: str,
        max_batch: int,
        interval_s: float,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._write = write
        self._what = what
        self.max_batch = max_batch
        self.interval_s = interval_s
        self._buffer: list[T] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        # A full buffer has a flush scheduled that has not taken it yet: items added
        # meanwhile ride along with it instead of each scheduling a flush of its own
        # (which, while a slow write holds the lock, would be a task per item).
        self._full_flush_pending = False
        self._warn = warn
        self._writing = 0
        self.written = 0

    @property
    def pending(self) -> int:
        """Items not written yet, those of a write in progress included."""
        return len(self._buffer) + self._writing

    def add(self, item: T) -> None:
        self._buffer.append(item)
        if len(self._buffer) >= self.max_batch:
            if not self._full_flush_pending:
                self._full_flush_pending = True
                task = asyncio.get_running_loop().create_task(self.flush_quietly())
                self._flushing.add(task)
                task.add_done_callback(self._flushing.discard)
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        await asyncio.sleep(self.interval_s)
        # Shielded: ``aclose`` cancels the timer, and a write cancelled mid-way would go
        # on in its thread while aclose reports everything written.
        await asyncio.shield(self.flush_quietly())

    async def flush_quietly(self) -> None:
        """``flush``; a failed write is reported through ``warn`` and kept for later."""
        try:
            await self.flush()
        except BackendError as exc:
            if self._warn:
                self._warn(f"{self._what} failed, will retry: {exc.message}")

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            self._full_flush_pending = False
            self._writing = len(batch)
            try:
                await asyncio.to_thread(self._write, batch)
            except BackendError:
                self._buffer[:0] = batch
                raise
            finally:
                self._writing = 0
            self.written += len(batch)
            self.written_batch(batch)

    def written_batch(self, batch: list[T]) -> None:
        """Called once ``batch`` is written (a subclass may note it elsewhere)."""

    async def aclose(self) -> None:
        """Write everything still buffered."""
        if self._timer is not None:
            self._timer.cancel()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.flush()
