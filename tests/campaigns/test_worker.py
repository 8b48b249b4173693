"""The delivery worker decides by its clock: tests move a ManualClock instead of waiting.

The queue, the rate limiter, the campaign store and the worker share one ManualClock, so
a rate-limit window of two minutes passes in one ``advance``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from huntaze_cli.campaigns.worker import DeliveryWorker
from huntaze_cli.clock import ManualClock
from huntaze_cli.config import load_config
from huntaze_cli.sinks.outbox import OutboxSink
from huntaze_cli.storage.queue import QueueItem
from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore
from huntaze_cli.storage.sqlite.queue import SQLiteQueue
from huntaze_cli.storage.sqlite.ratelimit import SQLiteRateLimiter

WINDOW_S = 120.0  # one message per account per two minutes: longer than a 60 s lease


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def worker(tmp_path: Path, clock: ManualClock) -> Iterator[DeliveryWorker]:
    queue = SQLiteQueue(tmp_path / "queue.db", clock=clock)
    limiter = SQLiteRateLimiter(
        tmp_path / "ratelimit.db", messages=1, per_seconds=WINDOW_S, clock=clock
    )
    store = SQLiteCampaignStore(tmp_path / "campaigns.db", clock=clock)
    sink = OutboxSink(tmp_path / "outbox.jsonl")
    queue.enqueue(
        [QueueItem(f"cmp_1:fan_{i}", "cmp_1", "creator_1", f"fan_{i}", f"Hi {i}") for i in range(3)]
    )
    yield DeliveryWorker(
        load_config(), queue=queue, limiter=limiter, sink=sink, store=store, clock=clock
    )
    for resource in (queue, limiter, store, sink):
        resource.close()


def delivered(tmp_path: Path) -> list[tuple[str, str]]:
    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    return [(row["recipient_id"], row["sent_at"]) for row in map(json.loads, lines)]


def test_a_wait_longer_than_the_lease_gives_the_rest_back_until_the_window_passes(
    worker: DeliveryWorker, clock: ManualClock, tmp_path: Path
) -> None:
    start = clock.now()
    stats = asyncio.run(worker.run(once=True))
    # One slot per window: the first goes, the other two wait longer than their lease.
    assert (stats.delivered, stats.released) == (1, 2)
    assert delivered(tmp_path) == [("fan_0", start.isoformat())]

    clock.advance(WINDOW_S - 1)  # the account is still paused and its messages not due
    stats = asyncio.run(worker.run(once=True))
    assert stats.delivered == 1

    clock.advance(1)  # the window has passed: the next message goes, stamped by the clock
    stats = asyncio.run(worker.run(once=True))
    assert (stats.delivered, stats.released) == (2, 3)
    assert delivered(tmp_path)[1] == ("fan_1", clock.now().isoformat())
    assert worker.started_at == start
