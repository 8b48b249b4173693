"""One suite for every DeliveryQueue: SQLite, SQS standard and SQS FIFO (moto).

SQS cannot give every guarantee SQLite gives (see ``huntaze_cli.storage.aws.sqs_queue``);
``Traits`` says what each implementation promises beyond the protocol, and the tests
assert the strong form where it is promised and the at-least-once form where not.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.clock import SYSTEM_CLOCK, Clock, ManualClock
from huntaze_cli.storage.queue import AccountDepth, DeliveryQueue, QueueItem

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Traits:
    """What an implementation promises beyond the protocol."""

    strict_tokens: bool  # an old token can never settle an item leased again
    remembers_delivered: bool  # enqueueing an acked key adds nothing
    dedupes_queued: bool  # enqueueing a key already queued adds nothing
    exact_enqueue_count: bool  # enqueue says how many were really new
    filters_accounts: bool  # lease honours account / exclude_accounts
    oldest_first: bool
    per_account_depth: bool
    tick_s: float  # delays and leases used by the tests, honoured at this precision


TRAITS = {
    "sqlite": Traits(True, True, True, True, True, True, True, 0.2),
    # SQS counts in whole seconds; moto keeps FIFO deduplication only while the first
    # copy is in the queue (real SQS: 5 minutes from the first send).
    "sqs": Traits(False, False, False, False, False, False, False, 1.0),
    "sqs-fifo": Traits(False, False, True, False, False, False, False, 1.0),
}


@pytest.fixture(scope="module")
def sqs_client() -> Iterator[Any]:
    """One moto account for the module; each test gets queues of its own."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Clock:
    """SQLite reads time from the clock it is given, which the tests move by hand; SQS's
    delays and visibility timeouts run on moto's own clock, the real one."""
    if request.node.callspec.params["queue"] == "sqlite":
        return ManualClock(datetime.now(UTC))
    return SYSTEM_CLOCK


@pytest.fixture(params=list(TRAITS))
def queue(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[DeliveryQueue]:
    if request.param == "sqlite":
        from huntaze_cli.storage.sqlite.queue import SQLiteQueue

        sqlite_queue = SQLiteQueue(tmp_path / "queue.db", max_attempts=MAX_ATTEMPTS, clock=clock)
        yield sqlite_queue
        sqlite_queue.close()
        return
    from huntaze_cli.storage.aws.sqs_queue import SQSQueue

    client = request.getfixturevalue("sqs_client")
    fifo = request.param == "sqs-fifo"
    name = f"deliveries-{uuid.uuid4().hex[:12]}"
    url = client.create_queue(
        QueueName=f"{name}.fifo" if fifo else name,
        Attributes={"FifoQueue": "true"} if fifo else {},
    )["QueueUrl"]
    sqs_queue = SQSQueue(
        url, region="us-east-1", endpoint_url=None, max_attempts=MAX_ATTEMPTS, scan_wait_s=0
    )
    yield sqs_queue
    sqs_queue.close()


@pytest.fixture
def traits(request: pytest.FixtureRequest, queue: DeliveryQueue) -> Traits:
    return TRAITS[request.node.callspec.params["queue"]]


def item(n: int, *, campaign: str = "cmp_1", account: str | None = None) -> QueueItem:
    # One account per item by default: a FIFO queue holds back the rest of an account
    # while one of its messages is leased, which these tests are not about.
    return QueueItem(
        f"{campaign}:fan_{n}", campaign, account or f"acct_{n}", f"fan_{n}", f"hello fan {n}"
    )


def lease_all(queue: DeliveryQueue, traits: Traits, **kwargs: object) -> list:
    lease_s = kwargs.pop("lease_s", 30 * traits.tick_s)
    return queue.lease(limit=100, lease_s=lease_s, **kwargs)  # type: ignore[arg-type]


def keys(leases: list) -> list[str]:
    return sorted(lease.item.key for lease in leases)


def dead(queue: DeliveryQueue) -> int:
    """Dead letters over every account (SQS counts only the whole queue)."""
    return sum(depth.dead for depth in queue.depth().values())


def wait(clock: Clock, traits: Traits) -> None:
    """Let one tick pass: what was delayed by one tick is due again."""
    clock.sleep(traits.tick_s + 0.1)


# --- enqueue -------------------------------------------------------------------------


def test_enqueue_adds_each_key_once(queue: DeliveryQueue, traits: Traits) -> None:
    a, b = item(1), item(2)
    assert queue.enqueue([a, b, a]) == 2
    again = queue.enqueue([a])
    if traits.exact_enqueue_count:
        assert again == 0
    leased = keys(lease_all(queue, traits))
    if traits.dedupes_queued:
        assert leased == [a.key, b.key]
    else:  # at-least-once: a repeat may be delivered again, under the same key
        assert set(leased) == {a.key, b.key}
    leased_again = lease_all(queue, traits)
    assert leased_again == []


def test_acked_item_is_gone_and_not_added_again(queue: DeliveryQueue, traits: Traits) -> None:
    queue.enqueue([item(1)])
    (lease,) = lease_all(queue, traits)
    assert queue.ack(lease) is True
    assert lease_all(queue, traits) == []
    if traits.remembers_delivered:
        assert queue.enqueue([item(1)]) == 0
        assert lease_all(queue, traits) == []
    assert queue.depth() == {}


def test_empty_enqueue_and_empty_queue(queue: DeliveryQueue, traits: Traits) -> None:
    assert queue.enqueue([]) == 0
    assert lease_all(queue, traits) == []
    assert queue.depth() == {}
    assert queue.requeue_dead("cmp_1") == 0


# --- lease ---------------------------------------------------------------------------


def test_lease_hands_out_each_due_item_once(
    queue: DeliveryQueue, traits: Traits, clock: Clock
) -> None:
    items = [item(n) for n in range(5)]
    queue.enqueue(items)
    first = queue.lease(limit=2, lease_s=30, account=None)
    assert len(first) == 2
    rest = lease_all(queue, traits)
    assert lease_all(queue, traits) == []  # all held
    assert sorted(keys(first) + keys(rest)) == sorted(i.key for i in items)
    assert len({lease.token for lease in first + rest}) == 5
    for lease in first + rest:
        assert lease.attempts == 0
        assert lease.item == next(i for i in items if i.key == lease.item.key)
        assert lease.leased_until > clock.now()


def test_stale_token_changes_nothing(queue: DeliveryQueue, traits: Traits, clock: Clock) -> None:
    if not traits.strict_tokens:
        pytest.skip("SQS standard queues (and moto) accept old receipt handles")
    queue.enqueue([item(1)])
    (old,) = queue.lease(limit=1, lease_s=traits.tick_s)
    wait(clock, traits)
    (new,) = lease_all(queue, traits)
    outcome = queue.retry(old, delay_s=0, error="late")
    assert outcome.due_at is None and not outcome.dead
    queue.release(old, delay_s=0)
    queue.kill(old, error="late")
    assert dead(queue) == 0
    assert lease_all(queue, traits) == []  # still held by the new lease
    assert queue.ack(new) is True


def test_a_lease_that_passed_to_another_worker_applies_nothing(
    queue: DeliveryQueue, traits: Traits, clock: Clock
) -> None:
    """The old holder's retry and kill say they changed nothing (``applied``), so the
    worker records no state for a message another worker delivered."""
    queue.enqueue([item(1)])
    (old,) = queue.lease(limit=1, lease_s=traits.tick_s)
    wait(clock, traits)
    (new,) = lease_all(queue, traits)
    assert queue.ack(new) is True
    outcome = queue.retry(old, delay_s=0, error="late")
    assert not outcome.applied and not outcome.dead and outcome.due_at is None
    assert queue.kill(old, error="late") is False
    assert dead(queue) == 0
    assert lease_all(queue, traits) == []
    queue.enqueue([item(2)])
    (current,) = lease_all(queue, traits)
    assert queue.retry(current, delay_s=0, error="503").applied


def test_account_filters(queue: DeliveryQueue, traits: Traits) -> None:
    if not traits.filters_accounts:
        pytest.skip("SQS cannot filter by account; the hints are ignored")
    queue.enqueue([item(1, account="a"), item(2, account="b"), item(3, account="c")])
    assert keys(lease_all(queue, traits, account="b")) == ["cmp_1:fan_2"]
    assert lease_all(queue, traits, account="a", exclude_accounts=["a"]) == []
    assert keys(lease_all(queue, traits, exclude_accounts=["a"])) == ["cmp_1:fan_3"]
    assert keys(lease_all(queue, traits)) == ["cmp_1:fan_1"]


def test_oldest_due_first(queue: DeliveryQueue, traits: Traits, clock: Clock) -> None:
    if not traits.oldest_first:
        pytest.skip("SQS orders only within a FIFO message group")
    queue.enqueue([item(n) for n in (3, 1, 2)])
    (first,) = queue.lease(limit=1, lease_s=30)
    assert first.item.key == "cmp_1:fan_3"
    clock.sleep(0.01)
    queue.release(first, delay_s=0)  # due now: after the two that waited longer
    assert [lease.item.key for lease in lease_all(queue, traits)] == [
        "cmp_1:fan_1",
        "cmp_1:fan_2",
        "cmp_1:fan_3",
    ]


# --- retry, release, kill ------------------------------------------------------------


def test_delayed_and_expired_items_are_due_again_later(
    queue: DeliveryQueue, traits: Traits, clock: Clock
) -> None:
    """A retry delay, a release delay and an expired lease each keep an item back for
    one tick (one sleep serves all three: SQS counts whole seconds)."""
    retried, released, crashed = item(1), item(2), item(3)
    queue.enqueue([crashed])
    (old,) = queue.lease(limit=1, lease_s=traits.tick_s)
    queue.enqueue([retried, released])
    leases = {lease.item.key: lease for lease in lease_all(queue, traits)}
    assert set(leases) == {retried.key, released.key}
    before = clock.now()
    outcome = queue.retry(leases[retried.key], delay_s=traits.tick_s, error="503 once")
    assert (outcome.dead, outcome.attempts) == (False, 1)
    assert outcome.due_at is not None and outcome.due_at >= before
    queue.release(leases[released.key], delay_s=traits.tick_s)
    assert lease_all(queue, traits) == []  # none is due yet
    wait(clock, traits)
    again = {lease.item.key: lease for lease in lease_all(queue, traits)}
    assert set(again) == {retried.key, released.key, crashed.key}
    assert again[retried.key].attempts == 1  # a failed delivery counts
    assert again[released.key].attempts == 0  # a release does not
    new = again[crashed.key]
    assert new.attempts == 0  # nor does a lease its holder never settled
    assert new.item == old.item and new.token != old.token
    if traits.strict_tokens:
        assert queue.ack(old) is False  # the old holder cannot settle the new lease
    for lease in again.values():
        assert queue.ack(lease) is True
    assert queue.depth() == {}


def test_attempts_count_up_to_the_dead_letter(
    queue: DeliveryQueue, traits: Traits, clock: Clock
) -> None:
    assert queue.max_attempts == MAX_ATTEMPTS
    queue.enqueue([item(1)])
    for attempt in range(1, MAX_ATTEMPTS):
        (lease,) = lease_all(queue, traits)
        assert lease.attempts == attempt - 1
        outcome = queue.retry(lease, delay_s=0, error=f"503 number {attempt}")
        assert (outcome.dead, outcome.attempts) == (False, attempt)
    (lease,) = lease_all(queue, traits)
    outcome = queue.retry(lease, delay_s=0, error="503 for good")
    assert (outcome.dead, outcome.attempts, outcome.due_at) == (True, MAX_ATTEMPTS, None)
    assert lease_all(queue, traits) == []
    assert dead(queue) == 1
    assert queue.requeue_dead("cmp_other") == 0
    assert queue.requeue_dead("cmp_1") == 1
    (back,) = lease_all(queue, traits)
    assert (back.item, back.attempts) == (item(1), 0)


def test_release_does_not_count_an_attempt(queue: DeliveryQueue, traits: Traits) -> None:
    queue.enqueue([item(1)])
    (lease,) = lease_all(queue, traits)
    queue.release(lease, delay_s=0)
    (lease,) = lease_all(queue, traits)
    assert lease.attempts == 0
    assert queue.retry(lease, delay_s=0, error="x").attempts == 1


def test_kill_buries_at_once(queue: DeliveryQueue, traits: Traits) -> None:
    queue.enqueue([item(1), item(2)])
    leases = lease_all(queue, traits)
    doomed = next(lease for lease in leases if lease.item.key == "cmp_1:fan_1")
    queue.kill(doomed, error="400 bad recipient")
    assert dead(queue) == 1
    for lease in leases:
        if lease is not doomed:
            queue.release(lease, delay_s=0)
    assert keys(lease_all(queue, traits)) == ["cmp_1:fan_2"]


def test_requeue_dead_brings_back_one_campaign(queue: DeliveryQueue, traits: Traits) -> None:
    queue.enqueue([item(1), item(2), item(3, campaign="cmp_2")])
    for lease in lease_all(queue, traits):
        queue.kill(lease, error="sink down")
    assert dead(queue) == 3
    assert queue.requeue_dead("cmp_1") == 2
    assert queue.requeue_dead("cmp_1") == 0
    assert dead(queue) == 1
    back = lease_all(queue, traits)
    assert keys(back) == ["cmp_1:fan_1", "cmp_1:fan_2"]
    assert all(lease.attempts == 0 for lease in back)
    assert queue.requeue_dead("cmp_2") == 1
    assert keys(lease_all(queue, traits)) == ["cmp_2:fan_3"]


# --- depth ---------------------------------------------------------------------------


def test_depth_counts_queued_in_flight_and_dead(queue: DeliveryQueue, traits: Traits) -> None:
    queue.enqueue([item(1, account="a"), item(2, account="a"), item(3, account="b")])
    leased = queue.lease(limit=2, lease_s=30)
    assert len(leased) == 2
    queue.kill(leased[0], error="gone")
    depth = queue.depth()
    total = AccountDepth(
        queued=sum(d.queued for d in depth.values()),
        in_flight=sum(d.in_flight for d in depth.values()),
        dead=sum(d.dead for d in depth.values()),
    )
    assert total == AccountDepth(queued=1, in_flight=1, dead=1)
    if traits.per_account_depth:
        expected = {"a": AccountDepth(), "b": AccountDepth()}
        expected[leased[0].item.account].dead += 1
        expected[leased[1].item.account].in_flight += 1
        waiting = {"cmp_1:fan_1": "a", "cmp_1:fan_2": "a", "cmp_1:fan_3": "b"}
        for lease in leased:
            waiting.pop(lease.item.key)
        for account in waiting.values():
            expected[account].queued += 1
        assert depth == expected
    else:
        assert set(depth) == {"*"}


def test_expired_lease_counts_as_queued(queue: DeliveryQueue, traits: Traits, clock: Clock) -> None:
    if not traits.per_account_depth:
        pytest.skip("SQS reports totals, and an expired lease is simply visible again")
    queue.enqueue([item(1, account="a")])
    queue.lease(limit=1, lease_s=traits.tick_s)
    assert queue.depth() == {"a": AccountDepth(in_flight=1)}
    wait(clock, traits)
    assert queue.depth() == {"a": AccountDepth(queued=1)}
