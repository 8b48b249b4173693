"""`huntaze serve` as real processes: SIGTERM with work in flight, two daemons sharing
one data dir, SIGHUP reloading the config, the JSON access log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from huntaze_cli.config import load_config
from huntaze_cli.storage import open_queue
from tests.server.conftest import Process, campaign, outbox, wait_for

pytestmark = pytest.mark.slow

# Every daemon here requires a token, as one reachable from other hosts would.
TOKEN = "process-test-token-5f1c9e"
AUTH = {"HUNTAZE_SERVER__TOKEN_ENV": "HUNTAZE_TEST_TOKEN", "HUNTAZE_TEST_TOKEN": TOKEN}
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

CAMPAIGNS = "/api/v2/campaigns/hybrid"
STATUS = "/api/v2/campaigns/status"
STATS = "/api/v2/costs/stats"


def status(url: str, campaign_id: str | None = None) -> dict[str, Any]:
    params = {"campaign_id": campaign_id} if campaign_id else {}
    response = httpx.get(url + STATUS, params=params, headers=HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_sigterm_with_deliveries_waiting_loses_nothing(spawn: Callable[..., Process]) -> None:
    # Two messages per 30 s: after two deliveries the worker holds the other leases
    # while it waits for the rate limit, which is what SIGTERM must give back.
    env = {"HUNTAZE_RATE_LIMIT__MESSAGES": "2", "HUNTAZE_RATE_LIMIT__PER_SECONDS": "30"}
    daemon = spawn(env={**AUTH, **env})
    response = httpx.post(daemon.url + CAMPAIGNS, json=campaign(6), headers=HEADERS, timeout=10)
    assert response.status_code == 202
    cid = response.json()["campaign_id"]
    wait_for(lambda: len(outbox()) == 2, timeout=20)
    wait_for(lambda: status(daemon.url)["queue"]["creator_t"]["in_flight"] == 4, timeout=10)
    metrics = httpx.get(daemon.url + "/metrics", headers=HEADERS, timeout=10).text
    assert 'huntaze_ratelimit_acquires_total{outcome="wait"}' in metrics
    assert 'huntaze_queue_depth{account="creator_t",state="in_flight"} 4.0' in metrics
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(15) == 0
    delivered = {line["idempotency_key"] for line in outbox()}
    depth = open_queue(load_config()).depth()["creator_t"]
    assert len(delivered) == 2
    assert (depth.queued, depth.in_flight, depth.dead) == (4, 0, 0)  # all back, none leased
    messages = [line for line in daemon.lines() if "msg" in line]
    assert any(line["msg"] == "daemon stopped" for line in messages)
    requests = [line for line in messages if line.get("logger") == "huntaze.access"]
    assert requests, "no access-log lines"
    post = next(line for line in requests if line["method"] == "POST")
    assert post["path"] == CAMPAIGNS and post["status"] == 202
    assert post["duration_ms"] > 0 and post["client"].startswith("127.0.0.1:")
    assert all("raw" not in line for line in daemon.lines()), "a log line is not JSON"
    assert TOKEN not in daemon.log.read_text()
    assert status_counts(cid) == {"sent": 2, "queued": 4}


def status_counts(campaign_id: str) -> dict[str, int]:
    from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore

    store = SQLiteCampaignStore(load_config().campaigns_path)
    try:
        return {state: n for state, n in store.counts(campaign_id).items() if n}
    finally:
        store.close()


def assert_window(times: list[datetime], messages: int, per_seconds: float) -> None:
    times = sorted(times)
    for i in range(len(times) - messages):
        gap = (times[i + messages] - times[i]).total_seconds()
        assert gap >= per_seconds - 1e-6, f"{messages + 1} deliveries within {gap:.3f} s"


def test_two_daemons_share_queue_rate_limit_and_ledger(
    spawn: Callable[..., Process], backends: dict[str, str]
) -> None:
    """Two daemons on one data dir; with "aws", queue and limiter on one moto server."""
    env = {**AUTH, "HUNTAZE_RATE_LIMIT__MESSAGES": "3", **backends}
    first, second = spawn(env=env), spawn(env=env)
    ids = []
    for daemon in (first, second):
        body = campaign(6, account="creator_shared")
        response = httpx.post(daemon.url + CAMPAIGNS, json=body, headers=HEADERS, timeout=10)
        assert response.status_code == 202
        ids.append(response.json()["campaign_id"])
    for cid in ids:
        wait_for(lambda cid=cid: status(first.url, cid)["state"] == "completed", timeout=30)
    lines = outbox()
    keys = [line["idempotency_key"] for line in lines]
    assert sorted(keys) == sorted(f"{cid}:fan_{n}" for cid in ids for n in range(6))
    assert len(keys) == len(set(keys)) == 12  # every key once
    assert_window([datetime.fromisoformat(line["sent_at"]) for line in lines], 3, 1.0)
    # One ledger: either daemon sees both campaigns' cost events.
    for daemon in (first, second):
        stats = httpx.get(daemon.url + STATS, headers=HEADERS, timeout=10).json()
        assert stats["today"]["requests"] == 12
    # And no message was delivered twice by the two workers together.
    sent = 0.0
    for daemon in (first, second):
        metrics = httpx.get(daemon.url + "/metrics", headers=HEADERS, timeout=10)
        for line in metrics.text.splitlines():
            if line.startswith('huntaze_deliveries_total{outcome="sent"}'):
                sent += float(line.split()[-1])
    assert sent == 12
    assert first.stop() == 0 and second.stop() == 0
    assert all(TOKEN not in daemon.log.read_text() for daemon in (first, second))


CONFIG = """
[providers.sim_a]
kind = "simulated"

[providers.sim_b]
kind = "simulated"

[routing]
order = ["sim_a", "sim_b"]

[thresholds]
daily_usd = {daily}

[flags]
hybrid_routing = {hybrid}
legacy_provider = "sim_b"
"""


def test_sighup_reloads_config_and_flags(spawn: Callable[..., Process], tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(daily=50, hybrid="true"))
    daemon = spawn("--no-worker", env={**AUTH, "HUNTAZE_CONFIG": str(path)})

    def providers_of(cid: str) -> dict[str, Any]:
        return wait_for(lambda: status(daemon.url, cid)["providers"], timeout=15)

    def post() -> str:
        response = httpx.post(daemon.url + CAMPAIGNS, json=campaign(2), headers=HEADERS, timeout=10)
        assert response.status_code == 202
        return str(response.json()["campaign_id"])

    def daily_limit() -> float:
        stats = httpx.get(daemon.url + STATS, headers=HEADERS, timeout=10).json()
        return float(stats["thresholds"]["daily"]["limit_usd"])

    assert set(providers_of(post())) == {"sim_a"}
    assert daily_limit() == 50.0
    # Requests keep being answered while the config is swapped.
    answers: list[int] = []
    done = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=daemon.url, headers=HEADERS, timeout=10) as client:
            while not done.is_set():
                answers.append(client.get(STATUS).status_code)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        path.write_text(CONFIG.format(daily=75, hybrid="false"))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: daily_limit() == 75.0, timeout=10)
        time.sleep(0.2)
    finally:
        done.set()
        thread.join(10)
    assert answers and set(answers) == {200}
    assert set(providers_of(post())) == {"sim_b"}  # hybrid routing off: the legacy path
    # A broken file keeps the running config, with a warning in the log.
    path.write_text(CONFIG.format(daily='"lots"', hybrid="true"))
    daemon.signal(signal.SIGHUP)
    wait_for(
        lambda: any(line.get("msg", "").startswith("config reload failed")
                    for line in daemon.lines()),
        timeout=10,
    )  # fmt: skip
    assert daily_limit() == 75.0
    assert set(providers_of(post())) == {"sim_b"}
    assert daemon.stop() == 0


def test_the_daemon_logs_the_core_modules_warnings_as_json_too() -> None:
    """A warning from the core (a ledger upgrade, an alert channel) is a JSON line in
    serve's log like the daemon's own, never plain text from logging's last resort."""
    script = (
        "import logging\n"
        "from huntaze_cli.server.asgi import configure_logging\n"
        "configure_logging('info')\n"
        "logging.getLogger('huntaze_cli.storage.sqlite.db').warning('upgrading %s', 'x.db')\n"
        "logging.getLogger('huntaze.alerts').warning('channel down')\n"
        "logging.getLogger('huntaze.server').info('daemon started')\n"
        "logging.getLogger('huntaze_cli.costs').debug('not at info')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["logger"], line["msg"]) for line in lines] == [
        ("huntaze_cli.storage.sqlite.db", "upgrading x.db"),
        ("huntaze.alerts", "channel down"),
        ("huntaze.server", "daemon started"),
    ]
