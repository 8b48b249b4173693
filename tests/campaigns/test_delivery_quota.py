"""A tenant's daily delivery quota (`[tenants.<name>] quota_messages_day`) in the worker.

Real campaigns through `send-campaign --no-wait` and real workers (in-process, then as
processes racing on one data dir): a tenant gets exactly its quota of deliveries in its
day, the rest wait in the queue (due when the day turns), other tenants are untouched.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from huntaze_cli.clock import ManualClock
from huntaze_cli.config import default_config_path, load_config
from huntaze_cli.storage.sqlite.queue import SQLiteQueue
from huntaze_testing.campaign_files import write_campaign
from tests.campaigns.test_delivery_processes import env_for, outbox_lines, start_worker, wait_for
from tests.helpers import run

FAST = {"HUNTAZE_RATE_LIMIT__MESSAGES": "1000", "HUNTAZE_RATE_LIMIT__PER_SECONDS": "1"}


def write_config(quota: int) -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[thresholds]\ntimezone = "Asia/Kathmandu"\n\n'
        f"[tenants.agency_q]\nquota_messages_day = {quota}\n\n[tenants.agency_free]\n"
    )


def queue_campaign(directory: Path, account: str, tenant: str, count: int) -> str:
    spec = write_campaign(directory, account, count, name="q", tenant=tenant)
    queued = run("send-campaign", str(spec), "--no-wait", "--json", env=FAST)
    assert queued.exit_code == 0, queued.stderr
    return str(queued.json()["campaign_id"])


def sent_by_account(lines: list[dict[str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        out[line["account"]] = out.get(line["account"], 0) + 1
    return out


def test_a_tenant_gets_its_quota_a_day_and_the_rest_waits(
    tmp_path: Path, isolated_dirs: Path
) -> None:
    write_config(quota=4)
    quota_a = queue_campaign(tmp_path, "creator_q1", "agency_q", 5)
    quota_b = queue_campaign(tmp_path, "creator_q2", "agency_q", 3)
    queue_campaign(tmp_path, "creator_free", "agency_free", 6)
    first = run("worker", "--once", "--json", env=FAST)
    assert first.exit_code == 0, first.stderr
    assert first.json()["delivered"] == 4 + 6 and first.json()["over_quota"] == 4
    # Another worker (another process, the same store) finds the day's quota used up.
    second = run("worker", "--once", "--json", env=FAST)
    assert second.json()["delivered"] == 0
    sent = sent_by_account(outbox_lines(isolated_dirs))
    assert sent.get("creator_q1", 0) + sent.get("creator_q2", 0) == 4
    assert sent["creator_free"] == 6
    for campaign_id in (quota_a, quota_b):
        report = run("status", campaign_id, "--json", env=FAST).json()
        assert report["counts"]["sent"] + report["counts"]["queued"] == report["recipients"]
    # The rest is due when the tenant's day (Asia/Kathmandu) turns, not dropped.
    tz = ZoneInfo("Asia/Kathmandu")
    local = datetime.now(tz).date() + timedelta(days=1)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz).astimezone(UTC)
    clock = ManualClock(midnight - timedelta(seconds=5))
    queue = SQLiteQueue(load_config().queue_path, clock=clock)
    assert queue.lease(limit=10, lease_s=30) == []
    clock.advance(6)
    due = queue.lease(limit=10, lease_s=30)
    assert len(due) == 4 and {lease.item.account for lease in due} <= {"creator_q1", "creator_q2"}
    queue.close()


@pytest.mark.slow
def test_workers_racing_on_one_store_never_exceed_the_quota(
    tmp_path: Path, isolated_dirs: Path
) -> None:
    write_config(quota=7)
    for n in range(3):
        queue_campaign(tmp_path, f"creator_r{n}", "agency_q", 6)
    env = env_for(isolated_dirs, **FAST)
    workers = [start_worker(env) for _ in range(3)]
    try:
        assert wait_for(lambda: len(outbox_lines(isolated_dirs)) >= 7, timeout=40)
        wait_for(lambda: len(outbox_lines(isolated_dirs)) > 7, timeout=2)  # would overshoot
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            assert proc.wait(timeout=20) == 0
    lines = outbox_lines(isolated_dirs)
    assert len(lines) == 7, json.dumps(lines)[:500]
