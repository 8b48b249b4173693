"""The contract every CampaignStore keeps; each test runs on SQLite and on DynamoDB (moto).

Only the ``CampaignStore`` protocol is used, so the two cannot drift apart. Each store
reads a ``ManualClock``: leases lapse and timestamps differ because a test moves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.clock import ManualClock
from huntaze_cli.errors import BackendError
from huntaze_cli.storage.campaigns import MESSAGE_STATES, CampaignStore

SPEC: dict[str, Any] = {
    "name": "spring",
    "account": "creator_1",
    "tenant": "agency_a",
    "model": "gpt-4o-mini",
    "provider": "auto",
    "system": None,
    "prompt": "Hi {name}",
    "max_tokens": 64,
    "temperature": 0.5,
}


def open_store(kind: str, tmp_path: Path, clock: ManualClock) -> CampaignStore:
    if kind == "sqlite":
        from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore

        return SQLiteCampaignStore(tmp_path / "campaigns.db", clock=clock)
    from huntaze_cli.storage.aws.campaign_table import CampaignTable
    from huntaze_cli.storage.aws.dynamodb_campaigns import DynamoDBCampaignStore

    return DynamoDBCampaignStore(
        CampaignTable("test-campaigns", region="us-east-1", create_tables=True, clock=clock)
    )


@pytest.fixture
def clock() -> ManualClock:
    # Today, not a fixed day: the DynamoDB store lists campaigns by month back from now.
    return ManualClock(datetime.now(UTC))


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[CampaignStore]:
    if request.param == "sqlite":
        opened = open_store("sqlite", tmp_path, clock)
        yield opened
        opened.close()
        return
    from moto import mock_aws

    from huntaze_testing import moto_dynamodb

    undo = moto_dynamodb.install()
    try:
        with mock_aws():
            opened = open_store("dynamodb", tmp_path, clock)
            yield opened
            opened.close()
    finally:
        undo()


def recipients(n: int, start: int = 0) -> list[tuple[str, dict[str, str]]]:
    return [(f"fan_{i:05d}", {"name": f"Fan {i}"}) for i in range(start, start + n)]


def create(store: CampaignStore, cid: str = "cmp_1", n: int = 5, key: str | None = None) -> int:
    return store.create(
        campaign_id=cid,
        idempotency_key=key,
        spec=SPEC,
        recipients=recipients(n),
        estimated_cost_nano=1234,
    )


def counts(**nonzero: int) -> dict[str, int]:
    return {state: nonzero.get(state, 0) for state in MESSAGE_STATES}


def all_pending(store: CampaignStore, cid: str, page: int = 7) -> list[str]:
    found, after = [], -1
    while batch := store.pending(cid, after_seq=after, limit=page):
        found += [m.recipient_id for m in batch]
        after = batch[-1].seq
    return found


def test_create_stores_the_campaign_and_every_recipient(store: CampaignStore) -> None:
    assert create(store, n=5, key="key-1") == 5
    campaign = store.get("cmp_1")
    assert campaign is not None
    assert (campaign.name, campaign.account, campaign.tenant) == ("spring", "creator_1", "agency_a")
    assert (campaign.state, campaign.recipients, campaign.estimated_cost_nano) == (
        "generating",
        5,
        1234,
    )
    assert (campaign.max_tokens, campaign.temperature) == (64, 0.5)
    assert campaign.idempotency_key == "key-1"
    assert store.find_by_key("key-1") == "cmp_1"
    assert store.find_by_key("other") is None
    assert store.get("cmp_missing") is None
    assert store.counts("cmp_1") == counts(pending=5)
    first = store.pending("cmp_1", after_seq=-1, limit=2)
    assert [(m.recipient_id, m.seq, m.fields) for m in first] == [
        ("fan_00000", 0, {"name": "Fan 0"}),
        ("fan_00001", 1, {"name": "Fan 1"}),
    ]
    assert store.needs_generation("cmp_1")


def test_an_idempotency_key_names_one_campaign(store: CampaignStore) -> None:
    create(store, "cmp_1", key="same")
    with pytest.raises(BackendError):
        create(store, "cmp_2", key="same")
    assert store.find_by_key("same") == "cmp_1"
    assert store.get("cmp_2") is None


def test_a_bad_recipient_line_stores_no_campaign(store: CampaignStore) -> None:
    def lines() -> Iterator[tuple[str, dict[str, str]]]:
        yield from recipients(150)
        raise ValueError("line 151: bad")

    with pytest.raises(ValueError):
        store.create(
            campaign_id="cmp_bad",
            idempotency_key="k",
            spec=SPEC,
            recipients=lines(),
            estimated_cost_nano=0,
        )
    assert store.get("cmp_bad") is None
    assert store.find_by_key("k") is None
    assert [c.id for c in store.recent()] == []


def test_pending_pages_in_seq_order_across_list_buckets(store: CampaignStore) -> None:
    create(store, n=2100)
    names = all_pending(store, "cmp_1", page=700)
    assert names == [f"fan_{i:05d}" for i in range(2100)]
    assert [m.seq for m in store.pending("cmp_1", after_seq=1998, limit=3)] == [1999, 2000, 2001]


def test_generation_moves_messages_and_counts_follow(store: CampaignStore) -> None:
    create(store, n=6)
    store.pending("cmp_1", after_seq=-1, limit=10)
    store.save_generated(
        "cmp_1", [("fan_00000", "hello 0", "azure"), ("fan_00001", "hi", "openai")]
    )
    store.generation_failed("cmp_1", [("fan_00002", "boom")], final=True)
    store.generation_failed("cmp_1", [("fan_00003", "later")], final=False)
    assert store.counts("cmp_1") == counts(pending=3, generated=2, dead=1)
    assert sorted(store.generated("cmp_1")) == [("fan_00000", "hello 0"), ("fan_00001", "hi")]
    # A replay of the same batch changes nothing (it is no longer pending).
    store.save_generated("cmp_1", [("fan_00000", "other", "azure")])
    assert dict(store.generated("cmp_1"))["fan_00000"] == "hello 0"
    store.mark_queued("cmp_1", ["fan_00000", "fan_00001"])
    store.mark_queued("cmp_1", ["fan_00000"])
    assert list(store.generated("cmp_1")) == []
    assert store.counts("cmp_1") == counts(pending=3, queued=2, dead=1)
    assert all_pending(store, "cmp_1") == ["fan_00003", "fan_00004", "fan_00005"]
    assert store.retry_failed_generation("cmp_1") == 1
    assert store.counts("cmp_1") == counts(pending=4, queued=2)
    assert "fan_00002" in all_pending(store, "cmp_1")


def test_sent_is_final_and_counts_stay_exact(store: CampaignStore) -> None:
    create(store, n=3)
    store.pending("cmp_1", after_seq=-1, limit=10)
    store.save_generated("cmp_1", [(f"fan_{i:05d}", f"t{i}", "azure") for i in range(3)])
    store.mark_queued("cmp_1", [f"fan_{i:05d}" for i in range(3)])
    sent_at = datetime.now(UTC).isoformat()
    store.delivery_outcome("cmp_1:fan_00000", "failed", sent_at=None, error="503")
    store.delivery_outcome("cmp_1:fan_00000", "failed", sent_at=None, error="503 again")
    assert store.counts("cmp_1") == counts(queued=2, failed=1)
    store.delivery_outcome("cmp_1:fan_00000", "sent", sent_at=sent_at, error=None)
    for late in ("failed", "dead", "queued"):
        store.delivery_outcome("cmp_1:fan_00000", late, sent_at=None, error="stale")
    store.delivery_outcome("cmp_1:fan_00001", "dead", sent_at=None, error="410")
    store.delivery_outcome("cmp_1:missing", "sent", sent_at=sent_at, error=None)
    assert store.counts("cmp_1") == counts(queued=1, sent=1, dead=1)
    store.set_state("cmp_1", "delivering")
    assert store.refresh_state("cmp_1") == "delivering"
    store.delivery_outcome("cmp_1:fan_00002", "sent", sent_at=sent_at, error=None)
    assert store.refresh_state("cmp_1") == "completed_with_errors"
    assert store.requeued("cmp_1") == 1
    campaign = store.get("cmp_1")
    assert campaign is not None and campaign.state == "delivering"
    assert store.counts("cmp_1") == counts(queued=1, sent=2)
    store.delivery_outcome("cmp_1:fan_00001", "sent", sent_at=sent_at, error=None)
    assert store.refresh_state("cmp_1") == "completed"
    assert store.requeued("cmp_1") == 0


def test_dead_letters_name_their_stage_and_last_error(store: CampaignStore) -> None:
    create(store, n=4)
    store.pending("cmp_1", after_seq=-1, limit=10)
    store.generation_failed("cmp_1", [("fan_00000", "every provider failed: 503")], final=True)
    store.save_generated("cmp_1", [(f"fan_{i:05d}", f"t{i}", "azure") for i in (1, 2, 3)])
    store.mark_queued("cmp_1", ["fan_00001", "fan_00002", "fan_00003"])
    store.delivery_outcome("cmp_1:fan_00002", "failed", sent_at=None, error="503")
    store.delivery_outcome("cmp_1:fan_00002", "dead", sent_at=None, error="410 Gone")
    store.delivery_outcome("cmp_1:fan_00003", "failed", sent_at=None, error="timeout")
    letters = store.dead_letters("cmp_1", limit=10)
    assert [(d.recipient_id, d.stage, d.error) for d in letters] == [
        ("fan_00000", "generation", "every provider failed: 503"),
        ("fan_00002", "delivery", "410 Gone"),
    ]
    assert letters[0].updated_at.tzinfo is not None
    assert [d.recipient_id for d in store.dead_letters("cmp_1", limit=1)] == ["fan_00000"]
    store.requeued("cmp_1")
    assert [d.recipient_id for d in store.dead_letters("cmp_1", limit=10)] == ["fan_00000"]
    assert store.dead_letters("other", limit=10) == []


def test_two_stores_racing_move_each_message_once(
    store: CampaignStore, tmp_path: Path, clock: ManualClock
) -> None:
    other = open_store(
        "sqlite" if type(store).__name__.startswith("SQLite") else "dynamodb", tmp_path, clock
    )
    create(store, n=200)
    rows = [(f"fan_{i:05d}", f"t{i}", "azure") for i in range(200)]
    store.save_generated("cmp_1", rows[:120])
    other.save_generated("cmp_1", rows[60:])  # overlaps: 60..119 already generated
    assert store.counts("cmp_1") == counts(generated=200)
    assert other.counts("cmp_1") == counts(generated=200)
    other.close()


def test_recent_lists_newest_first(store: CampaignStore, clock: ManualClock) -> None:
    for i in range(3):
        create(store, f"cmp_{i}", n=1)
        clock.advance(0.002)
    assert [c.id for c in store.recent(2)] == ["cmp_2", "cmp_1"]


def test_generation_lease_is_held_by_one_owner_until_it_lapses(
    store: CampaignStore, clock: ManualClock
) -> None:
    store.create(
        campaign_id="cmp_1",
        idempotency_key=None,
        spec=SPEC,
        recipients=recipients(2),
        estimated_cost_nano=0,
        generation_owner="host-a",
        lease_s=60,
    )
    assert store.orphaned() == []  # its creator holds the lease from the start
    assert store.generation_owner("cmp_1") == "host-a"
    assert not store.claim_generation("cmp_1", "host-b", lease_s=60)
    assert store.claim_generation("cmp_1", "host-a", lease_s=10)  # renewal, shorter
    clock.advance(9.5)
    assert store.generation_owner("cmp_1") == "host-a"
    assert store.orphaned() == []
    assert not store.claim_generation("cmp_1", "host-b", lease_s=60)
    clock.advance(1)  # 10.5 s after the renewal: lapsed
    assert store.generation_owner("cmp_1") is None
    assert store.orphaned() == ["cmp_1"]
    assert store.claim_generation("cmp_1", "host-b", lease_s=60)
    assert store.orphaned() == []
    store.release_generation("cmp_1", "host-a")  # not a's any more: nothing changes
    assert store.generation_owner("cmp_1") == "host-b"
    store.release_generation("cmp_1", "host-b")
    assert store.orphaned() == ["cmp_1"]
    store.set_state("cmp_1", "delivering")
    assert store.orphaned() == []


def test_orphans_come_oldest_first(store: CampaignStore, clock: ManualClock) -> None:
    for i in range(3):
        create(store, f"cmp_{i}", n=1)  # no owner: nobody is generating them
        clock.advance(0.002)
    assert store.orphaned(limit=2) == ["cmp_0", "cmp_1"]


def test_heartbeats_newest_first(store: CampaignStore, clock: ManualClock) -> None:
    started = clock.now()
    store.heartbeat("w_1", started_at=started, delivered=3)
    clock.advance(0.002)
    store.heartbeat("w_2", started_at=started, delivered=0)
    clock.advance(0.002)
    store.heartbeat("w_1", started_at=started, delivered=7, stopped=True)
    beats = store.heartbeats()
    assert [(b.worker_id, b.delivered, b.stopped) for b in beats] == [
        ("w_1", 7, True),
        ("w_2", 0, False),
    ]
    assert beats[0].started_at == started
