"""`huntaze budgets list` and GET /api/v2/costs/budgets: one core, the same JSON."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from huntaze_cli.config import load_config
from huntaze_cli.storage.budgets import Claim, Settlement
from huntaze_cli.storage.sqlite.budgets import SQLiteReservationStore
from tests.helpers import run
from tests.server.conftest import Served

RULES = [
    {"name": "all-month", "limit_usd": "10", "soft_pct": 50},
    {"name": "a-day", "scope": {"tenant": "agency_a"}, "period": "day", "limit_usd": "0.5"},
]


@pytest.fixture
def budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUNTAZE_BUDGETS__RULES", json.dumps(RULES))


def spend(budget: str, period: str, *, spent: int, reserved: int) -> None:
    """Figures as calls would leave them: one settled, one still in flight."""
    config = load_config()
    store = SQLiteReservationStore(config.ledger_path.parent / "budgets.db")
    try:
        settled = [Claim(budget, period, 10**15, spent)]
        assert store.reserve("settled", settled, ttl_s=300).held
        store.settle([Settlement("settled", settled, spent)])
        assert store.reserve("flying", [Claim(budget, period, 10**15, reserved)], ttl_s=300).held
    finally:
        store.close()


def test_every_budget_with_spent_reserved_remaining_and_state(budgets: None) -> None:
    first = run("budgets", "list", "--json").json()
    month = first["budgets"][0]["period_label"]
    spend("all-month", month, spent=6_000_000_000, reserved=1_500_000_000)
    result = run("budgets", "list", "--json")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    by_name = {b["name"]: b for b in doc["budgets"]}
    assert list(by_name) == ["all-month", "a-day"]
    month_budget = by_name["all-month"]
    assert month_budget["scope"] == {} and month_budget["period"] == "month"
    assert (month_budget["spent_usd"], month_budget["spent_nano"]) == (6.0, 6_000_000_000)
    assert (month_budget["reserved_usd"], month_budget["reserved_nano"]) == (1.5, 1_500_000_000)
    assert (month_budget["remaining_usd"], month_budget["remaining_nano"]) == (2.5, 2_500_000_000)
    assert month_budget["limit_nano"] == 10_000_000_000
    assert month_budget["state"] == "soft"  # 75 % used, soft from 50 %
    day = by_name["a-day"]
    assert day["scope"] == {"tenant": "agency_a"} and day["state"] == "ok"
    assert day["remaining_nano"] == day["limit_nano"] == 500_000_000
    table = run("budgets", "list")
    assert table.exit_code == 0 and "all-month" in table.stdout and "soft" in table.stdout


def test_with_no_budget_the_list_is_empty() -> None:
    doc = run("budgets", "list", "--json").json()
    assert doc["budgets"] == []
    assert "no budgets" in run("budgets", "list").stdout


def test_the_route_answers_what_the_command_prints(
    budgets: None, serve: Callable[..., Served]
) -> None:
    month = run("budgets", "list", "--json").json()["budgets"][0]["period_label"]
    spend("all-month", month, spent=123_456_789, reserved=1)
    client = serve(worker=False).client()
    http = client.get("/api/v2/costs/budgets")
    assert http.status_code == 200, http.text
    cli = run("budgets", "list", "--json").json()
    answer = http.json()
    for doc in (answer, cli):
        doc.pop("generated_at")
    assert answer == cli
    assert answer["budgets"][0]["spent_nano"] == 123_456_789


def test_a_tenant_quota_is_a_monthly_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUNTAZE_TENANTS__AGENCY_B__QUOTA_USD_MONTH", "300")
    (quota,) = run("budgets", "list", "--json").json()["budgets"]
    assert quota["name"] == "quota:agency_b" and quota["scope"] == {"tenant": "agency_b"}
    assert (quota["period"], quota["limit_nano"]) == ("month", 300_000_000_000)
