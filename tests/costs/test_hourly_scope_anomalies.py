"""Hourly spikes per account, tenant and model (the quarter-hour scope rollups), on SQLite
and DynamoDB, and through `costs anomalies --by account`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from huntaze_cli.config import load_config
from huntaze_cli.costs.anomaly_report import anomaly_report
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import Ledger
from tests.costs.history import record
from tests.helpers import make_event, run

ACCOUNTS = ("creator_1", "creator_2", "creator_3")
USUAL_NANO = 200_000_000  # per account and hour


def steady_hours(now: datetime, *, days: int) -> list[CostEvent]:
    """Every account's usual spend, once an hour at :07, for ``days`` days up to ``now``
    (the hour still running included when it is past :07)."""
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
    events, n = [], 0
    while hour + timedelta(minutes=7) < now:
        for k, account in enumerate(ACCOUNTS):
            events.append(
                make_event(
                    n,
                    ts=hour + timedelta(minutes=7),
                    account=account,
                    tenant=f"agency_{k}",
                    model=("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")[k],
                    cost_nano=USUAL_NANO + (n % 5) * 3_000_001,
                )
            )
            n += 1
        hour += timedelta(hours=1)
    return events


def runaway(now: datetime, account: str, **fields: Any) -> list[CostEvent]:
    """Twice the usual hour more, this hour: the account runs at three times its usual."""
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    return [
        make_event(
            900_000 + n,
            ts=this_hour + timedelta(minutes=9 + n),
            account=account,
            cost_nano=USUAL_NANO,
            **fields,
        )
        for n in range(2)
    ]


def hourly_in(report: Any, key: str) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for a in report.anomalies:
        if a.granularity == "hour" and key in a.scope:
            found.setdefault(a.scope[key], []).append(a)
    return found


def test_a_runaway_hour_on_one_account_is_found_within_the_hour(ledger: Ledger) -> None:
    now = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=40, second=0, microsecond=0)
    ledger.record(steady_hours(now, days=4))
    extra = runaway(now, "creator_2", tenant="agency_1", model="gpt-4o")
    ledger.record(extra)
    this_hour = now.replace(minute=0)
    usual = [e for e in steady_hours(now, days=4) if e.ts >= this_hour and e.account == "creator_2"]
    for key, value in (("account", "creator_2"), ("tenant", "agency_1"), ("model", "gpt-4o")):
        report = anomaly_report(load_config(), ledger, by=[key], now=now)
        assert report.group_by == [key]
        found = hourly_in(report, key)
        assert set(found) == {value}, (key, found)  # the other accounts are quiet
        [spike] = found[value]
        assert spike.start == this_hour and spike.ongoing
        assert spike.observed_nano == sum(e.cost_nano for e in usual + extra)
        assert spike.observed_usd >= 2.5 * spike.expected_usd
        assert spike.severity == "high"


def test_costs_anomalies_by_account_flags_the_runaway_account_only() -> None:
    now = datetime.now(UTC)
    record(steady_hours(now, days=4))
    record(runaway(now, "creator_3", tenant="agency_2", model="gpt-4.1-mini"))
    result = run("costs", "anomalies", "--by", "account", "--json")
    assert result.exit_code == 0, result.stderr
    hourly = [a for a in result.json()["anomalies"] if a["granularity"] == "hour"]
    per_account = [a for a in hourly if "account" in a["scope"]]
    assert [(a["scope"], a["ongoing"]) for a in per_account] == [({"account": "creator_3"}, True)]
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    assert per_account[0]["start"] == this_hour.isoformat().replace("+00:00", "Z")
