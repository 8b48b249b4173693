"""One suite for every AlertStore: SQLite (the ledger file) and DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from huntaze_cli.storage.alerts import AlertKey, AlertStore

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
    from tests.conftest import atomic_dynamodb_writes

    atomic_dynamodb_writes(monkeypatch)
    with mock_aws():
        dynamo = DynamoDBAlertStore(
            "test-alerts", region="us-east-1", endpoint_url=None, create_tables=True
        )
        yield dynamo
        dynamo.close()


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
