"""The contract every ReservationStore keeps; each test runs on SQLite and on DynamoDB.

Time is a ManualClock shared by the stores of one test, so expiry is decided exactly
and nothing sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.clock import ManualClock
from huntaze_cli.storage.budgets import BudgetUsage, Claim, ReservationStore, Settlement
from huntaze_cli.storage.sqlite.budgets import SQLiteReservationStore

REGION = "us-east-1"
TABLE = "test-budgets"
MONTH = "2026-12"
LIMIT = 1_000

MakeStore = Callable[..., ReservationStore]


@pytest.fixture(params=["sqlite", "dynamodb"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Builds stores sharing one backend (a file, or a table in emulated DynamoDB)."""
    made: list[ReservationStore] = []
    if request.param == "sqlite":

        def make_sqlite(**options: Any) -> ReservationStore:
            made.append(SQLiteReservationStore(tmp_path / "budgets.db", **options))
            return made[-1]

        yield make_sqlite
    else:
        from moto import mock_aws

        from huntaze_cli.storage.aws.dynamodb_budgets import DynamoDBReservationStore
        from huntaze_testing import moto_dynamodb

        # moto checks a condition and writes in two steps: the shared emulation makes
        # them one, as DynamoDB does.
        undo = moto_dynamodb.install()
        try:
            with mock_aws():

                def make_dynamodb(**options: Any) -> ReservationStore:
                    made.append(
                        DynamoDBReservationStore(
                            TABLE, region=REGION, endpoint_url=None, create_tables=True, **options
                        )
                    )
                    return made[-1]

                yield make_dynamodb
        finally:
            undo()
    for store in made:
        store.close()


def claim(amount: int, budget: str = "b", limit: int = LIMIT, period: str = MONTH) -> Claim:
    return Claim(budget, period, limit, amount)


def test_reserve_holds_until_the_limit_then_refuses(make_store: MakeStore) -> None:
    store = make_store()
    assert store.reserve("r1", [claim(600)], ttl_s=60).used_nano == {"b": 600}
    assert store.reserve("r2", [claim(400)], ttl_s=60).held  # exactly the limit fits
    refused = store.reserve("r3", [claim(1)], ttl_s=60)
    assert refused.refused == "b"
    assert refused.used_nano["b"] == 1_000
    assert store.usage("b", MONTH) == BudgetUsage(0, 1_000, refused_nano=1)
    # Held again (after a settlement freed room): the refusal is forgotten.
    store.settle([Settlement("r2", [claim(400)], 0)])
    assert store.reserve("r4", [claim(1)], ttl_s=60).held
    assert store.usage("b", MONTH) == BudgetUsage(0, 601, refused_nano=0)


def test_a_refusal_says_what_calls_in_flight_hold(make_store: MakeStore) -> None:
    store = make_store()
    assert store.reserve("r1", [claim(300)], ttl_s=60).held
    store.settle([Settlement("r1", [claim(300)], 250)])
    assert store.reserve("r2", [claim(500)], ttl_s=60).held
    refused = store.reserve("r3", [claim(400)], ttl_s=60)
    # 250 spent and 500 in flight: settled spend alone would leave room for 400.
    assert (refused.refused, refused.used_nano["b"], refused.reserved_nano["b"]) == (
        "b",
        750,
        500,
    )


def test_a_batch_handed_back_after_a_failed_write_counts_each_call_once(
    make_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    if "sqlite" in request.node.name:
        pytest.skip("a SQLite batch is one transaction: it is never half written")
    store = make_store()
    claims = [claim(300)], [claim(300)]
    for n, claimed in enumerate(claims):
        assert store.reserve(f"r{n}", claimed, ttl_s=60).held
    store.settle([Settlement("r0", claims[0], 100)])
    # The batcher hands the whole batch back when a later settlement failed.
    store.settle([Settlement("r0", claims[0], 100), Settlement("r1", claims[1], 200)])
    assert store.usage("b", MONTH) == BudgetUsage(spent_nano=300, reserved_nano=0)


def test_an_amount_above_the_limit_is_refused_on_an_empty_budget(make_store: MakeStore) -> None:
    store = make_store()
    assert store.reserve("r1", [claim(LIMIT + 1)], ttl_s=60).refused == "b"
    assert store.usage("b", MONTH) == BudgetUsage(refused_nano=LIMIT + 1)


def test_reserve_is_all_or_nothing_across_budgets(make_store: MakeStore) -> None:
    store = make_store()
    assert store.reserve("r1", [claim(90, "small", limit=100)], ttl_s=60).held
    answer = store.reserve("r2", [claim(50, "big"), claim(50, "small", limit=100)], ttl_s=60)
    assert answer.refused == "small"
    # The budget that had room holds nothing for the refused call.
    assert store.usage("big", MONTH) == BudgetUsage()
    assert store.usage("small", MONTH) == BudgetUsage(0, 90, refused_nano=50)


def test_settle_swaps_the_reservation_for_the_real_cost(make_store: MakeStore) -> None:
    store = make_store()
    claims = [claim(500, "a"), claim(500, "b")]
    assert store.reserve("r1", claims, ttl_s=60).held
    store.settle([Settlement("r1", claims, 123)])
    for budget in ("a", "b"):
        assert store.usage(budget, MONTH) == BudgetUsage(spent_nano=123, reserved_nano=0)
    # The room came back: 1000 - 123 fits, one more does not.
    assert store.reserve("r2", [claim(877, "a")], ttl_s=60).held
    assert store.reserve("r3", [claim(1, "a")], ttl_s=60).refused == "a"
    store.settle([Settlement("r2", [claim(877, "a")], 877)])
    assert store.usage("a", MONTH) == BudgetUsage(1_000, 0, refused_nano=1)


def test_periods_and_budgets_are_independent(make_store: MakeStore) -> None:
    store = make_store()
    assert store.reserve("r1", [claim(LIMIT)], ttl_s=60).held
    assert store.reserve("r2", [claim(LIMIT, period="2027-01")], ttl_s=60).held
    assert store.reserve("r3", [claim(LIMIT, budget="other")], ttl_s=60).held
    assert store.usage("b", "2027-01") == BudgetUsage(0, LIMIT)


def test_a_dead_reservation_counts_until_its_ttl_then_is_released(make_store: MakeStore) -> None:
    clock = ManualClock()
    store = make_store(clock=clock)
    assert store.reserve("dead", [claim(800)], ttl_s=30).held
    clock.advance(29)
    assert store.reserve("r2", [claim(300)], ttl_s=30).refused == "b"
    assert store.usage("b", MONTH) == BudgetUsage(0, 800, refused_nano=300)
    clock.advance(2)
    assert store.reserve("r3", [claim(300)], ttl_s=30).held
    assert store.usage("b", MONTH) == BudgetUsage(0, 300)


def test_a_call_settled_after_its_reservation_expired_still_counts(make_store: MakeStore) -> None:
    clock = ManualClock()
    store = make_store(clock=clock)
    claims = [claim(800)]
    assert store.reserve("slow", claims, ttl_s=10).held
    clock.advance(11)
    assert store.usage("b", MONTH) == BudgetUsage(0, 0)  # released
    store.settle([Settlement("slow", claims, 700)])
    assert store.usage("b", MONTH) == BudgetUsage(spent_nano=700, reserved_nano=0)


def test_settling_many_at_once(make_store: MakeStore) -> None:
    store = make_store()
    settlements = []
    for n in range(5):
        claims = [claim(100)]
        assert store.reserve(f"r{n}", claims, ttl_s=60).held
        settlements.append(Settlement(f"r{n}", claims, n))
    store.settle(settlements)
    store.settle([])
    assert store.usage("b", MONTH) == BudgetUsage(spent_nano=10, reserved_nano=0)


def test_stores_sharing_a_backend_never_pass_the_limit(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    held: list[str] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        store = stores[index]
        for n in range(15):
            rid = f"{index}-{n}"
            if store.reserve(rid, [claim(70)], ttl_s=60).held:
                with lock:
                    held.append(rid)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(held) == LIMIT // 70
    assert stores[0].usage("b", MONTH) == BudgetUsage(0, 70 * (LIMIT // 70), refused_nano=70)
