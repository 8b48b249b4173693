"""Leases: the gate reserves several calls' worst cases in one store transaction and holds
calls against them in memory. Real gates over one real SQLite reservation store; two gates
on one store stand for two processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from huntaze_cli.budgets.gate import LEASE_SHARE, BudgetGate
from huntaze_cli.config import Budget
from huntaze_cli.errors import BudgetExceeded
from huntaze_cli.llm.types import GenerationRequest, Message
from huntaze_cli.storage.budgets import BudgetUsage
from huntaze_cli.storage.sqlite.budgets import SQLiteReservationStore

WORST = 1_000
UTC = ZoneInfo("UTC")


def call(account: str, n: int = 0) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"{account}-{n}",
        model="gpt-4o-mini",
        messages=[Message("user", "hi")],
        max_tokens=10,
        account=account,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteReservationStore]:
    opened = SQLiteReservationStore(tmp_path / "budgets.db")
    yield opened
    opened.close()


def gate(store: SQLiteReservationStore, *budgets: Budget) -> BudgetGate:
    return BudgetGate(budgets, store, tz=UTC, ttl_s=60)


def budget(name: str, nano: int, **scope: str) -> Budget:
    return Budget(name=name, limit_usd=Decimal(nano) / 10**9, scope=scope)


async def reserve(g: BudgetGate, request: GenerationRequest) -> object:
    request, _ = await g.soft(request)  # learns what the budget has used
    hold = await g.reserve(request, provider="openai", worst_nano=WORST)
    assert hold is not None
    return hold


def usage(store: SQLiteReservationStore, g: BudgetGate, name: str) -> BudgetUsage:
    return store.usage(name, g._label("month"))


async def until_settled(store: SQLiteReservationStore, g: BudgetGate, name: str) -> BudgetUsage:
    for _ in range(200):
        now = usage(store, g, name)
        if now.reserved_nano == 0:
            return now
        await asyncio.sleep(0.05)
    raise AssertionError(f"still reserved: {now}")


def test_a_lease_holds_several_calls_and_gives_back_what_they_did_not_use(
    store: SQLiteReservationStore,
) -> None:
    g = gate(store, budget("all", 10**9))

    async def scenario() -> tuple[BudgetUsage, BudgetUsage, BudgetUsage]:
        first = await reserve(g, call("a", 1))
        leased = usage(store, g, "all")
        second = await reserve(g, call("a", 2))
        g.settle(first, 300)
        g.settle(second, 200)
        held = usage(store, g, "all")
        # Idle, the lease gives its room back by itself: no flush, no further call.
        return leased, held, await until_settled(store, g, "all")

    leased, held, settled = asyncio.run(scenario())
    assert leased.reserved_nano >= 2 * WORST  # one transaction for more than one call
    assert held == leased  # the second call drew on it without the store
    assert settled == BudgetUsage(spent_nano=500, reserved_nano=0)
    asyncio.run(g.aclose())
    assert usage(store, g, "all") == settled


def test_a_refused_call_first_takes_back_this_process_leases_on_that_budget(
    store: SQLiteReservationStore,
) -> None:
    limit = 64 * WORST
    # Account a's calls count against two budgets, account b's against one: two leases.
    budgets = (budget("all", limit), budget("a-only", 10**9, account="a"))
    here, other = gate(store, *budgets), gate(store, *budgets)

    async def scenario() -> int:
        here.settle(await reserve(here, call("a")), 500)  # its lease stays open
        assert usage(store, here, "all").reserved_nano > WORST
        # Another process spends what the lease leaves of the budget (a call more would
        # wait for the lease: room held by calls in flight is not a refusal).
        spent = 0
        for _ in range((limit - usage(store, here, "all").used_nano) // WORST):
            other.settle(await other.reserve(call("c"), provider="x", worst_nano=WORST), WORST)
            spent += WORST
        await other.aclose()
        assert usage(store, here, "all").used_nano > limit - WORST
        # The store refuses b's call; the lease of a's calls gives its room back first.
        here.settle(await reserve(here, call("b")), 700)
        await here.aclose()
        return spent

    spent = asyncio.run(scenario())
    assert usage(store, here, "all") == BudgetUsage(spent_nano=500 + spent + 700)


def test_closing_counts_a_call_that_never_settled_at_its_worst_case(
    store: SQLiteReservationStore,
) -> None:
    g = gate(store, budget("all", 10**9))

    async def scenario() -> None:
        settled = await reserve(g, call("a", 1))
        await reserve(g, call("a", 2))  # cancelled mid-call: never settled
        g.settle(settled, 400)
        await g.aclose()

    asyncio.run(scenario())
    assert usage(store, g, "all") == BudgetUsage(spent_nano=400 + WORST, reserved_nano=0)


def test_concurrent_calls_on_leases_never_pass_the_limit_and_use_it_up(
    store: SQLiteReservationStore,
) -> None:
    limit = 40 * LEASE_SHARE * WORST  # leases of many calls at first, single calls at the end
    g = gate(store, budget("all", limit))
    samples: list[int] = []
    costs: list[int] = []

    async def worker(n: int) -> None:
        for i in range(1_000):
            hold = await reserve(g, call(f"a{n}", i))
            samples.append(usage(store, g, "all").used_nano)
            await asyncio.sleep(0.001)
            cost = WORST // 2 + (n * 37 + i) % (WORST // 2)
            costs.append(cost)
            g.settle(hold, cost)

    async def scenario() -> list[BaseException | None]:
        results = await asyncio.gather(*(worker(n) for n in range(24)), return_exceptions=True)
        await g.aclose()
        return results

    results = asyncio.run(scenario())
    assert all(isinstance(r, BudgetExceeded) for r in results)
    assert max(samples) <= limit
    final = usage(store, g, "all")
    assert final.reserved_nano == 0 and final.spent_nano == sum(costs) <= limit
    # Calls stopped only when the next worst case no longer fitted.
    assert final.spent_nano + WORST > limit
