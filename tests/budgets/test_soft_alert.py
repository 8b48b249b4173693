"""on_soft = "alert": a budget alerts through the alert rules, at soft_pct and at 100 %."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import run


@pytest.fixture
def alerting_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = [
        {"name": "a-day", "scope": {"tenant": "agency_a"}, "period": "day", "limit_usd": "1",
         "soft_pct": 60, "on_soft": "alert"},
        {"name": "quiet", "limit_usd": "5", "on_soft": "throttle"},
    ]  # fmt: skip
    monkeypatch.setenv("HUNTAZE_BUDGETS__RULES", json.dumps(rules))


def event(n: int, tenant: str, cost: str) -> dict[str, object]:
    return {
        "attempt_id": f"att-{n}", "request_id": f"req-{n}",
        "ts": datetime.now(UTC).isoformat(), "provider": "openai", "model": "gpt-4o-mini",
        "input_tokens": 10, "output_tokens": 10, "cost_usd": cost, "tenant": tenant,
    }  # fmt: skip


def test_a_budget_past_soft_pct_alerts_through_its_rule(
    alerting_budget: None, tmp_path: Path
) -> None:
    listed = run("thresholds", "list", "--json").json()["thresholds"]
    rule = next(r for r in listed if r["name"] == "budget:a-day")
    assert rule["source"] == "budget" and rule["scope"] == {"tenant": "agency_a"}
    assert rule["levels"] == [60, 100] and rule["limit_usd"] == 1.0
    assert not any(r["name"] == "budget:quiet" for r in listed)  # throttles, no alert
    # A stored rule cannot take a budget rule's name.
    taken = run("thresholds", "set", "budget:a-day", "--limit", "3", "--json")
    assert taken.exit_code == 2

    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(json.dumps(e) for e in [event(1, "agency_a", "0.7"), event(2, "other", "9")])
    )
    assert run("costs", "import", str(events), "--trust-cost", "--json").exit_code == 0
    check = run("check-thresholds", "--json")
    doc = check.json()
    mine = next(r for r in doc["thresholds"] if r["name"] == "budget:a-day")
    assert mine["spent_usd"] == 0.7 and mine["breached"] is False
    alerts = run("alerts", "list", "--rule", "budget:a-day", "--json").json()["alerts"]
    assert [a["level_pct"] for a in alerts] == [60]
