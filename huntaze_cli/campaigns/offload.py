"""Blocking backend calls made from async code, run off the event loop.

The campaign store, the queues and the sinks are synchronous (sqlite3, boto3, httpx):
called on the event loop, each call stalls everything else on it, which in `huntaze
serve` means every HTTP request waits for an SQS ReceiveMessage or a SQLite write.
``off_loop`` runs such a call in a thread instead. Calls on the same object run one at a
time and in order, as they did on the loop's one thread: a SQLite store is a single
connection that must not run two transactions at once. The waiting happens on the
loop (an ``asyncio.Lock``), not in threads, so queued calls never fill the thread pool
that other work (HTTP handlers, the stats cache) needs.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# backend object -> (the loop its lock belongs to, the lock)
_LANES: weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


async def off_loop(method: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``method(*args, **kwargs)`` in a thread, one call at a time per ``method.__self__``."""
    return await off_loop_on(method.__self__, method, *args, **kwargs)  # type: ignore[attr-defined]


async def off_loop_on(owner: Any, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a thread, in turn with every other call on ``owner``."""
    loop = asyncio.get_running_loop()
    lane = _LANES.get(owner)
    if lane is None or lane[0] is not loop:
        lane = (loop, asyncio.Lock())
        _LANES[owner] = lane
    async with lane[1]:
        return await asyncio.to_thread(fn, *args, **kwargs)
