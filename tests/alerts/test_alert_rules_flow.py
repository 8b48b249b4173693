"""Alert rules end to end: levels, scopes, Slack and webhook receivers on loopback, the
repeat limit with suppression folded into the next message, history and ack, and the
commands (`thresholds`, `alerts`) with their bad-input errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from huntaze_cli.alerts.thresholds import evaluate_thresholds
from huntaze_cli.config import Config
from huntaze_cli.models import CostEvent
from huntaze_cli.money import usd_to_nano
from huntaze_cli.storage.sqlite.alerts import SQLiteAlertStore
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from huntaze_testing.receiver import Receiver, Reply, running_receiver
from tests.helpers import run

DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
SECRET = "alert-webhook-secret-81"


def at(hour: int, minute: int = 0, *, days: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour, minutes=minute)


@pytest.fixture
def slack() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SQLiteLedger]:
    with SQLiteLedger(tmp_path / "ledger.db") as opened:
        yield opened


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteAlertStore]:
    opened = SQLiteAlertStore(tmp_path / "ledger.db")
    yield opened
    opened.close()


def spend(ledger: SQLiteLedger, ts: datetime, usd: str, **fields: Any) -> None:
    data: dict[str, Any] = {
        "attempt_id": uuid4().hex,
        "request_id": uuid4().hex,
        "ts": ts,
        "provider": "azure",
        "model": "gpt-4o",
        "cost_nano": usd_to_nano(usd),
        "tenant": "agency_a",
        "account": "creator_1",
    }
    data.update(fields)
    assert ledger.record([CostEvent.model_validate(data)]).stored == 1


def config(
    slack: Receiver, hook: Receiver, monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> Config:
    monkeypatch.setenv("SLACK_URL", slack.url)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    data: dict[str, Any] = {
        "thresholds": {
            "daily_usd": "1000",
            "monthly_usd": "0",
            "rules": [
                {
                    "name": "agency_a-daily",
                    "scope": {"tenant": "agency_a"},
                    "period": "day",
                    "limit_usd": "20",
                    "levels": [50, 80, 100],
                    "channels": ["slack", "webhook"],
                },
                {
                    "name": "creator_2-daily",
                    "scope": {"account": "creator_2"},
                    "limit_usd": "5",
                    "channels": ["slack"],
                },
            ],
        },
        "alerts": {
            "channels": ["slack"],
            "slack_webhook_url_env": "SLACK_URL",
            "alert_webhook_url": hook.url,
            "alert_webhook_secret_env": "HOOK_SECRET",
            "min_interval_minutes": 30,
        },
    }
    for key, value in extra.items():
        data.setdefault(key, {}).update(value)
    return Config.model_validate(data)


def slack_texts(slack: Receiver) -> list[str]:
    return [json.loads(got.body)["text"] for got in slack.received]


def test_levels_alert_once_each_and_a_higher_level_skips_the_repeat_limit(
    ledger: SQLiteLedger,
    store: SQLiteAlertStore,
    slack: Receiver,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = config(slack, hook, monkeypatch)
    spend(ledger, at(9), "11")  # 55 % of agency_a's $20
    spend(ledger, at(9), "3", tenant="agency_b")  # another tenant: not in the scope
    report = evaluate_thresholds(cfg, ledger, store, now=at(9, 5))
    rule = {r.name: r for r in report.thresholds}["agency_a-daily"]
    assert (rule.spent_nano, rule.levels_reached, rule.breached) == (11 * 10**9, [50], False)
    assert rule.alert_channels == ["slack", "webhook"] or set(rule.alert_channels) == {
        "slack",
        "webhook",
    }
    assert len(slack.received) == 1 and len(hook.received) == 1
    assert "agency_a-daily (tenant=agency_a) reached 50%" in slack_texts(slack)[0]
    body = json.loads(hook.received[0].body)
    assert body["level_pct"] == 50 and body["observed_nano"] == 11 * 10**9
    assert hook.received[0].headers["Idempotency-Key"] == body["alert_id"]

    # The same run again: nothing new.
    evaluate_thresholds(cfg, ledger, store, now=at(9, 10))
    assert len(slack.received) == 1 and len(hook.received) == 1

    # 10 minutes later 85 %: a higher level goes out at once, despite the 30-minute limit.
    spend(ledger, at(9, 12), "6")
    evaluate_thresholds(cfg, ledger, store, now=at(9, 15))
    assert "reached 80%" in slack_texts(slack)[1]
    assert json.loads(hook.received[1].body)["level_pct"] == 80

    # Straight past 100 % with 50 and 80 done: one alert, at 100.
    spend(ledger, at(9, 20), "10")
    report = evaluate_thresholds(cfg, ledger, store, now=at(9, 25))
    assert "reached 100%" in slack_texts(slack)[2]
    assert report.breached
    levels = sorted(a.level_pct for a in store.history(since=DAY))
    assert levels == [50, 80, 100]


def test_a_rule_held_back_by_the_repeat_limit_is_suppressed_then_folded_in(
    ledger: SQLiteLedger,
    store: SQLiteAlertStore,
    slack: Receiver,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = config(slack, hook, monkeypatch)
    spend(ledger, at(23, 40), "6", account="creator_2", tenant="agency_z")  # creator_2 over $5
    evaluate_thresholds(cfg, ledger, store, now=at(23, 50))
    assert len(slack.received) == 1
    # Just after midnight creator_2 breaches again in the new day: within 30 minutes of
    # the last message of this rule on slack, so it is held back and recorded.
    spend(ledger, at(0, 2, days=1), "6", account="creator_2", tenant="agency_z")
    report = evaluate_thresholds(cfg, ledger, store, now=at(0, 5, days=1))
    held = {r.name: r for r in report.thresholds}["creator_2-daily"]
    assert held.breached and held.alert_channels == []
    assert len(slack.received) == 1
    [claim] = store.suppressed("slack")
    assert claim.key.rule == "creator_2-daily"
    # Another rule's alert on slack a minute later carries the held-back one along.
    spend(ledger, at(0, 6, days=1), "15")  # agency_a 75 %: level 50
    evaluate_thresholds(cfg, ledger, store, now=at(0, 7, days=1))
    assert len(slack.received) == 2
    payload = json.loads(slack.received[1].body)
    assert "agency_a-daily" in payload["text"] and "(+1 more)" in payload["text"]
    assert "1 more alert(s) held back" in json.dumps(payload["blocks"])
    assert store.suppressed("slack") == []
    [entry] = [
        e
        for e in store.history(since=DAY)
        if e.period_label.endswith(str(at(0, days=1).date())) and e.rule == "creator_2-daily"
    ]
    assert entry.channels["slack"].status == "sent"


def test_a_failed_channel_is_retried_by_the_next_run_and_named(
    ledger: SQLiteLedger,
    store: SQLiteAlertStore,
    slack: Receiver,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = config(slack, hook, monkeypatch)
    spend(ledger, at(9), "11")
    hook.answer(Reply(status=503))
    report = evaluate_thresholds(cfg, ledger, store, now=at(9, 5))
    rule = {r.name: r for r in report.thresholds}["agency_a-daily"]
    assert rule.alert_errors == [
        f"webhook: webhook alert via http://127.0.0.1:{hook.server_address[1]} failed: HTTP 503"
    ]
    assert rule.alert_channels == ["slack"]
    evaluate_thresholds(cfg, ledger, store, now=at(9, 6))
    assert len(hook.received) == 2 and len(slack.received) == 1
    [entry] = store.history(since=DAY)
    assert entry.channels["webhook"].status == "sent" and entry.channels["webhook"].attempts == 2


# --- the commands -------------------------------------------------------------------------


@pytest.fixture
def cli_config(tmp_path: Path, slack: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SLACK_URL", slack.url)
    path = tmp_path / "config.toml"
    path.write_text(
        "[alerts]\n"
        'channels = ["slack"]\n'
        'slack_webhook_url_env = "SLACK_URL"\n'
        "[[thresholds.rules]]\n"
        'name = "from-config"\n'
        "limit_usd = 5\n"
    )
    monkeypatch.setenv("HUNTAZE_CONFIG", str(path))
    return path


def test_thresholds_set_list_delete(cli_config: Path) -> None:
    made = run(
        "thresholds",
        "set",
        "t-a",
        "--scope",
        "tenant=agency_a",
        "--limit",
        "20",
        "--levels",
        "100,50,80",
        "--period",
        "month",
        "--json",
    )
    assert made.exit_code == 0, made.stderr
    assert made.json()["action"] == "created"
    assert made.json()["rule"]["levels"] == [50, 80, 100]
    again = run("thresholds", "set", "t-a", "--limit", "30", "--json")
    assert again.json()["action"] == "replaced"
    listed = run("thresholds", "list", "--json").json()["thresholds"]
    assert [(r["name"], r["source"]) for r in listed] == [
        ("global-daily", "global"),
        ("global-monthly", "global"),
        ("from-config", "config"),
        ("t-a", "stored"),
    ]
    assert listed[3]["limit_usd"] == 30.0 and listed[3]["scope"] == {}
    assert run("thresholds", "delete", "t-a", "--json").json()["action"] == "deleted"
    gone = run("thresholds", "delete", "t-a")
    assert gone.exit_code == 1 and "no stored rule named t-a" in gone.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--scope", "team=a", "--limit", "1"], "scope.team"),
        (["--scope", "tenant", "--limit", "1"], "--scope"),
        (["--limit", "-1"], "limit_usd"),
        (["--limit", "1", "--levels", "50,1001"], "levels"),
        (["--limit", "1", "--levels", "fifty"], "--levels"),
        (["--limit", "1", "--channels", "pager"], "channels"),
        (["--limit", "1", "--channels", "sns"], "sns_topic_arn"),
        (["--limit", "1", "--period", "week"], "period"),
    ],
)
def test_bad_rules_are_exit_2_naming_the_field_and_store_nothing(
    cli_config: Path, args: list[str], named: str
) -> None:
    result = run("thresholds", "set", "bad", *args)
    assert result.exit_code == 2, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert [r["name"] for r in run("thresholds", "list", "--json").json()["thresholds"]][-1] == (
        "from-config"
    )


def test_an_unset_slack_url_variable_is_exit_2_naming_the_key(
    cli_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_URL")
    result = run("thresholds", "set", "x", "--limit", "1", "--channels", "slack")
    assert result.exit_code == 2 and "alerts.slack_webhook_url_env" in result.stderr


def test_config_rules_cannot_be_changed_or_deleted_here(cli_config: Path) -> None:
    for args in (
        ["set", "from-config", "--limit", "9"],
        ["delete", "from-config"],
        ["delete", "global-daily"],
    ):
        result = run("thresholds", *args)
        assert result.exit_code == 2 and "config" in result.stderr


def test_alerts_test_reports_each_channel_and_exits_1_on_a_failure(
    cli_config: Path, slack: Receiver
) -> None:
    ok = run("alerts", "test", "--json")
    assert ok.exit_code == 0 and ok.json() == {
        "ok": True,
        "channels": {"slack": {"status": "sent", "error": None}},
    }
    payload = json.loads(slack.received[0].body)
    assert payload["text"].startswith("[huntaze TEST]")
    slack.answer(Reply(status=404, body=b"no_service"), Reply(status=404, body=b"no_service"))
    failed = run("alerts", "test")
    assert failed.exit_code == 1 and "slack:" in failed.stderr and "404" in failed.stderr
    unknown = run("alerts", "test", "--channel", "pager")
    assert unknown.exit_code == 2 and "--channel" in unknown.stderr


def test_alerts_list_and_ack(cli_config: Path, tmp_path: Path) -> None:
    from huntaze_cli.config import load_config
    from huntaze_cli.storage.alerts import AlertEntry

    opened = SQLiteAlertStore(load_config().ledger_path)
    opened.record_alert(
        AlertEntry(
            alert_id="alr_x1",
            rule="from-config",
            kind="spend",
            scope="",
            scope_values={},
            period="day",
            period_label="2026-12-01",
            period_start=datetime(2026, 12, 1, tzinfo=UTC),
            level_pct=100,
            limit_nano=5 * 10**9,
            observed_nano=6 * 10**9,
            created_at=datetime.now(UTC),
        )
    )
    opened.close()
    listed = run("alerts", "list", "--json").json()
    [alert] = listed["alerts"]
    assert (alert["alert_id"], alert["observed_usd"], alert["acked_at"]) == ("alr_x1", 6.0, None)
    acked = run("alerts", "ack", "alr_x1", "--json")
    assert acked.exit_code == 0
    assert run("alerts", "list", "--json").json()["alerts"][0]["acked_at"] is not None
    assert run("alerts", "ack", "nope").exit_code == 1
    assert run("alerts", "list", "--rule", "other", "--json").json()["alerts"] == []
    bad = run("alerts", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.stderr


# --- forecast and anomaly rules ------------------------------------------------------------


def _hourly_history(ledger: SQLiteLedger, now: datetime, *, days: int, usd: str) -> None:
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
    events = []
    hour = start
    while hour < now.replace(minute=0, second=0, microsecond=0):
        events.append(
            CostEvent(
                attempt_id=uuid4().hex,
                request_id="r",
                ts=hour + timedelta(minutes=7),
                provider="azure",
                model="gpt-4o",
                cost_nano=usd_to_nano(usd),
            )
        )
        hour += timedelta(hours=1)
    ledger.record(events)


def test_a_forecast_rule_alerts_on_the_month_end_upper_bound(
    ledger: SQLiteLedger,
    store: SQLiteAlertStore,
    slack: Receiver,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    _hourly_history(ledger, now, days=20, usd="1")  # $24 a day, steadily
    spent_so_far = 24 * (now.day - 1)
    rules = [
        {
            "name": "will-cross",
            "kind": "forecast",
            "period": "month",
            "limit_usd": str(spent_so_far + 24 * 2),
            "channels": ["slack"],
        },
        {
            "name": "far-off",
            "kind": "forecast",
            "period": "month",
            "limit_usd": "1000000",
            "channels": ["slack"],
        },
    ]
    cfg = config(slack, hook, monkeypatch, thresholds={"rules": rules, "daily_usd": "0"})
    if now.day > 27:
        pytest.skip("too close to the month's end for a forecast to reach past the limit")
    report = evaluate_thresholds(cfg, ledger, store, now=now)
    got = {r.name: r for r in report.thresholds}
    assert got["will-cross"].forecast_usd is not None
    assert got["will-cross"].breached and got["will-cross"].alerted
    assert not got["far-off"].breached and not got["far-off"].alerted
    assert [json.loads(r.body)["text"].split(" (")[0] for r in slack.received] == [
        "[huntaze] will-cross"
    ]


def test_an_anomaly_rule_alerts_on_a_spike_in_its_scope(
    ledger: SQLiteLedger,
    store: SQLiteAlertStore,
    slack: Receiver,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(UTC).replace(minute=50, second=0, microsecond=0)
    _hourly_history(ledger, now, days=6, usd="1")
    ledger.record(
        [
            CostEvent(
                attempt_id=uuid4().hex,
                request_id="r",
                ts=now - timedelta(minutes=40 + n),
                provider="azure",
                model="gpt-4o",
                cost_nano=usd_to_nano("3"),
            )
            for n in range(3)
        ]
    )
    rules = [
        {
            "name": "azure-spike",
            "kind": "anomaly",
            "scope": {"provider": "azure"},
            "limit_usd": "1",
            "channels": ["slack"],
        }
    ]
    cfg = config(slack, hook, monkeypatch, thresholds={"rules": rules, "daily_usd": "0"})
    report = evaluate_thresholds(cfg, ledger, store, now=now)
    spike = {r.name: r for r in report.thresholds}["azure-spike"]
    assert spike.breached and spike.alerted, spike
    [entry] = [e for e in store.history(since=now - timedelta(days=1)) if e.rule == "azure-spike"]
    assert entry.kind == "anomaly" and entry.observed_nano >= usd_to_nano("9")
