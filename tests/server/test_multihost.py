"""Two hosts for real: two `huntaze serve` processes share one campaign state.

"aws": each host has its own data dir; campaigns, provider state, ledger, rate limiter
and queue are DynamoDB + SQS on one moto server. "sqlite": the same drill with one
shared data dir. A campaign is posted to host A and its generation is cut short by
SIGKILL: host B resumes it (the lease lapsed) and delivers it, A comes back and helps.
Both hosts then report the same counts, every recipient was delivered once, the rate
limit held across hosts, and a provider that failed on A shows open in `health` on B
before B ever called it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from huntaze_testing.fake_llm import FakeLLM
from tests.server.conftest import Process, campaign, wait_for
from tests.server.test_process import AUTH, CAMPAIGNS, HEADERS, assert_window, status

pytestmark = pytest.mark.slow

RECIPIENTS = 24


@pytest.fixture
def failing_llm() -> Iterator[FakeLLM]:
    """An OpenAI-compatible upstream that answers every call with a 500."""
    with FakeLLM() as server:
        server.configure("openai", mix={"500": 1.0})
        yield server


@pytest.fixture(params=["aws", "sqlite"])
def hosts(
    request: pytest.FixtureRequest, tmp_path: Path, failing_llm: FakeLLM
) -> dict[str, dict[str, str]]:
    """The environment of host A and of host B."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[providers.flaky]\nkind = "openai"\nbase_url = "{failing_llm.openai_base_url}"\n'
        'api_key_env = "FAKE_OPENAI_KEY"\n\n'
        '[providers.sim]\nkind = "simulated"\nlatency_ms = 400\n'
    )
    common = {
        **AUTH,
        "FAKE_OPENAI_KEY": "k",
        "HUNTAZE_CONFIG": str(config),
        "HUNTAZE_ROUTING__ORDER": '["flaky", "sim"]',
        "HUNTAZE_ROUTING__CONCURRENCY": "1",
        "HUNTAZE_ROUTING__CIRCUIT_FAILURE_THRESHOLD": "1",
        "HUNTAZE_ROUTING__CIRCUIT_COOLDOWN_S": "600",
        "HUNTAZE_RATE_LIMIT__MESSAGES": "3",
        "HUNTAZE_CAMPAIGNS__GENERATION_LEASE_S": "1",
    }
    if request.param == "sqlite":
        shared = {"XDG_DATA_HOME": str(tmp_path / "shared-data")}
        return {"a": {**common, **shared}, "b": {**common, **shared}}
    backends = request.getfixturevalue("backends_aws")
    return {
        name: {**common, **backends, "XDG_DATA_HOME": str(tmp_path / f"host-{name}")}
        for name in ("a", "b")
    }


@pytest.fixture
def backends_aws(moto_server: str) -> dict[str, str]:
    """Every shared store on one moto server: SQS queue, DynamoDB for the rest."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"huntaze-mh-{time.time_ns()}")["QueueUrl"]
    env = {"HUNTAZE_QUEUE__BACKEND": "sqs", "HUNTAZE_QUEUE__QUEUE_URL": url}
    for section in ("QUEUE", "RATE_LIMIT", "LEDGER", "CAMPAIGNS"):
        env[f"HUNTAZE_{section}__ENDPOINT_URL"] = moto_server
        env[f"HUNTAZE_{section}__REGION"] = "us-east-1"
        if section != "QUEUE":
            env[f"HUNTAZE_{section}__BACKEND"] = "dynamodb"
            env[f"HUNTAZE_{section}__CREATE_TABLES"] = "true"
            env[f"HUNTAZE_{section}__TABLE"] = f"mh-{section.lower()}-{time.time_ns()}"
    return env


def outbox(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["XDG_DATA_HOME"]) / "huntaze" / "outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def health(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "huntaze_cli", "health", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
    )
    return dict(json.loads(result.stdout))


def test_a_campaign_posted_to_one_host_is_finished_by_the_other(
    spawn: Callable[..., Process], hosts: dict[str, dict[str, str]]
) -> None:
    a, b = spawn(env=hosts["a"]), spawn(env=hosts["b"])
    body = campaign(RECIPIENTS, account="creator_mh")
    response = httpx.post(a.url + CAMPAIGNS, json=body, headers=HEADERS, timeout=10)
    assert response.status_code == 202, response.text
    cid = response.json()["campaign_id"]

    # A's calls to "flaky" fail: its breaker opens, and B, which has called nothing, sees it.
    wait_for(lambda: health(hosts["b"])["providers"]["flaky"]["circuit"] == "open", timeout=30)
    assert status(b.url, cid)["counts"]["pending"] > 0  # A is still generating

    a.signal(signal.SIGKILL)  # gone mid-generation: its lease lapses, B resumes
    a.proc.wait(10)
    wait_for(lambda: status(b.url, cid)["counts"]["pending"] == 0, timeout=60)
    assert any(line.get("msg") == "finishing an interrupted campaign" for line in b.lines())
    a = spawn(env=hosts["a"])  # back: helps deliver
    wait_for(lambda: status(a.url, cid)["state"] == "completed", timeout=60)

    report_a, report_b = status(a.url, cid), status(b.url, cid)
    assert report_a["counts"] == report_b["counts"]
    assert report_a["counts"]["sent"] == RECIPIENTS
    lines = outbox(hosts["a"]) + ([] if hosts["a"] == hosts["b"] else outbox(hosts["b"]))
    keys = [line["idempotency_key"] for line in lines]
    assert sorted(keys) == sorted(f"{cid}:fan_{n}" for n in range(RECIPIENTS))  # each once
    assert_window([datetime.fromisoformat(line["sent_at"]) for line in lines], 3, 1.0)
    if hosts["a"] != hosts["b"]:
        assert outbox(hosts["b"]), "host B delivered nothing"
    assert a.stop() == 0 and b.stop() == 0
