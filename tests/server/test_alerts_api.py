"""Alert rules and history over HTTP: same JSON as the commands, 422/409/404 naming the
field, and the daemon evaluating the rules by itself (no cron)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from huntaze_cli.config import load_config
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from huntaze_testing.receiver import Receiver, running_receiver
from tests.helpers import run
from tests.server.conftest import Served, wait_for


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with running_receiver() as server:
        monkeypatch.setenv("SLACK_URL", server.url)
        monkeypatch.setenv("HUNTAZE_ALERTS__CHANNELS", '["slack"]')
        monkeypatch.setenv("HUNTAZE_ALERTS__SLACK_WEBHOOK_URL_ENV", "SLACK_URL")
        yield server


def test_rules_and_alerts_answer_what_the_commands_print(
    serve: Callable[..., Served], slack: Receiver
) -> None:
    client = serve(worker=False, env={"HUNTAZE_ALERTS__EVALUATE_INTERVAL_S": "0"}).client()
    put = client.put(
        "/api/v2/costs/thresholds/t-a",
        json={"scope": {"tenant": "agency_a"}, "limit_usd": "20", "levels": [80, 50]},
    )
    assert put.status_code == 200, put.text
    assert put.json()["action"] == "created" and put.json()["rule"]["levels"] == [50, 80]
    http = client.get("/api/v2/costs/thresholds").json()
    cli = run("thresholds", "list", "--json").json()
    for doc in (http, cli):
        doc.pop("checked_at")
    assert http == cli
    assert client.get("/api/v2/costs/alerts").json()["alerts"] == []
    assert client.delete("/api/v2/costs/thresholds/t-a").json()["action"] == "deleted"
    assert client.delete("/api/v2/costs/thresholds/t-a").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": {"team": "a"}, "limit_usd": "1"}, "scope"),
        ({"limit_usd": "-1"}, "limit_usd"),
        ({"limit_usd": "1", "levels": [1001]}, "levels"),
        ({"limit_usd": "1", "channels": ["pager"]}, "channels"),
        ({"limit_usd": "1", "nonsense": 1}, "nonsense"),
        ({}, "limit_usd"),
    ],
)
def test_bad_rule_bodies_are_422_naming_the_field_and_store_nothing(
    serve: Callable[..., Served], slack: Receiver, body: dict[str, Any], field: str
) -> None:
    client = serve(worker=False, env={"HUNTAZE_ALERTS__EVALUATE_INTERVAL_S": "0"}).client()
    answer = client.put("/api/v2/costs/thresholds/bad", json=body)
    assert answer.status_code == 422, answer.text
    assert field in json.dumps(answer.json())
    names = [r["name"] for r in client.get("/api/v2/costs/thresholds").json()["thresholds"]]
    assert "bad" not in names


def test_global_rules_are_409_and_unknown_alerts_404(
    serve: Callable[..., Served], slack: Receiver
) -> None:
    client = serve(worker=False, env={"HUNTAZE_ALERTS__EVALUATE_INTERVAL_S": "0"}).client()
    assert (
        client.put("/api/v2/costs/thresholds/global-daily", json={"limit_usd": 1}).status_code
        == 409
    )
    assert client.delete("/api/v2/costs/thresholds/global-monthly").status_code == 409
    assert client.post("/api/v2/costs/alerts/nope/ack").status_code == 404
    assert client.get("/api/v2/costs/alerts", params={"since": "soon"}).status_code == 422


def test_serve_evaluates_the_rules_by_itself_and_alerts_once(
    serve: Callable[..., Served], slack: Receiver
) -> None:
    ledger = SQLiteLedger(load_config().ledger_path)
    ledger.record(
        [
            CostEvent(
                attempt_id=uuid4().hex,
                request_id="r",
                ts=datetime.now(UTC) - timedelta(minutes=1),
                provider="azure",
                model="gpt-4o",
                cost_nano=60 * 10**9,
            )
        ]
    )
    ledger.close()
    client = serve(worker=False, env={"HUNTAZE_ALERTS__EVALUATE_INTERVAL_S": "1"}).client()
    wait_for(lambda: slack.received, timeout=20)
    [alert] = wait_for(lambda: client.get("/api/v2/costs/alerts").json()["alerts"], timeout=10)
    assert alert["rule"] == "global-daily" and alert["channels"]["slack"]["status"] == "sent"
    acked = client.post(f"/api/v2/costs/alerts/{alert['alert_id']}/ack")
    assert acked.status_code == 200 and acked.json()["alert_id"] == alert["alert_id"]
    assert "global-daily (all) reached 100%" in json.loads(slack.received[0].body)["text"]
