"""Budget drills: eight `send-campaign` processes race for one $0.05 budget, on SQLite and
on DynamoDB (a moto server), against the fake upstream in its own process.

While they run a thread samples the budget's spent + reserved: it never passes the
limit. Afterwards every message is generated once (one successful ledger event per
request id) or still pending with its campaign paused_budget, nothing is dead, nothing
stays reserved, and what was spent is within one call's worst case of the limit. The
kill -9 drill kills every process with calls in flight: their reservations keep counting
until reservation_ttl_s, then the budget is usable again and the campaigns finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.budgets.rules import current_period
from huntaze_cli.config import load_config
from huntaze_cli.models import CostEvent
from huntaze_cli.storage import open_ledger, open_reservation_store
from huntaze_testing.fake_llm import FakeLLMProcess

pytestmark = pytest.mark.slow

KEY = "sk-drill-budget-0123456789"
PROCESSES = 8
RECIPIENTS = 40
LIMIT_NANO = 50_000_000  # $0.05
# gpt-4o at $2.50 / $10 per million tokens: a call's worst case is its ~30 estimated
# input tokens plus max_tokens = 40 output tokens, under 500 000 nano-dollars; the fake
# upstream answers 24 tokens, about 290 000.
WORST_NANO = 500_000


@pytest.fixture
def upstream() -> Iterator[FakeLLMProcess]:
    with FakeLLMProcess(latency_ms=20, openai_keys=[KEY]) as srv:
        yield srv


def drill_env(upstream: FakeLLMProcess, backend: dict[str, str], ttl_s: int) -> dict[str, str]:
    rule = {"name": "drill", "limit_usd": "0.05"}
    return {
        **os.environ,
        **backend,
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": upstream.openai_base_url,
        "HUNTAZE_ROUTING__ORDER": '["openai"]',
        "HUNTAZE_BUDGETS__RULES": json.dumps([rule]),
        "HUNTAZE_BUDGETS__RESERVATION_TTL_S": str(ttl_s),
        "HUNTAZE_CAMPAIGNS__GENERATION_LEASE_S": "3",
    }


def campaign_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"campaign-{n}.json"
    recipients = [{"id": f"fan_{i}", "name": f"Fan {i}"} for i in range(RECIPIENTS)]
    path.write_text(
        json.dumps(
            {
                "name": f"drill {n}",
                "account": f"creator_{n}",
                "model": "gpt-4o",
                "max_tokens": 40,
                "prompt": "Write a thank-you to {name}.",
                "recipients": recipients,
            }
        )
    )
    return path


def huntaze(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "huntaze_cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Sampler:
    """Reads the budget's spent + reserved as fast as it can, in a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.used: list[int] = []
        self.reserved: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        store, label = budget_store(self.env)
        try:
            while not self._stop.is_set():
                usage = store.usage("drill", label)
                self.used.append(usage.used_nano)
                self.reserved.append(usage.reserved_nano)
        finally:
            store.close()


def budget_store(env: dict[str, str]) -> tuple[Any, str]:
    config = load_config(environ=env)
    label = current_period("month", time.time_ns() and _now(), config.thresholds.tz).label
    return open_reservation_store(config), label


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def status(campaign_id: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "huntaze_cli", "status", campaign_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def ledger_events(env: dict[str, str], generated: int) -> list[CostEvent]:
    """The ledger's events, checked: one successful event per generated message."""
    ledger = open_ledger(load_config(environ=env))
    try:
        events = list(ledger.events())
    finally:
        ledger.close()
    ok = Counter(e.request_id for e in events if e.status == "ok")
    assert max(ok.values(), default=1) == 1, "a message was generated twice"
    assert sum(ok.values()) == generated
    return events


def check_ledger(env: dict[str, str], generated: int) -> None:
    """One successful event per generated message; the budget's spend is the ledger's."""
    events = ledger_events(env, generated)
    store, label = budget_store(env)
    try:
        usage = store.usage("drill", label)
    finally:
        store.close()
    assert usage.reserved_nano == 0
    assert usage.spent_nano == sum(e.cost_nano for e in events)


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    endpoint = request.getfixturevalue("moto_server")
    # moto keeps its tables in the test process, from one server to the next: a table of
    # its own per drill, so no drill starts with another's spend.
    table = "drill-" + request.node.name.split("[")[0].removeprefix("test_")[:40]
    return {
        "HUNTAZE_LEDGER__BACKEND": "dynamodb",
        "HUNTAZE_LEDGER__TABLE": table,
        "HUNTAZE_LEDGER__ENDPOINT_URL": endpoint,
        "HUNTAZE_LEDGER__REGION": "us-east-1",
        "HUNTAZE_LEDGER__CREATE_TABLES": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def start_all(tmp_path: Path, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    # The stores exist before the race (schema, table), as after any first run.
    store, _ = budget_store(env)
    store.close()
    return [
        huntaze("send-campaign", str(campaign_file(tmp_path, n)), "--no-wait", "--json", env=env)
        for n in range(PROCESSES)
    ]


def test_eight_processes_never_pass_the_budget(
    tmp_path: Path, upstream: FakeLLMProcess, backend: dict[str, str]
) -> None:
    env = drill_env(upstream, backend, ttl_s=300)
    with Sampler(env) as sampler:
        procs = start_all(tmp_path, env)
        outputs = [proc.communicate(timeout=240) for proc in procs]
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode in (0, 3), err
        reports.append(json.loads(out))
    assert sampler.used and max(sampler.used) <= LIMIT_NANO
    assert any(r > 0 for r in sampler.reserved), "the sampler never saw a call in flight"
    generated = 0
    for report in reports:
        counts = report["counts"]
        assert counts["dead"] == counts["failed"] == 0
        assert counts["pending"] + counts["generated"] + counts["queued"] == RECIPIENTS
        if counts["pending"]:
            assert report["state"] == "paused_budget" and report["paused_by"] == "drill"
        generated += counts["generated"] + counts["queued"]
    assert 0 < generated < PROCESSES * RECIPIENTS
    check_ledger(env, generated)
    store, label = budget_store(env)
    try:
        spent = store.usage("drill", label).spent_nano
    finally:
        store.close()
    assert LIMIT_NANO - WORST_NANO < spent <= LIMIT_NANO


def test_killed_processes_reservations_expire_and_the_budget_is_usable_again(
    tmp_path: Path, upstream: FakeLLMProcess, backend: dict[str, str]
) -> None:
    ttl_s = 4
    upstream.set_latency(2_000)  # calls stay in flight long enough to be killed mid-way
    env = drill_env(upstream, backend, ttl_s=ttl_s)
    procs = start_all(tmp_path, env)
    store, label = budget_store(env)
    try:
        deadline = time.monotonic() + 60
        while store.usage("drill", label).reserved_nano < PROCESSES * 100_000:
            assert time.monotonic() < deadline, "the processes never reserved"
            time.sleep(0.05)
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
        # Dead processes' calls count as spent until their reservations expire.
        held = store.usage("drill", label)
        assert held.reserved_nano > 0
        time.sleep(ttl_s + 0.5)
        after = store.usage("drill", label)
        assert after.reserved_nano == 0
        assert after.spent_nano == held.spent_nano
    finally:
        store.close()
    # The budget is usable again: the killed campaigns resume and write messages.
    upstream.set_latency(5)
    time.sleep(3.5)  # their generation leases (3 s) lapse
    worker = subprocess.run(
        [sys.executable, "-m", "huntaze_cli", "worker", "--once", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert worker.returncode == 0, worker.stderr
    campaigns = subprocess.run(
        [sys.executable, "-m", "huntaze_cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    recent = json.loads(campaigns.stdout)["campaigns"]
    generated = 0
    for item in recent:
        report = status(item["campaign_id"], env)
        counts = report["counts"]
        assert counts["dead"] == counts["failed"] == 0
        assert counts["pending"] + counts["generated"] + counts["queued"] + counts["sent"] == (
            RECIPIENTS
        )
        generated += RECIPIENTS - counts["pending"]
    assert generated > 0
    # Killed calls are in the ledger (the journal recovered them) and never twice.
    ledger_events(env, generated)
