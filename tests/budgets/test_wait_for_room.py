"""A call refused while calls in flight hold a budget's room waits for them; a budget
full of settled spend pauses at once. Two gates on one reservation store stand for two
processes (or hosts): neither knows the other's calls but through the store. Each test
runs on SQLite and on DynamoDB (moto); store time is a ManualClock, so expiry is exact.
"""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import pytest

from huntaze_cli.budgets.gate import BudgetGate, Hold
from huntaze_cli.clock import ManualClock
from huntaze_cli.config import Budget
from huntaze_cli.errors import BudgetExceeded
from huntaze_cli.storage.budgets import BudgetUsage, ReservationStore
from tests.llm.test_orchestrator import req
from tests.storage.test_reservation_contract import MakeStore

WORST = 400_000
MONTH = "2025-01"  # the ManualClock's start
TTL_S = 60.0


def gate(store: ReservationStore, clock: ManualClock) -> BudgetGate:
    budget = Budget.model_validate({"name": "b", "limit_usd": "0.001"})  # 1 000 000 nano
    return BudgetGate([budget], store, tz=ZoneInfo("UTC"), ttl_s=TTL_S, clock=clock)


async def reserve(g: BudgetGate, n: int, worst: int = WORST) -> Hold:
    hold = await g.reserve(req(n), provider="openai", worst_nano=worst)
    assert isinstance(hold, Hold)
    return hold


def test_a_call_refused_for_another_process_calls_waits_for_the_room_they_give_back(
    make_store: MakeStore,
) -> None:
    clock = ManualClock()
    store_a, store_b = make_store(clock=clock), make_store(clock=clock)
    a, b = gate(store_a, clock), gate(store_b, clock)

    async def run() -> BudgetUsage:
        held = [await reserve(a, n) for n in range(2)]  # 800 000 of 1 000 000 in flight
        waiting = asyncio.create_task(reserve(b, 9))
        await asyncio.sleep(0.3)
        # Nothing is spent: the room is only held, so b's call does not pause.
        assert not waiting.done()
        a.settle(held[0], 100_000)
        await a.flush()
        hold = await asyncio.wait_for(waiting, 30)
        assert hold.worst_nano == hold.lease.claims[0].amount_nano == WORST
        during = store_a.usage("b", MONTH)
        a.settle(held[1], 50_000)
        b.settle(hold, 70_000)
        await a.aclose()
        await b.aclose()
        return during

    during = asyncio.run(run())
    assert (during.spent_nano, during.reserved_nano) == (100_000, 2 * WORST)
    usage = store_a.usage("b", MONTH)
    assert (usage.spent_nano, usage.reserved_nano) == (220_000, 0)


def test_a_budget_full_of_settled_spend_pauses_at_once_whatever_is_in_flight(
    make_store: MakeStore,
) -> None:
    clock = ManualClock()
    store_a, store_b = make_store(clock=clock), make_store(clock=clock)
    a, b = gate(store_a, clock), gate(store_b, clock)

    async def run() -> None:
        first = await reserve(a, 1)
        a.settle(first, 700_000)
        await a.flush()
        await reserve(a, 2, worst=200_000)  # in flight, never settled here
        # 700 000 spent + 400 000 > 1 000 000: no settlement can make room, so b's call
        # is refused now, not after waiting reservation_ttl_s (60 s) for a's call.
        with pytest.raises(BudgetExceeded) as refused:
            await asyncio.wait_for(reserve(b, 9), 30)
        assert refused.value.budget == "b"
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_a_dead_process_reservations_make_room_when_they_expire(make_store: MakeStore) -> None:
    clock = ManualClock()
    store_a, store_b = make_store(clock=clock), make_store(clock=clock)
    a, b = gate(store_a, clock), gate(store_b, clock)

    async def run() -> BudgetUsage:
        for n in range(2):
            await reserve(a, n)  # a's process dies with these calls in flight
        waiting = asyncio.create_task(reserve(b, 9))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        clock.advance(TTL_S + 1)  # a's reservations expire; b's next ask releases them
        hold = await asyncio.wait_for(waiting, 30)
        during = store_b.usage("b", MONTH)
        b.settle(hold, 123)
        await b.aclose()
        return during

    during = asyncio.run(run())
    assert (during.spent_nano, during.reserved_nano) == (0, WORST)
    usage = store_b.usage("b", MONTH)
    assert (usage.spent_nano, usage.reserved_nano) == (123, 0)


def test_a_gateway_call_waits_for_room_at_most_its_own_limit(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /v1 caller is an HTTP client: it gets 429 budget_exceeded after GATEWAY_WAIT_S,
    while a campaign's call waits for the dead process's reservations to expire."""
    import huntaze_cli.budgets.gate as gate_module

    monkeypatch.setattr(gate_module, "GATEWAY_WAIT_S", 0.3)
    clock = ManualClock()
    store_a, store_b = make_store(clock=clock), make_store(clock=clock)
    a, b = gate(store_a, clock), gate(store_b, clock)

    async def run() -> None:
        for n in range(2):
            await reserve(a, n)  # a's process dies with these calls in flight
        campaign = asyncio.create_task(reserve(b, 8))
        gateway_call = req(9, body={"model": "gpt-4o-mini", "messages": []})
        with pytest.raises(BudgetExceeded) as refused:
            await asyncio.wait_for(b.reserve(gateway_call, provider="openai", worst_nano=WORST), 30)
        assert refused.value.budget == "b"
        assert not campaign.done()  # still waiting: TTL_S is 60 s
        clock.advance(TTL_S + 1)
        b.settle(await asyncio.wait_for(campaign, 30), 0)
        await b.aclose()

    asyncio.run(run())
