"""`costs forecast` and `costs anomalies` end to end through the CLI on a real SQLite ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from huntaze_cli.config import default_config_path, load_config
from tests.costs.history import hourly_events, record
from tests.helpers import make_event, run


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def test_forecast_overall_and_per_provider() -> None:
    events = hourly_events(40)
    record(events)
    result = run("costs", "forecast", "--by", "provider", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    now = datetime.now(UTC)
    this_month = [e for e in events if e.ts >= month_start(now)]
    assert report["month"] == now.strftime("%Y-%m")
    assert report["month_to_date_nano"] == sum(e.cost_nano for e in this_month)
    assert report["method"] in {"ets_weekly", "ets_damped_trend_weekly"}
    assert report["history_days"] >= 39
    assert report["level_pct"] == 80.0
    assert report["lower_usd"] <= report["forecast_usd"] <= report["upper_usd"]
    assert report["forecast_usd"] >= report["month_to_date_usd"]
    assert report["backtest"]["windows"] == 5
    assert 0 <= report["backtest"]["mape_pct"] < 15
    assert report["threshold"] == {
        "limit_usd": 1000.0,
        "name": "global-monthly",
        "source": "global",
        "probability_exceed_pct": 0.0,
        "expected_breach_date": None,
    }
    groups = {g["provider"]: g for g in report["groups"]}
    assert set(groups) == {"azure", "openai"}
    assert sum(g["month_to_date_nano"] for g in groups.values()) == report["month_to_date_nano"]
    for group in groups.values():
        assert group["threshold"] is None
        assert group["lower_usd"] <= group["forecast_usd"] <= group["upper_usd"]
    # The days left cost about a weekday-weighted 2 x 24 x the hourly rate.
    days_left = (month_start(now + timedelta(days=32)) - now).days
    assert report["forecast_usd"] - report["month_to_date_usd"] == pytest.approx(
        days_left * 2 * 24 * 0.075, rel=0.6
    )


def test_forecast_per_tenant_reads_daily_rollups() -> None:
    record(hourly_events(20))
    report = run("costs", "forecast", "--by", "tenant", "--json").json()
    assert [g["tenant"] for g in report["groups"]] != []
    assert {g["tenant"] for g in report["groups"]} == {"agency_a", "agency_b"}


def test_a_crossed_monthly_limit_is_certain_and_dated(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    start = month_start(now)
    if now - start < timedelta(hours=2):
        pytest.skip("the month is too young to have crossed a limit")
    record(hourly_events(30))
    monkeypatch.setenv("HUNTAZE_THRESHOLDS__MONTHLY_USD", "0.1")
    report = run("costs", "forecast", "--json").json()
    assert report["threshold"]["probability_exceed_pct"] == 100.0
    assert report["threshold"]["expected_breach_date"] == start.date().isoformat()


def test_a_limit_the_month_will_likely_cross_has_a_breach_date(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record(hourly_events(40))
    plain = run("costs", "forecast", "--json").json()
    # Half way between spent so far and the forecast month end.
    limit = round((plain["month_to_date_usd"] + plain["forecast_usd"]) / 2, 2)
    if limit <= plain["month_to_date_usd"] + 0.05:
        pytest.skip("too little of the month left to place a limit ahead")
    monkeypatch.setenv("HUNTAZE_THRESHOLDS__MONTHLY_USD", str(limit))
    report = run("costs", "forecast", "--json").json()
    assert report["threshold"]["limit_usd"] == limit
    assert report["threshold"]["probability_exceed_pct"] > 90
    breach = date.fromisoformat(report["threshold"]["expected_breach_date"])
    assert datetime.now(UTC).date() <= breach
    assert breach.strftime("%Y-%m") == report["month"]


def test_less_than_seven_days_says_insufficient_history() -> None:
    record(hourly_events(3))
    result = run("costs", "forecast", "--by", "provider", "--json")
    assert result.exit_code == 0
    report = result.json()
    assert report["method"] == "insufficient_history"
    assert report["forecast_usd"] is None and report["upper_usd"] is None
    assert report["backtest"] == {"mape_pct": None, "coverage_pct": None, "windows": 0}
    assert all(g["method"] == "insufficient_history" for g in report["groups"])
    people = run("costs", "forecast")
    assert people.exit_code == 0 and "no forecast yet" in people.stdout


def test_an_empty_ledger_forecasts_nothing_but_succeeds() -> None:
    result = run("costs", "forecast", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["method"] == "insufficient_history"
    assert result.json()["month_to_date_nano"] == 0


def test_the_cache_gives_the_same_answer_and_survives_damage() -> None:
    record(hourly_events(30))
    first = run("costs", "forecast", "--by", "provider", "--json").json()
    cache = load_config().forecast_cache_dir
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 3  # overall and two providers
    again = run("costs", "forecast", "--by", "provider", "--json").json()
    first.pop("generated_at"), again.pop("generated_at")
    assert again == first
    for path in files:
        path.write_bytes(b"not a cache")
    damaged = run("costs", "forecast", "--by", "provider", "--json")
    assert damaged.exit_code == 0
    damaged_report = damaged.json()
    damaged_report.pop("generated_at")
    assert damaged_report["method"] == first["method"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--level", "0"], "--level"),
        (["--level", "100"], "--level"),
        (["--level", "-5"], "--level"),
        (["--by", "campaign"], "--by"),
        (["--by", "nonsense"], "--by"),
    ],
)
def test_bad_forecast_input_is_exit_2_naming_the_option(args: list[str], named: str) -> None:
    record(hourly_events(8))
    result = run("costs", "forecast", *args, "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {named}:")
    assert not load_config().forecast_cache_dir.exists()


def test_a_runaway_hour_is_an_anomaly_within_the_hour() -> None:
    now = datetime.now(UTC)
    events = hourly_events(10, now=now)
    record(events)
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    usual = sum(e.cost_nano for e in events if e.ts >= this_hour)
    runaway = [
        make_event(10_000 + n, ts=this_hour, provider="openai", cost_nano=usual) for n in range(3)
    ]
    record(runaway)
    result = run("costs", "anomalies", "--by", "provider", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["group_by"] == ["provider"]
    start = this_hour.isoformat().replace("+00:00", "Z")
    hourly = [a for a in report["anomalies"] if a["granularity"] == "hour"]
    scopes = {tuple(a["scope"].items()): a for a in hourly if a["start"] == start}
    assert set(scopes) == {(), (("provider", "openai"),)}
    overall = scopes[()]
    assert overall["ongoing"] is True
    assert overall["observed_nano"] == usual * 4
    assert overall["observed_usd"] > 3 * overall["expected_usd"]
    assert overall["severity"] == "high"
    # Nothing else in the last week stands out.
    assert {a["start"] for a in hourly} == {start}


def test_anomalies_by_bad_key_or_since_is_exit_2() -> None:
    assert run("costs", "anomalies", "--by", "day").exit_code == 2
    bad = run("costs", "anomalies", "--since", "soon")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --since:")
    future = run("costs", "anomalies", "--since", "2999-01-01")
    assert future.exit_code == 2 and "--since" in future.stderr


TENANTS = """
[tenants.agency_a]
quota_usd_month = 0.5

[tenants.agency_b]
markup_pct = 10

[[budgets.rules]]
name = "agency_a-big"
scope = { tenant = "agency_a" }
period = "month"
limit_usd = 5000

[[budgets.rules]]
name = "agency_a-daily"
scope = { tenant = "agency_a" }
period = "day"
limit_usd = 0.01
"""


def test_a_tenant_forecast_is_compared_with_its_own_monthly_budget() -> None:
    now = datetime.now(UTC)
    if now - month_start(now) < timedelta(hours=3):
        pytest.skip("the month is too young for a tenant to have crossed its quota")
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TENANTS)
    events = hourly_events(30)
    record(events)
    overall = run("costs", "forecast", "--json").json()
    assert overall["threshold"]["name"] == "global-monthly"
    assert overall["threshold"]["limit_usd"] == 1000.0
    assert overall["threshold"]["probability_exceed_pct"] == 0.0

    mine = run("costs", "forecast", "--tenant", "agency_a", "--json").json()
    # Only agency_a's spend, against its quota (the lowest of its monthly budgets; the
    # daily one and the global $1000 do not count), which it crossed on the month's
    # first day: certain.
    this_month = [e for e in events if e.ts >= month_start(now) and e.tenant == "agency_a"]
    assert mine["month_to_date_nano"] == sum(e.cost_nano for e in this_month)
    assert mine["threshold"]["name"] == "quota:agency_a"
    assert mine["threshold"]["source"] == "budget"
    assert mine["threshold"]["limit_usd"] == 0.5
    assert mine["threshold"]["probability_exceed_pct"] == 100.0
    assert mine["threshold"]["expected_breach_date"] == month_start(now).date().isoformat()
    people = run("costs", "forecast", "--tenant", "agency_a")
    assert people.exit_code == 0 and "monthly limit quota:agency_a $0.50" in people.stdout

    # A tenant without a monthly budget has no threshold at all, not the global one.
    other = run("costs", "forecast", "--tenant", "agency_b", "--json").json()
    assert other["threshold"] is None
    assert 0 < other["month_to_date_nano"] < overall["month_to_date_nano"]


def test_an_unknown_tenant_is_refused_naming_the_field() -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TENANTS)
    for command in ("forecast", "stats"):
        result = run("costs", command, "--tenant", "agency_z", "--json")
        assert result.exit_code == 2, result.stdout
        assert "tenant" in result.stderr and "agency_a, agency_b" in result.stderr
