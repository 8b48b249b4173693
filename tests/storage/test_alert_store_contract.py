"""One suite for every AlertStore: SQLite (the ledger file) and DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from huntaze_cli.storage.alerts import AlertEntry, AlertKey, AlertStore

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
KEY = AlertKey("daily", "", "2026-11-25", 100, "email")


@pytest.fixture(params=["sqlite", "dynamodb"])
def alerts(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AlertStore]:
    if request.param == "sqlite":
        from huntaze_cli.storage.sqlite.alerts import SQLiteAlertStore

        store = SQLiteAlertStore(tmp_path / "ledger.db")
        yield store
        store.close()
        return
    from moto import mock_aws

    from huntaze_cli.storage.aws.dynamodb_alerts import DynamoDBAlertStore
    from huntaze_testing import moto_dynamodb

    undo = moto_dynamodb.install()
    try:
        with mock_aws():
            dynamo = DynamoDBAlertStore(
                "test-alerts", region="us-east-1", endpoint_url=None, create_tables=True
            )
            yield dynamo
            dynamo.close()
    finally:
        undo()


def test_the_first_claim_wins_and_later_ones_lose(alerts: AlertStore) -> None:
    assert alerts.claim(KEY, owner="a", now=NOW)
    assert not alerts.claim(KEY, owner="b", now=NOW + timedelta(seconds=1))
    [claim] = alerts.claims("daily", "", "2026-11-25")
    assert (claim.key, claim.status, claim.owner, claim.attempts) == (KEY, "claimed", "a", 1)
    assert claim.claimed_at == NOW


def test_a_sent_alert_is_never_claimed_again(alerts: AlertStore) -> None:
    assert alerts.claim(KEY, owner="a", now=NOW)
    alerts.finish(KEY, owner="a", now=NOW + timedelta(seconds=2), error=None)
    assert not alerts.claim(KEY, owner="b", now=NOW + timedelta(days=1))
    [claim] = alerts.claims("daily", "", "2026-11-25")
    assert (claim.status, claim.updated_at, claim.error) == (
        "sent",
        NOW + timedelta(seconds=2),
        None,
    )
    assert alerts.last_sent("daily", "") == NOW + timedelta(seconds=2)


def test_a_failed_send_releases_the_claim_for_the_next_run(alerts: AlertStore) -> None:
    assert alerts.claim(KEY, owner="a", now=NOW)
    alerts.finish(KEY, owner="a", now=NOW, error="SMTP 127.0.0.1:25 refused")
    [failed] = alerts.claims("daily", "", "2026-11-25")
    assert (failed.status, failed.error) == ("failed", "SMTP 127.0.0.1:25 refused")
    assert alerts.last_sent("daily", "") is None
    assert alerts.claim(KEY, owner="b", now=NOW + timedelta(minutes=1))
    [retried] = alerts.claims("daily", "", "2026-11-25")
    assert (retried.status, retried.owner, retried.attempts, retried.error) == (
        "claimed",
        "b",
        2,
        None,
    )


def test_a_dead_owners_claim_is_taken_over_after_the_lease(alerts: AlertStore) -> None:
    assert alerts.claim(KEY, owner="dead", now=NOW, lease_s=60)
    assert not alerts.claim(KEY, owner="b", now=NOW + timedelta(seconds=59), lease_s=60)
    assert alerts.claim(KEY, owner="b", now=NOW + timedelta(seconds=60), lease_s=60)
    # The late owner's finish no longer counts: the claim is b's.
    alerts.finish(KEY, owner="dead", now=NOW + timedelta(seconds=61), error=None)
    [claim] = alerts.claims("daily", "", "2026-11-25")
    assert (claim.status, claim.owner) == ("claimed", "b")
    alerts.finish(KEY, owner="b", now=NOW + timedelta(seconds=62), error=None)
    assert alerts.claims("daily", "", "2026-11-25")[0].status == "sent"


def test_every_part_of_the_key_keeps_alerts_apart(alerts: AlertStore) -> None:
    keys = [
        KEY,
        AlertKey("monthly", "", "2026-11-25", 100, "email"),
        AlertKey("daily", "tenant=agency_a", "2026-11-25", 100, "email"),
        AlertKey("daily", "", "2026-11-26", 100, "email"),
        AlertKey("daily", "", "2026-11-25", 80, "email"),
        AlertKey("daily", "", "2026-11-25", 100, "ses"),
        # Separators inside parts cannot make two keys collide.
        AlertKey("daily#x", "", "2026-11-25", 100, "email"),
        AlertKey("daily", "#x", "2026-11-25", 100, "email"),
    ]
    for key in keys:
        assert alerts.claim(key, owner="a", now=NOW), key
    assert [c.key for c in alerts.claims("daily", "", "2026-11-25")] == [keys[4], KEY, keys[5]]
    assert [c.key for c in alerts.claims("daily", "tenant=agency_a", "2026-11-25")] == [keys[2]]
    assert alerts.claims("weekly", "", "2026-11-25") == []


def test_last_sent_is_the_latest_send_of_the_rule_and_scope(alerts: AlertStore) -> None:
    earlier = AlertKey("daily", "", "2026-11-24", 100, "email")
    for key, at in ((KEY, NOW), (earlier, NOW - timedelta(days=1))):
        assert alerts.claim(key, owner="a", now=at)
    alerts.finish(KEY, owner="a", now=NOW, error=None)
    alerts.finish(earlier, owner="a", now=NOW - timedelta(days=1), error=None)  # lands late
    assert alerts.last_sent("daily", "") == NOW
    assert alerts.last_sent("daily", "tenant=agency_a") is None
    assert alerts.last_sent("monthly", "") is None


def test_of_many_threads_claiming_at_once_exactly_one_wins(alerts: AlertStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda n: alerts.claim(KEY, owner=f"t{n}", now=NOW), range(16)))
    assert won.count(True) == 1


def _entry(n: int, **overrides: object) -> AlertEntry:
    data: dict[str, object] = {
        "alert_id": f"alr_{n}",
        "rule": "agency_a-daily",
        "kind": "spend",
        "scope": "tenant=agency_a",
        "scope_values": {"tenant": "agency_a"},
        "period": "day",
        "period_label": "2026-11-25",
        "period_start": datetime(2026, 11, 25, tzinfo=UTC),
        "level_pct": 80,
        "limit_nano": 20_000_000_000,
        "observed_nano": 16_000_000_001,
        "created_at": datetime.now(UTC) - timedelta(minutes=n),
    }
    data.update(overrides)
    return AlertEntry(**data)  # type: ignore[arg-type]


def test_a_held_back_key_is_recorded_and_claimable_later(alerts: AlertStore) -> None:
    alerts.suppress(KEY, now=NOW)
    [held] = alerts.suppressed("email")
    assert (held.key, held.status) == (KEY, "suppressed")
    assert alerts.suppressed("slack") == []
    assert alerts.claim(KEY, owner="a", now=NOW + timedelta(minutes=31))
    alerts.finish(KEY, owner="a", now=NOW + timedelta(minutes=31), error=None)
    assert alerts.suppressed("email") == []
    alerts.suppress(KEY, now=NOW + timedelta(hours=1))  # sent stays sent
    assert [c.status for c in alerts.claims("daily", "", "2026-11-25")] == ["sent"]


def test_last_sent_can_be_asked_per_channel(alerts: AlertStore) -> None:
    slack = AlertKey("daily", "", "2026-11-25", 100, "slack")
    for key, at in ((KEY, NOW), (slack, NOW + timedelta(minutes=5))):
        assert alerts.claim(key, owner="a", now=at)
        alerts.finish(key, owner="a", now=at, error=None)
    assert alerts.last_sent("daily", "", "email") == NOW
    assert alerts.last_sent("daily", "", "slack") == NOW + timedelta(minutes=5)
    assert alerts.last_sent("daily", "", "sns") is None


def test_history_holds_each_alert_once_newest_first_with_its_channels(
    alerts: AlertStore,
) -> None:
    first = _entry(1)
    alerts.record_alert(first)
    alerts.record_alert(_entry(1, observed_nano=1))  # a second evaluator: changes nothing
    alerts.record_alert(_entry(2, rule="other", scope="", scope_values={}))
    key = first.claim_key("slack")
    assert alerts.claim(key, owner="a", now=NOW)
    alerts.finish(key, owner="a", now=NOW, error="HTTP 500")
    since = datetime.now(UTC) - timedelta(days=1)
    entries = alerts.history(since=since)
    assert [e.alert_id for e in entries] == ["alr_1", "alr_2"]
    assert entries[0].observed_nano == 16_000_000_001
    assert entries[0].channels["slack"].status == "failed"
    assert entries[0].channels["slack"].error == "HTTP 500"
    assert [e.alert_id for e in alerts.history(since=since, rule="other")] == ["alr_2"]
    assert [e.alert_id for e in alerts.history(since=since, tenant="agency_a")] == ["alr_1"]
    assert alerts.history(since=since, limit=1)[0].alert_id == "alr_1"
    assert alerts.history(since=datetime.now(UTC)) == []


def test_ack_marks_read_once_and_unknown_ids_say_so(alerts: AlertStore) -> None:
    alerts.record_alert(_entry(1))
    assert alerts.ack("alr_1", now=NOW)
    assert alerts.ack("alr_1", now=NOW + timedelta(hours=1))
    found = alerts.get_alert("alr_1")
    assert found is not None and found.acked_at == NOW
    assert not alerts.ack("nope", now=NOW)
    assert alerts.get_alert("nope") is None


def test_stored_rules_are_created_replaced_listed_and_deleted(alerts: AlertStore) -> None:
    alerts.put_rule("b", {"name": "b", "limit_usd": "1"}, now=NOW)
    alerts.put_rule("a", {"name": "a", "limit_usd": "2"}, now=NOW)
    alerts.put_rule("b", {"name": "b", "limit_usd": "3"}, now=NOW)
    assert alerts.rules() == [{"name": "a", "limit_usd": "2"}, {"name": "b", "limit_usd": "3"}]
    assert alerts.delete_rule("a")
    assert not alerts.delete_rule("a")
    assert [r["name"] for r in alerts.rules()] == ["b"]
