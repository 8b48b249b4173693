"""SQLite queue specifics: several processes sharing one file, crashes, errors."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest

from huntaze_cli.clock import ManualClock
from huntaze_cli.errors import BackendError
from huntaze_cli.storage.queue import QueueItem
from huntaze_cli.storage.sqlite.db import applied_migrations
from huntaze_cli.storage.sqlite.queue import SQLiteQueue

WORKERS = 4
ITEMS = 1000


def _items(n: int) -> list[QueueItem]:
    return [
        QueueItem(f"cmp_1:fan_{i}", "cmp_1", f"acct_{i % 7}", f"fan_{i}", f"hi {i}")
        for i in range(n)
    ]


def _drain(path: str, start: Barrier, out: str) -> None:
    """A worker process: lease and ack until the queue stays empty; log what it acked."""
    queue = SQLiteQueue(Path(path))
    acked: list[str] = []
    start.wait()  # all together, so they contend for the same items
    idle = 0
    while idle < 3:
        leases = queue.lease(limit=2, lease_s=60)
        if not leases:
            idle += 1
            time.sleep(0.01)
            continue
        idle = 0
        for lease in leases:
            # Every lease is live (60 s) until acked, so each ack must succeed.
            assert queue.ack(lease), lease.item.key
            acked.append(lease.item.key)
    queue.close()
    Path(out).write_text("\n".join(acked))


def _hold(path: str, ready: Event) -> None:
    """A worker process that leases three items and then hangs until killed."""
    queue = SQLiteQueue(Path(path))
    queue.lease(limit=3, lease_s=1.0)
    ready.set()
    time.sleep(60)


@pytest.mark.slow
def test_processes_share_one_file_and_ack_each_item_once(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SQLiteQueue(path)
    assert queue.enqueue(_items(ITEMS)) == ITEMS
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WORKERS)
    outs = [tmp_path / f"acked_{n}.txt" for n in range(WORKERS)]
    procs = [ctx.Process(target=_drain, args=(str(path), start, str(out))) for out in outs]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    per_worker = [[key for key in out.read_text().split("\n") if key] for out in outs]
    # How the work splits is up to SQLite's (unfair) lock; correctness is what counts.
    acked = [key for keys in per_worker for key in keys]
    # Each item leased (and acked) by exactly one process: no two live leases shared one.
    assert len(acked) == ITEMS
    assert set(acked) == {item.key for item in _items(ITEMS)}
    assert queue.depth() == {}
    assert queue.lease(limit=10, lease_s=1) == []
    assert queue.enqueue(_items(ITEMS)) == 0  # all delivered: nothing comes back
    queue.close()


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    clock = ManualClock(time.time())
    queue = SQLiteQueue(path, clock=clock)
    queue.enqueue(_items(5))
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(path), ready))
    proc.start()
    try:
        assert ready.wait(timeout=30)
        os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        proc.join(timeout=10)
        # The worker leased for 1 s on the real clock, before now: catch up with it.
        clock.advance(time.time() - clock.time())
        # The two it did not lease are free; the three it held wait for their lease.
        free = queue.lease(limit=10, lease_s=30)
        assert [lease.item.key for lease in free] == ["cmp_1:fan_3", "cmp_1:fan_4"]
        assert queue.depth()
        clock.advance(1.1)
        recovered = queue.lease(limit=10, lease_s=30)
        assert sorted(lease.item.key for lease in recovered) == [
            "cmp_1:fan_0",
            "cmp_1:fan_1",
            "cmp_1:fan_2",
        ]
        assert all(lease.attempts == 0 for lease in recovered)
        for lease in free + recovered:
            assert queue.ack(lease)
        assert queue.depth() == {}
    finally:
        if proc.is_alive():
            proc.kill()
        queue.close()


def test_schema_is_a_named_migration_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    with SQLiteQueue(path) as queue:
        queue.enqueue(_items(2))
    with SQLiteQueue(path) as queue:
        with closing(sqlite3.connect(path)) as conn:
            assert "queue_001_tables" in applied_migrations(conn)
        assert len(queue.lease(limit=10, lease_s=5)) == 2


def test_errors_are_backend_errors(tmp_path: Path) -> None:
    not_a_db = tmp_path / "queue.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BackendError, match="queue.db"):
        SQLiteQueue(not_a_db)
    queue = SQLiteQueue(tmp_path / "other.db")
    queue.close()
    with pytest.raises(BackendError, match="closed"):
        queue.lease(limit=1, lease_s=1)


def test_open_queue_picks_sqlite_without_boto3(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from huntaze_cli.storage import open_queue\n"
        "from huntaze_cli.config import load_config\n"
        "queue = open_queue(load_config())\n"
        "print(type(queue).__name__, 'boto3' in sys.modules)\n"
    )
    env = {**os.environ, "HUNTAZE_QUEUE__PATH": str(tmp_path / "q.db")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["SQLiteQueue", "False"]
    assert (tmp_path / "q.db").exists()


@pytest.mark.slow
def test_delivered_keys_stay_bounded_over_100k_deliveries(tmp_path: Path) -> None:
    """Old delivered keys are forgotten every PRUNE_EVERY acks; recent ones are kept."""
    from huntaze_cli.storage.sqlite.queue import PRUNE_EVERY

    queue = SQLiteQueue(tmp_path / "queue.db", delivered_keep_s=0.0)
    total, largest = 100_000, 0
    for start in range(0, total, 5_000):
        queue.enqueue(
            [
                QueueItem(f"c:{n}", "c", f"a{n % 50}", str(n), "hi")
                for n in range(start, start + 5_000)
            ]
        )
        while leases := queue.lease(limit=1_000, lease_s=60):
            for lease in leases:
                assert queue.ack(lease)
        with sqlite3.connect(tmp_path / "queue.db") as conn:
            largest = max(largest, conn.execute("SELECT COUNT(*) FROM delivered").fetchone()[0])
    assert largest <= PRUNE_EVERY
    # A key delivered just now is still remembered: enqueueing it again adds nothing.
    keeping = SQLiteQueue(tmp_path / "keep.db")
    keeping.enqueue([QueueItem("c:x", "c", "a", "x", "hi")])
    (lease,) = keeping.lease(limit=1, lease_s=60)
    keeping.ack(lease)
    assert keeping.enqueue([QueueItem("c:x", "c", "a", "x", "hi")]) == 0
    keeping.close()
    queue.close()
