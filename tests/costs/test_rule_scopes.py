"""What `forecast` and `anomaly` alert rules evaluate: one scope against one limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from huntaze_cli.config import load_config
from huntaze_cli.costs.anomaly_report import anomaly_scope
from huntaze_cli.costs.forecast_report import forecast_report, forecast_scope
from huntaze_cli.errors import UsageError
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from tests.costs.history import hourly_events, record
from tests.helpers import make_event


def test_a_scope_forecast_matches_the_group_forecast() -> None:
    record(hourly_events(30))
    config = load_config()
    with SQLiteLedger(config.ledger_path) as ledger:
        report = forecast_report(config, ledger, by="provider", cache=False)
        azure = next(g for g in report.groups if (g.model_extra or {})["provider"] == "azure")
        scoped = forecast_scope(
            config, ledger, scope={"provider": "azure"}, limit_usd="1", cache=False
        )
        tenant = forecast_scope(
            config, ledger, scope={"tenant": "agency_a"}, limit_usd="100000", cache=False
        )
    assert scoped.forecast_usd == azure.forecast_usd
    assert scoped.month_to_date_nano == azure.month_to_date_nano
    assert scoped.threshold is not None and scoped.threshold.limit_usd == 1.0
    assert tenant.threshold is not None and tenant.threshold.probability_exceed_pct == 0.0
    assert tenant.forecast_usd is not None and tenant.forecast_usd < report.forecast_usd


def test_a_scope_with_an_unknown_key_is_refused() -> None:
    config = load_config()
    with SQLiteLedger(config.ledger_path) as ledger, pytest.raises(UsageError, match="scope"):
        forecast_scope(config, ledger, scope={"weekday": "monday"}, limit_usd=1)


def test_an_anomaly_rule_sees_only_its_scope() -> None:
    now = datetime.now(UTC)
    record(hourly_events(10, now=now))
    hour = now.replace(minute=0, second=0, microsecond=0)
    record(
        [make_event(50_000 + n, ts=hour, provider="openai", cost_nano=4 * 10**9) for n in range(3)]
    )
    config = load_config()
    since = now - timedelta(hours=2)
    with SQLiteLedger(config.ledger_path) as ledger:
        openai = anomaly_scope(config, ledger, scope={"provider": "openai"}, since=since)
        azure = anomaly_scope(config, ledger, scope={"provider": "azure"}, since=since)
        tenant = anomaly_scope(config, ledger, scope={"tenant": "agency_a"}, since=since)
    assert [(a.granularity, a.scope, a.ongoing) for a in openai] == [
        ("hour", {"provider": "openai"}, True),
        ("day", {"provider": "openai"}, True),
    ]
    assert azure == []
    # The runaway events belong to agency_a (make_event's tenant): its hour and its day.
    assert [(a.granularity, a.scope, a.ongoing) for a in tenant] == [
        ("hour", {"tenant": "agency_a"}, True),
        ("day", {"tenant": "agency_a"}, True),
    ]
