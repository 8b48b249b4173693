"""Several worker processes on one SQLite data dir: the rate limit holds, nothing is lost.

Real `huntaze worker` processes (the installed module as a subprocess), a real outbox,
SIGKILL at random moments; every sent timestamp is checked against the window.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from huntaze_testing.campaign_files import write_campaign
from tests.helpers import run

pytestmark = pytest.mark.slow


def env_for(isolated: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTAZE_")}
    env.update(
        {
            "XDG_DATA_HOME": str(isolated / "xdg-data"),
            "XDG_CONFIG_HOME": str(isolated / "xdg-config"),
            "HUNTAZE_QUEUE__BACKOFF__BASE_S": "0.05",
        }
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "huntaze_cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def outbox_lines(isolated: Path) -> list[dict[str, str]]:
    path = isolated / "xdg-data" / "huntaze" / "outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def assert_window(times: list[datetime], messages: int, per_seconds: float) -> None:
    times = sorted(times)
    for i in range(len(times) - messages):
        gap = (times[i + messages] - times[i]).total_seconds()
        assert gap >= per_seconds - 1e-6, f"{messages + 1} sends within {gap:.3f} s"


def test_four_workers_share_one_rate_limit(
    tmp_path: Path, isolated_dirs: Path, backends: dict[str, str]
) -> None:
    limits = {
        "HUNTAZE_RATE_LIMIT__MESSAGES": "10",
        "HUNTAZE_RATE_LIMIT__PER_SECONDS": "2",
        **backends,
    }
    for account, count in (("creator_a", 35), ("creator_b", 20)):
        queued = run("send-campaign", str(write_campaign(tmp_path, account, count)),
                     "--no-wait", "--json", env=limits)  # fmt: skip
        assert queued.exit_code == 0, queued.stderr
    env = env_for(isolated_dirs, **limits)
    workers = [start_worker(env) for _ in range(4)]
    try:
        assert wait_for(lambda: len(outbox_lines(isolated_dirs)) >= 55, timeout=40)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            assert proc.wait(timeout=20) == 0  # SIGTERM is a clean stop
    lines = outbox_lines(isolated_dirs)
    assert len(lines) == 55 and len({line["idempotency_key"] for line in lines}) == 55
    for account in ("creator_a", "creator_b"):
        times = [datetime.fromisoformat(x["sent_at"]) for x in lines if x["account"] == account]
        assert_window(times, 10, 2.0)
    # Whether accounts slow each other is a timing figure: python bench/contention.py --workers
    overview = run("status", "--json", env=limits).json()
    assert all(c["state"] == "completed" for c in overview["campaigns"])


def test_sigkilled_workers_lose_and_duplicate_nothing(
    tmp_path: Path, isolated_dirs: Path, backends: dict[str, str]
) -> None:
    settings = {
        "HUNTAZE_RATE_LIMIT__MESSAGES": "15",
        "HUNTAZE_RATE_LIMIT__PER_SECONDS": "1",
        "HUNTAZE_QUEUE__LEASE_S": "1.5",
        **backends,
    }
    queued = run("send-campaign", str(write_campaign(tmp_path, "creator_k", 60)),
                 "--no-wait", "--json", env=settings)  # fmt: skip
    assert queued.exit_code == 0, queued.stderr
    campaign_id = queued.json()["campaign_id"]
    env = env_for(isolated_dirs, **settings)
    rng = random.Random(7)
    kills = 0
    while kills < 8 and len(outbox_lines(isolated_dirs)) < 60:
        proc = start_worker(env)
        time.sleep(rng.uniform(0.3, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
    # A last worker finishes the campaign once the killed workers' leases expire.
    final = start_worker(env)
    try:
        wait_for(lambda: len(outbox_lines(isolated_dirs)) >= 60, timeout=60)
        time.sleep(0.5)  # a replay, if any, would land now
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(timeout=20) == 0
    lines = outbox_lines(isolated_dirs)
    keys = [line["idempotency_key"] for line in lines]
    assert len(keys) == len(set(keys)) == 60  # every recipient exactly once
    report = run("status", campaign_id, "--json", env=settings).json()
    assert report["state"] == "completed", report
    assert report["counts"]["sent"] == 60
    # SQS reports totals under "*", SQLite per account.
    queue = run("status", "--json", env=settings).json()["queue"]
    depth = queue.get("creator_k", queue.get("*", {}))
    assert depth.get("queued", 0) == 0 and depth.get("in_flight", 0) == 0
    exported = run("costs", "export").stdout.splitlines()
    ids = [json.loads(line)["attempt_id"] for line in exported]
    assert len(ids) == len(set(ids)) == 60  # one generation each, no duplicated event
    assert_window([datetime.fromisoformat(x["sent_at"]) for x in lines], 15, 1.0)
