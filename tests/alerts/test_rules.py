"""Alert rules: the three sources, and each rule's spend in its own period and scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.alerts.rules import alert_id, all_rules, observe, top_contributors
from huntaze_cli.config import AlertRule, Config
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from tests.helpers import make_event

NOW = datetime.now(UTC).replace(microsecond=0)


def config(**thresholds: Any) -> Config:
    return Config.model_validate({"thresholds": thresholds, "alerts": {"channels": []}})


def rule(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "limit_usd": 10, **fields}


@pytest.fixture
def ledger(tmp_path: Path) -> SQLiteLedger:
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    ledger.record(
        [
            make_event(
                1, ts=NOW - timedelta(minutes=5), tenant="a", account="x", cost_nano=3_000_000_000
            ),
            make_event(
                2, ts=NOW - timedelta(minutes=4), tenant="a", account="y", cost_nano=2_000_000_000
            ),
            make_event(
                3,
                ts=NOW - timedelta(minutes=3),
                tenant="b",
                account="x",
                model="gpt-4o",
                cost_nano=7_000_000_000,
            ),
            make_event(4, ts=NOW - timedelta(minutes=2), tenant="a", priced=False, cost_nano=0),
        ]
    )
    return ledger


def test_global_rules_come_from_the_two_limits_and_zero_turns_one_off() -> None:
    rules = all_rules(config(daily_usd=5, monthly_usd=0))
    assert [(r.name, r.limit_nano) for r in rules] == [
        ("global-daily", 5_000_000_000),
        ("global-monthly", 0),
    ]
    rules = all_rules(config())
    assert [(r.name, r.period, r.limit_nano) for r in rules] == [
        ("global-daily", "day", 50_000_000_000),
        ("global-monthly", "month", 1_000_000_000_000),
    ]


def test_config_rules_then_stored_ones_and_a_stored_rule_never_shadows_a_config_one() -> None:
    cfg = config(rules=[rule("t-a", scope={"tenant": "a"})])
    stored = [AlertRule(**rule("t-a", limit_usd=99)), AlertRule(**rule("t-b"))]
    rules = all_rules(cfg, stored)
    assert [(r.name, r.source) for r in rules][2:] == [("t-a", "config"), ("t-b", "stored")]
    assert rules[2].limit_nano == 10_000_000_000


def test_each_rule_sees_the_spend_of_its_own_scope(ledger: SQLiteLedger) -> None:
    cfg = config(
        rules=[
            rule("tenant-a", scope={"tenant": "a"}),
            rule("tenant-b", scope={"tenant": "b"}),
            rule("tenant-c", scope={"tenant": "c"}),
            rule("acct-x", scope={"account": "x"}),
            rule("a-y", scope={"tenant": "a", "account": "y"}, period="month"),
            rule("4o", scope={"model": "gpt-4o"}),
        ]
    )
    observed = {o.rule.name: o for o in observe(cfg, ledger, all_rules(cfg), NOW)}
    spent = {name: o.spent_nano for name, o in observed.items()}
    assert spent == {
        "global-daily": 12_000_000_000,
        "global-monthly": 12_000_000_000,
        "tenant-a": 5_000_000_000,
        "tenant-b": 7_000_000_000,
        "tenant-c": 0,
        "acct-x": 10_000_000_000,
        "a-y": 2_000_000_000,
        "4o": 7_000_000_000,
    }
    assert observed["tenant-a"].counters.unpriced == 1
    assert observed["tenant-a"].crossed_levels() == []
    assert observed["acct-x"].crossed_levels() == [100]  # exactly at the limit is a breach


def test_levels_are_crossed_in_exact_integer_arithmetic(ledger: SQLiteLedger) -> None:
    cfg = config(rules=[rule("l", scope={"tenant": "b"}, limit_usd="14", levels=[50, 80, 100])])
    (obs,) = [o for o in observe(cfg, ledger, all_rules(cfg), NOW) if o.rule.name == "l"]
    assert obs.crossed_levels() == [50]  # 7 of 14 is exactly 50 %
    assert obs.crossed_levels(11_200_000_000) == [50, 80]
    assert obs.crossed_levels(11_199_999_999) == [50]


def test_many_rules_over_one_scope_key_are_all_answered(ledger: SQLiteLedger) -> None:
    cfg = config(
        rules=[rule(f"t{n}", scope={"tenant": f"t{n}"}) for n in range(1000)]
        + [rule("a", scope={"tenant": "a"})]
    )
    observed = observe(cfg, ledger, all_rules(cfg), NOW)
    assert len(observed) == 1003
    assert {o.rule.name: o.spent_nano for o in observed}["a"] == 5_000_000_000


def test_a_day_period_follows_the_thresholds_time_zone(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "tz.db")
    day = (datetime.now(UTC) - timedelta(days=2)).date()
    tz_now = datetime(day.year, day.month, day.day, 6, 0, tzinfo=UTC)  # 11:45 in Kathmandu
    midnight = tz_now - timedelta(hours=11, minutes=45)  # local midnight, 18:15 UTC before
    ledger.record(
        [
            make_event(1, ts=midnight - timedelta(minutes=1), cost_nano=1),  # 23:59 local
            make_event(2, ts=midnight, cost_nano=10),  # 00:00 local
            make_event(3, ts=tz_now - timedelta(minutes=1), cost_nano=100),
        ]
    )
    cfg = config(timezone="Asia/Kathmandu", daily_usd=1, monthly_usd=0)
    obs = observe(cfg, ledger, all_rules(cfg), tz_now)[0]
    assert obs.period.label == day.isoformat()
    assert obs.spent_nano == 110


def test_top_contributors_are_the_largest_accounts_and_models_in_scope(
    ledger: SQLiteLedger,
) -> None:
    cfg = config(rules=[rule("tenant-a", scope={"tenant": "a"})])
    obs = next(o for o in observe(cfg, ledger, all_rules(cfg), NOW) if o.rule.name == "tenant-a")
    assert top_contributors(ledger, obs) == [
        ("model gpt-4o-mini", 5_000_000_000),
        ("account x", 3_000_000_000),
        ("account y", 2_000_000_000),
    ]


def test_alert_ids_are_stable_and_distinct() -> None:
    assert alert_id("r", "tenant=a", "2026-12-03", 80) == alert_id(
        "r", "tenant=a", "2026-12-03", 80
    )
    ids = {
        alert_id("r", s, p, lvl)
        for s in ("", "tenant=a")
        for p in ("d1", "d2")
        for lvl in (80, 100)
    }
    assert len(ids) == 8


def test_rule_config_refuses_bad_input_naming_the_field() -> None:
    from pydantic import ValidationError

    for bad, field in (
        (rule("x", scope={"team": "a"}), "team"),
        (rule("x", limit_usd=-1), "limit_usd"),
        (rule("x", levels=[1001]), "levels"),
        (rule("x", channels=["pager"]), "channels"),
        (rule("bad name!"), "name"),
    ):
        with pytest.raises(ValidationError) as caught:
            AlertRule.model_validate(bad)
        assert field in str(caught.value)
    with pytest.raises(ValidationError, match="used twice"):
        config(rules=[rule("x"), rule("x")])
    with pytest.raises(ValidationError, match="reserved"):
        config(rules=[rule("global-daily")])
    assert AlertRule.model_validate(rule("x", limit_usd="0.000000001")).limit_usd == Decimal(
        "0.000000001"
    )
