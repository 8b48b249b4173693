"""Budgets around every provider attempt: the real orchestrator, the openai SDK against
the fake upstream, a real SQLite reservation store and ledger."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.budgets.gate import BudgetGate
from huntaze_cli.budgets.rules import budgets_in_force
from huntaze_cli.config import Config
from huntaze_cli.errors import BudgetExceeded, ConfigError
from huntaze_cli.storage.budgets import BudgetUsage
from huntaze_cli.storage.sqlite.budgets import SQLiteReservationStore
from huntaze_testing.fake_llm import FakeLLM
from tests.llm.test_orchestrator import Harness, make_config, req

MONTH_OF = "2025-01"  # the ManualClock's default start is 2025-01-01


def budgeted(fake: FakeLLM, tmp_path: Path, *budgets: dict[str, Any]) -> Config:
    config = make_config(fake, tmp_path, routing={"order": ["openai"]})
    data = config.model_dump()
    data["budgets"] = {"reservation_ttl_s": 60, "rules": list(budgets)}
    return Config.model_validate(data)


class Budgeted(Harness):
    """The orchestrator harness with a budget gate over a SQLite reservation store."""

    def __init__(self, config: Config, tmp_path: Path) -> None:
        super().__init__(config, tmp_path)
        self.reservations = SQLiteReservationStore(tmp_path / "budgets.db")
        self.gate = BudgetGate(
            budgets_in_force(config),
            self.reservations,
            tz=config.thresholds.tz,
            ttl_s=config.budgets.reservation_ttl_s,
        )
        self.orchestrator.budget = self.gate

    async def reservations_spend(self, name: str, period: str, nano: int) -> None:
        """Spend recorded as if other calls had settled it (the budget's starting point)."""
        from huntaze_cli.storage.budgets import Claim, Settlement

        claim = Claim(name, period, 10**18, 0)
        assert self.reservations.reserve("seed", [claim], ttl_s=60).held
        self.reservations.settle([Settlement("seed", [claim], nano)])

    def usage(self, name: str) -> BudgetUsage:
        label = self.gate._label("month")
        return self.reservations.usage(name, label)

    async def sequential(self, requests: list[Any]) -> list[Any]:
        out: list[Any] = []
        try:
            for request in requests:
                try:
                    out.append(await self.orchestrator.generate(request))
                except BudgetExceeded as exc:
                    out.append(exc)
        finally:
            await self.orchestrator.aclose()
        return out


def test_a_hard_limit_stops_calls_before_the_provider_and_counts_real_costs(
    fake: FakeLLM, tmp_path: Path
) -> None:
    # gpt-4o-mini: $0.15 / $0.60 per million tokens; a 40-token answer's worst case is
    # about 30 000 nano-dollars, so $0.0001 holds three calls.
    h = Budgeted(budgeted(fake, tmp_path, {"name": "small", "limit_usd": "0.0001"}), tmp_path)
    results = asyncio.run(h.sequential([req(n) for n in range(6)]))
    served = [r for r in results if not isinstance(r, BudgetExceeded)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert served and refused
    assert all(r.budget == "small" for r in refused)
    assert "small" in refused[0].message and "limit" in refused[0].message
    # Refused calls never reached the upstream; every call that did is in the ledger.
    assert fake.count(kind="openai") == len(served)
    events = h.events()
    assert len(events) == len(served)
    usage = h.usage("small")
    assert (usage.spent_nano, usage.reserved_nano) == (sum(e.cost_nano for e in events), 0)
    assert usage.spent_nano <= 100_000
    # The refusal is remembered: the budget reads as hard though a little is left.
    assert usage.refused_nano > 100_000 - usage.spent_nano


def test_calls_outside_the_scope_are_not_counted(fake: FakeLLM, tmp_path: Path) -> None:
    config = budgeted(
        fake, tmp_path, {"name": "b", "scope": {"tenant": "other"}, "limit_usd": "0.000001"}
    )
    h = Budgeted(config, tmp_path)
    results = asyncio.run(h.sequential([req(n) for n in range(3)]))
    assert not any(isinstance(r, BudgetExceeded) for r in results)
    assert h.usage("b") == BudgetUsage()


def test_concurrent_calls_never_pass_the_limit_and_use_it_up(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_latency(30)
    h = Budgeted(budgeted(fake, tmp_path, {"name": "b", "limit_usd": "0.0002"}), tmp_path)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(h.reservations.usage("b", h.gate._label("month")).used_nano)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        results = asyncio.run(h.generate_many([req(n) for n in range(40)]))
    finally:
        stop.set()
        sampler.join()
    served = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, BudgetExceeded) for r in results if isinstance(r, BaseException))
    assert served and len(served) < 40
    assert fake.count(kind="openai") == len(served)
    # Spent + reserved never passed the limit, at any sampled moment.
    assert samples and max(samples) <= 200_000
    usage = h.usage("b")
    assert usage.reserved_nano == 0
    assert usage.spent_nano == sum(e.cost_nano for e in h.events()) <= 200_000
    # Calls stopped only when the next worst case (about 30 000) no longer fit.
    assert usage.spent_nano + usage.refused_nano > 200_000


# Past its soft limit at 1 % of $1, it downgrades gpt-4o to gpt-4o-mini.
DOWNGRADE = {
    "name": "b",
    "limit_usd": "1",
    "soft_pct": 1,
    "on_soft": "downgrade",
    "downgrade": {"gpt-4o": "gpt-4o-mini"},
}


def test_past_soft_pct_downgrade_swaps_the_model_and_the_ledger_says_so(
    fake: FakeLLM, tmp_path: Path
) -> None:
    h = Budgeted(budgeted(fake, tmp_path, DOWNGRADE), tmp_path)
    asyncio.run(h.reservations_spend("b", h.gate._label("month"), 10_000_000))  # 1 %
    results = asyncio.run(h.sequential([req(1, model="gpt-4o")]))
    assert results[0].model == "gpt-4o-mini"
    (event,) = h.events()
    assert event.model == "gpt-4o-mini"
    assert event.budget_action == "downgrade:gpt-4o->gpt-4o-mini"
    assert [r.target for r in fake.requests] == ["gpt-4o-mini"]


def downgrading(fake: FakeLLM, tmp_path: Path, deployments: dict[str, dict[str, str]]) -> Budgeted:
    """Azure providers with these deployment maps (tried in that order), and a budget
    past its soft limit that downgrades gpt-4o to gpt-4o-mini."""
    data = make_config(fake, tmp_path, routing={"order": list(deployments)}).model_dump()
    azure = {"kind": "azure", "endpoint": fake.azure_endpoint, "api_version": "2024-10-21"}
    data["providers"] = {name: {**azure, "deployments": m} for name, m in deployments.items()}
    data["budgets"] = {"reservation_ttl_s": 60, "rules": [DOWNGRADE]}
    h = Budgeted(Config.model_validate(data), tmp_path)
    asyncio.run(h.reservations_spend("b", h.gate._label("month"), 10_000_000))  # 1 %
    return h


GATEWAY_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def test_a_downgraded_gateway_call_goes_to_the_providers_serving_the_cheaper_model(
    fake: FakeLLM, tmp_path: Path
) -> None:
    # Each model has one Azure provider of its own: the call asked for gpt-4o (only
    # "big" serves it); downgraded, it must go to "mini", on mini's deployment.
    h = downgrading(
        fake,
        tmp_path,
        {"big": {"gpt-4o": "big-deploy"}, "mini": {"gpt-4o-mini": "mini-deploy"}},
    )
    asked = req(1, model="gpt-4o", body=GATEWAY_BODY, only=frozenset({"big"}))
    (result,) = asyncio.run(h.sequential([asked]))
    assert (result.provider, result.model) == ("mini", "gpt-4o-mini")
    assert [r.target for r in fake.requests] == ["mini-deploy"]
    (event,) = h.events()
    assert event.budget_action == "downgrade:gpt-4o->gpt-4o-mini"


def test_a_gateway_call_is_not_downgraded_to_a_model_no_provider_serves(
    fake: FakeLLM, tmp_path: Path
) -> None:
    h = downgrading(fake, tmp_path, {"big": {"gpt-4o": "big-deploy"}})
    (result,) = asyncio.run(h.sequential([req(1, model="gpt-4o", body=GATEWAY_BODY)]))
    assert (result.provider, result.model) == ("big", "gpt-4o")
    assert [r.target for r in fake.requests] == ["big-deploy"]
    (event,) = h.events()
    assert event.budget_action is None


def test_below_soft_pct_nothing_changes(fake: FakeLLM, tmp_path: Path) -> None:
    budget = {"name": "b", "limit_usd": "1", "on_soft": "throttle"}
    h = Budgeted(budgeted(fake, tmp_path, budget), tmp_path)
    asyncio.run(h.sequential([req(1, model="gpt-4o")]))
    (event,) = h.events()
    assert (event.model, event.budget_action) == ("gpt-4o", None)


def test_past_soft_pct_throttle_holds_calls_to_the_budget_concurrency(
    fake: FakeLLM, tmp_path: Path
) -> None:
    fake.set_latency(40)
    budget = {
        "name": "b",
        "limit_usd": "1",
        "soft_pct": 1,
        "on_soft": "throttle",
        "throttle_concurrency": 2,
    }
    h = Budgeted(budgeted(fake, tmp_path, budget), tmp_path)
    asyncio.run(h.reservations_spend("b", h.gate._label("month"), 10_000_000))
    fake.clear_stats()
    results = asyncio.run(h.generate_many([req(n) for n in range(8)]))
    assert not any(isinstance(r, BaseException) for r in results)
    assert fake.stats()["max_in_flight"] <= 2
    assert {e.budget_action for e in h.events()} == {"throttle"}


def test_an_unpriced_model_under_a_budget_is_refused_with_the_fix(
    fake: FakeLLM, tmp_path: Path
) -> None:
    h = Budgeted(budgeted(fake, tmp_path, {"name": "b", "limit_usd": "1"}), tmp_path)

    async def one() -> None:
        try:
            await h.orchestrator.generate(req(1, model="no-such-model-x"))
        finally:
            await h.orchestrator.aclose()

    with pytest.raises(ConfigError) as caught:
        asyncio.run(one())
    assert "no known price" in caught.value.message
    assert 'pricing.overrides."openai/no-such-model-x"' in (caught.value.hint or "")
    assert fake.count() == 0
