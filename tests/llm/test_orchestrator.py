"""The hybrid orchestrator over real HTTP: the openai SDK against the local fake server.

Every failure class of DESIGN.md invariant 5, breaker transitions under concurrent calls,
each routing strategy, the feature flags, exact pricing and secret hygiene.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from huntaze_cli.clock import SYSTEM_CLOCK, Clock, ManualClock
from huntaze_cli.config import Config
from huntaze_cli.errors import ConfigError
from huntaze_cli.llm.orchestrator import GenerationFailed, Orchestrator
from huntaze_cli.llm.pricing import PriceBook
from huntaze_cli.llm.providers import build_providers
from huntaze_cli.llm.types import GenerationRequest, Message
from huntaze_cli.models import CostEvent
from huntaze_cli.observability.metrics import Metrics
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from huntaze_cli.storage.sqlite.providers import SQLiteProviderStateStore
from huntaze_testing.fake_llm import FakeLLM

OPENAI_KEY = "sk-orch-openai-5e5e5e5e5e5e"
AZURE_KEY = "az-orch-azure-7a7a7a7a7a7a"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLM]:
    with FakeLLM(openai_keys=[OPENAI_KEY], azure_keys=[AZURE_KEY], timeout_sleep_s=3.0) as srv:
        yield srv


@pytest.fixture
def fake(server: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    return server


def make_config(fake: FakeLLM, tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "ledger": {"path": str(tmp_path / "ledger.db")},
        "routing": {
            "order": ["azure", "openai"],
            "timeout_s": 1.0,
            "deadline_s": 10.0,
            "max_attempts": 4,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "circuit_failure_threshold": 3,
            "circuit_cooldown_s": 0.4,
        },
        "providers": {
            "azure": {
                "kind": "azure",
                "endpoint": fake.azure_endpoint,
                "api_version": "2024-10-21",
                "deployments": {"gpt-4o-mini": "mini-prod"},
            },
            "openai": {"kind": "openai", "base_url": fake.openai_base_url},
        },
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return Config.model_validate(data)


class Harness:
    """An orchestrator with a real SQLite ledger and shared breaker state in tmp_path."""

    def __init__(self, config: Config, tmp_path: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.ledger = SQLiteLedger(config.ledger_path)
        self.warnings: list[str] = []
        self.metrics = Metrics()
        self.store = SQLiteProviderStateStore(tmp_path / "providers.db")
        self.orchestrator = Orchestrator(
            config,
            build_providers(config),
            prices=PriceBook(
                config.pricing.overrides,
                on_unpriced=lambda model: self.warnings.append(f"unpriced {model}"),
            ),
            ledger=self.ledger,
            metrics=self.metrics,
            state_store=self.store,
            warn=self.warnings.append,
            clock=clock,
        )

    async def generate_many(self, requests: list[GenerationRequest]) -> list[Any]:
        try:
            return await asyncio.gather(
                *(self.orchestrator.generate(r) for r in requests), return_exceptions=True
            )
        finally:
            await self.orchestrator.aclose()

    def one(self, request: GenerationRequest) -> Any:
        result = run(self.generate_many([request]))[0]
        return result

    def events(self) -> list[CostEvent]:
        return list(self.ledger.events())


def req(n: int = 0, **overrides: Any) -> GenerationRequest:
    base: dict[str, Any] = {
        "request_id": f"req-{n}",
        "model": "gpt-4o-mini",
        "messages": [
            Message("system", "You write short, warm messages."),
            Message("user", f"Write a thank-you to fan number {n} who loves cosplay."),
        ],
        "max_tokens": 40,
        "account": f"creator_{n % 5}",
        "campaign_id": "cmp-1",
        "tenant": "agency_a",
    }
    base.update(overrides)
    return GenerationRequest(**base)


def test_priority_success_is_priced_exactly_and_recorded(fake: FakeLLM, tmp_path: Path) -> None:
    h = Harness(make_config(fake, tmp_path), tmp_path)
    result = h.one(req())
    assert result.provider == "azure" and result.route_reason == "priority"
    assert result.deployment == "mini-prod"
    assert fake.count("azure", "mini-prod") == 1
    (event,) = h.events()
    assert event.provider == "azure" and event.deployment == "mini-prod"
    assert event.model == "gpt-4o-mini" and event.status == "ok" and event.priced
    # genai-prices: gpt-4o-mini is $0.15 in / $0.60 out per million tokens.
    exact = (
        Decimal(event.input_tokens) * Decimal("0.15")
        + Decimal(event.output_tokens) * Decimal("0.6")
    ) / Decimal(1_000_000)
    assert event.cost_nano == int((exact * 10**9).quantize(Decimal(1), ROUND_HALF_EVEN))
    assert event.cost_nano == result.cost_nano > 0
    assert (event.account, event.campaign_id, event.tenant) == ("creator_0", "cmp-1", "agency_a")


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("429", "rate_limited"),
        ("429:retry-after=5", "rate_limited"),
        ("429:retry-after-ms=5000", "rate_limited"),
        ("429:x-ms-retry-after-ms=5000", "rate_limited"),
        ("500", "server_error"),
        ("503", "server_error"),
        ("timeout", "timeout"),
        ("drop", "connection"),
        ("malformed", "malformed"),
        ("content_filter", "content_filter"),
    ],
)
def test_retryable_failures_fall_over_to_the_next_provider(
    fake: FakeLLM, tmp_path: Path, fault: str, kind: str
) -> None:
    fake.script("azure", [fault])
    # Failing over never waits for the failed provider's Retry-After: the 5 s hints
    # outlast this deadline, so waiting for them would fail the generation.
    h = Harness(make_config(fake, tmp_path, routing={"deadline_s": 3.0}), tmp_path)
    result = h.one(req())
    assert result.provider == "openai"
    assert result.route_reason == f"fallback:{kind}"
    failed, ok = sorted(h.events(), key=lambda e: e.status)
    assert (failed.status, failed.error_kind, failed.provider) == ("error", kind, "azure")
    assert (ok.status, ok.route_reason) == ("ok", f"fallback:{kind}")
    assert failed.request_id == ok.request_id and failed.attempt_id != ok.attempt_id


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("retry-after=1", "retry-after=5"),
        ("retry-after-ms=300", "retry-after-ms=5000"),
        ("x-ms-retry-after-ms=300", "x-ms-retry-after-ms=5000"),
    ],
)
def test_a_pinned_provider_honours_retry_after(
    fake: FakeLLM, tmp_path: Path, short: str, long: str
) -> None:
    config = make_config(fake, tmp_path, routing={"deadline_s": 3.0})
    # A hint that outlasts the deadline ends the generation: no early retry.
    fake.script("azure", [f"429:{long}", "ok"])
    failure = Harness(config, tmp_path).one(req(provider="azure"))
    assert isinstance(failure, GenerationFailed) and failure.kind == "rate_limited"
    assert fake.count("azure") == 1
    # A hint within it is waited out, then the same provider is asked again.
    fake.reset()
    fake.script("azure", [f"429:{short}"])
    result = Harness(config, tmp_path).one(req(provider="azure"))
    assert result.provider == "azure" and result.route_reason == "retry:rate_limited"
    assert fake.count("azure") == 2 and fake.count("openai") == 0


def test_retry_on_the_same_provider_backs_off_with_jitter(fake: FakeLLM, tmp_path: Path) -> None:
    fake.script("azure", ["500", "500", "ok"])
    config = make_config(fake, tmp_path, routing={"backoff_base_s": 0.1, "backoff_max_s": 1})
    h = Harness(config, tmp_path)
    result = h.one(req(provider="azure"))
    assert [a.route_reason for a in result.attempts] == [
        "pinned",
        "retry:server_error",
        "retry:server_error",
    ]


def test_a_backoff_past_the_deadline_ends_the_generation(fake: FakeLLM, tmp_path: Path) -> None:
    # The first backoff is half to all of backoff_base_s: 5-10 s, past the 3 s deadline.
    fake.script("azure", ["500", "ok"])
    routing = {"backoff_base_s": 10, "backoff_max_s": 10, "deadline_s": 3.0}
    failure = Harness(make_config(fake, tmp_path, routing=routing), tmp_path).one(
        req(provider="azure")
    )
    assert isinstance(failure, GenerationFailed) and failure.kind == "server_error"
    assert fake.count("azure") == 1


def test_content_filter_without_fallback_fails_at_once(fake: FakeLLM, tmp_path: Path) -> None:
    fake.script("azure", ["content_filter"])
    config = make_config(fake, tmp_path, routing={"fallback_on_content_filter": False})
    h = Harness(config, tmp_path)
    failure = h.one(req())
    assert isinstance(failure, GenerationFailed)
    assert failure.kind == "content_filter" and len(failure.attempts) == 1
    assert fake.count("openai") == 0


def test_other_4xx_fails_the_message_without_retry(fake: FakeLLM, tmp_path: Path) -> None:
    fake.script("azure", ["400"])
    h = Harness(make_config(fake, tmp_path), tmp_path)
    failure = h.one(req())
    assert isinstance(failure, GenerationFailed) and failure.kind == "bad_request"
    assert fake.count() == 1
    assert [e.error_kind for e in h.events()] == ["bad_request"]


def test_401_marks_the_provider_misconfigured_and_falls_over(
    fake: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "az-wrong-key-000000")
    h = Harness(make_config(fake, tmp_path), tmp_path)
    result = h.one(req())
    assert result.provider == "openai" and result.route_reason == "fallback:auth"
    shared = SQLiteProviderStateStore(tmp_path / "providers.db").load()
    assert shared["azure"].misconfigured and shared["azure"].state == "open"
    assert "az-wrong-key-000000" not in json.dumps(str(shared["azure"]))


def test_a_circuit_opened_by_another_process_is_skipped_here(fake: FakeLLM, tmp_path: Path) -> None:
    """Two orchestrators (two hosts) share the provider state: B does not call what A
    found failing, and sends there again once it is closed in the shared state."""
    fake.set_mix("azure", {"500": 1.0})
    config = make_config(fake, tmp_path)
    a = Harness(config, tmp_path)
    results = run(a.generate_many([req(n) for n in range(3)]))  # threshold 3
    assert {r.provider for r in results} == {"openai"}
    assert SQLiteProviderStateStore(tmp_path / "providers.db").load()["azure"].state == "open"
    fake.clear_faults()
    before = fake.count("azure")
    b = Harness(config, tmp_path)
    result = b.one(req(10))
    assert result.provider == "openai" and result.route_reason == "circuit_open"
    assert fake.count("azure") == before
    assert b.orchestrator.breakers["azure"].state == "open"


def test_every_provider_failing_uses_max_attempts(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_mix("*", {"500": 1.0})
    config = make_config(fake, tmp_path, routing={"circuit_failure_threshold": 50})
    h = Harness(config, tmp_path)
    failure = h.one(req())
    assert isinstance(failure, GenerationFailed)
    assert failure.kind == "server_error" and len(failure.attempts) == 4
    assert len(h.events()) == 4 and fake.count() == 4
    assert "no attempt succeeded (4 attempts)" in str(failure)


def test_the_deadline_bounds_a_generation(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_mix("*", {"timeout": 1.0})
    routing = {"deadline_s": 0.6, "timeout_s": 0.25, "max_attempts": 10}
    h = Harness(make_config(fake, tmp_path, routing=routing), tmp_path)
    failure = h.one(req())
    assert isinstance(failure, GenerationFailed) and failure.kind == "timeout"
    # Every attempt lasts its whole timeout, so 0.6 s holds at most three (the last cut
    # short); however slow they run, none starts after the deadline.
    assert 1 <= len(failure.attempts) <= 3


def test_breaker_opens_skips_then_admits_one_probe(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_mix("azure", {"500": 1.0})
    clock = ManualClock()
    h = Harness(make_config(fake, tmp_path), tmp_path, clock=clock)

    async def scenario() -> None:
        orch = h.orchestrator
        # Three failures in a row open azure's circuit (threshold 3).
        for n in range(3):
            result = await orch.generate(req(n))
            assert result.provider == "openai"
        assert orch.breakers["azure"].state == "open"
        assert SQLiteProviderStateStore(tmp_path / "providers.db").load()["azure"].state == "open"
        before = fake.count("azure")
        skipped = await asyncio.gather(*(orch.generate(req(10 + n)) for n in range(8)))
        assert fake.count("azure") == before  # open: not even tried
        assert {r.route_reason for r in skipped} == {"circuit_open"}
        clock.advance(0.39)  # still cooling down (0.4 s)
        still = await orch.generate(req(19))
        assert still.route_reason == "circuit_open" and fake.count("azure") == before
        # After the cooldown exactly one concurrent caller probes azure.
        clock.advance(0.02)
        fake.clear_faults()
        fake.set_latency(100, kind="azure")
        probes = await asyncio.gather(*(orch.generate(req(20 + n)) for n in range(10)))
        assert fake.count("azure") == before + 1
        assert sum(r.provider == "azure" for r in probes) == 1
        assert orch.breakers["azure"].state == "closed"
        await orch.aclose()

    run(scenario())
    text = h.metrics.exposition().decode()
    assert 'huntaze_circuit_state{provider="azure"} 0.0' in text


def test_a_failed_probe_reopens_the_circuit(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_mix("azure", {"503": 1.0})
    clock = ManualClock()
    h = Harness(make_config(fake, tmp_path), tmp_path, clock=clock)

    async def scenario() -> None:
        orch = h.orchestrator
        for n in range(3):
            await orch.generate(req(n))
        clock.advance(0.45)
        result = await orch.generate(req(9))
        assert result.provider == "openai"
        assert orch.breakers["azure"].state == "open"
        await orch.aclose()

    run(scenario())


def test_cost_strategy_prefers_the_cheaper_provider(fake: FakeLLM, tmp_path: Path) -> None:
    overrides = {
        "azure/gpt-4o-mini": {"input": "0.30", "output": "1.20"},
        "openai/gpt-4o-mini": {"input": "0.10", "output": "0.40"},
    }
    config = make_config(
        fake, tmp_path, routing={"strategy": "cost"}, pricing={"overrides": overrides}
    )
    h = Harness(config, tmp_path)
    result = h.one(req())
    assert result.provider == "openai" and result.route_reason == "cost"
    (event,) = h.events()
    exact = (
        Decimal(event.input_tokens) * Decimal("0.10")
        + Decimal(event.output_tokens) * Decimal("0.40")
    ) / Decimal(1_000_000)
    assert event.cost_nano == int((exact * 10**9).quantize(Decimal(1), ROUND_HALF_EVEN))


def test_latency_strategy_learns_the_faster_provider(fake: FakeLLM, tmp_path: Path) -> None:
    # Far apart, so a slow first connection on a loaded machine cannot swap them.
    fake.set_latency(1500, kind="azure")
    routing = {"strategy": "latency", "timeout_s": 5.0}
    h = Harness(make_config(fake, tmp_path, routing=routing), tmp_path)

    async def scenario() -> list[str]:
        orch = h.orchestrator
        chosen = [(await orch.generate(req(n))).provider for n in range(6)]
        await orch.aclose()
        return chosen

    chosen = run(scenario())
    assert set(chosen[:2]) == {"azure", "openai"}  # each measured once
    assert chosen[2:] == ["openai"] * 4


def test_weighted_split_is_stable_per_request_id(fake: FakeLLM, tmp_path: Path) -> None:
    config = make_config(
        fake, tmp_path, routing={"strategy": "weighted", "weights": {"azure": 1, "openai": 3}}
    )
    h = Harness(config, tmp_path)
    orch = h.orchestrator
    plans = [orch.router.plan(req(n)).order[0] for n in range(2000)]
    share = plans.count("openai") / len(plans)
    assert 0.70 < share < 0.80
    assert plans == [orch.router.plan(req(n)).order[0] for n in range(2000)]
    result = h.one(req(7))
    assert result.route_reason == "weighted" and result.provider == plans[7]


def test_flag_legacy_sends_everything_to_one_provider_without_fallback(
    fake: FakeLLM, tmp_path: Path
) -> None:
    fake.script("openai", ["500"])
    config = make_config(
        fake,
        tmp_path,
        flags={"hybrid_routing": False, "legacy_provider": "openai"},
        routing={"max_attempts": 2},
    )
    h = Harness(config, tmp_path)
    result = h.one(req())
    assert result.provider == "openai"
    assert [a.route_reason for a in result.attempts] == ["flag:legacy", "retry:server_error"]
    assert fake.count("azure") == 0


def test_rollout_percent_splits_accounts_stably(fake: FakeLLM, tmp_path: Path) -> None:
    config = make_config(fake, tmp_path, flags={"rollout_percent": 30})
    router = Harness(config, tmp_path).orchestrator.router
    accounts = [f"creator_{n}" for n in range(1000)]
    hybrid = [router.on_hybrid_path(req(account=a)) for a in accounts]
    assert 0.25 < sum(hybrid) / len(hybrid) < 0.35
    # Stable: the same account always lands on the same path, whatever the request id.
    assert hybrid == [router.on_hybrid_path(req(n=9, account=a)) for a in accounts]
    legacy = next(a for a, on in zip(accounts, hybrid, strict=True) if not on)
    assert router.plan(req(account=legacy)).reason == "flag:legacy"
    none = make_config(fake, tmp_path, flags={"rollout_percent": 0})
    assert not Harness(none, tmp_path).orchestrator.router.on_hybrid_path(req())


def test_flags_from_environment(
    fake: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huntaze_cli.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('[routing]\norder = ["azure", "openai"]\n')
    monkeypatch.setenv("HUNTAZE_FLAGS__HYBRID_ROUTING", "false")
    monkeypatch.setenv("HUNTAZE_FLAGS__ROLLOUT_PERCENT", "25")
    monkeypatch.setenv("HUNTAZE_FLAGS__COST_TRACKING", "false")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.azure_endpoint)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
    config = load_config(path)
    assert not config.flags.hybrid_routing and config.flags.rollout_percent == 25
    assert not config.flags.cost_tracking


def test_cost_tracking_off_writes_nothing(fake: FakeLLM, tmp_path: Path) -> None:
    h = Harness(make_config(fake, tmp_path, flags={"cost_tracking": False}), tmp_path)
    assert h.one(req()).provider == "azure"
    assert h.events() == []


def test_sum_of_events_equals_results_to_the_nano_dollar(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_mix("azure", {"429": 0.2, "500": 0.1}, seed=3)
    config = make_config(fake, tmp_path, routing={"circuit_failure_threshold": 100})
    h = Harness(config, tmp_path)
    results = run(h.generate_many([req(n) for n in range(120)]))
    assert all(not isinstance(r, BaseException) for r in results)
    events = h.events()
    assert len(events) == sum(len(r.attempts) for r in results)
    assert sum(e.cost_nano for e in events) == sum(a.cost_nano for r in results for a in r.attempts)
    for event in events:  # each event is the exact Decimal formula, rounded once
        exact = (
            Decimal(event.input_tokens) * Decimal("0.15")
            + Decimal(event.output_tokens) * Decimal("0.6")
        ) / Decimal(1_000_000)
        assert event.cost_nano == int((exact * 10**9).quantize(Decimal(1), ROUND_HALF_EVEN))


def test_unpriced_model_is_recorded_unpriced_and_warned_once(fake: FakeLLM, tmp_path: Path) -> None:
    h = Harness(make_config(fake, tmp_path), tmp_path)
    run(h.generate_many([req(n, model="mystery-model-9") for n in range(3)]))
    events = h.events()
    assert len(events) == 3 and all(not e.priced and e.cost_nano == 0 for e in events)
    assert h.warnings.count("unpriced mystery-model-9") == 1


def test_no_secret_in_events_errors_or_metrics(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_mix("*", {"401": 0.5, "500": 0.5}, seed=1)
    h = Harness(make_config(fake, tmp_path), tmp_path)
    results = run(h.generate_many([req(n) for n in range(10)]))
    blob = "\n".join(
        [e.to_json() for e in h.events()]
        + [str(r) for r in results]
        + h.warnings
        + [h.metrics.exposition().decode()]
        + [str(SQLiteProviderStateStore(tmp_path / "providers.db").load())]
    )
    assert OPENAI_KEY not in blob and AZURE_KEY not in blob


def test_missing_key_is_a_config_error_naming_the_variable(
    fake: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_API_KEY")
    h = Harness(make_config(fake, tmp_path), tmp_path)
    failure = h.one(req())
    assert isinstance(failure, ConfigError)
    assert "AZURE_OPENAI_API_KEY" in failure.message
    # With one key present the other provider serves.
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    h2 = Harness(make_config(fake, tmp_path), tmp_path)
    assert h2.one(req()).provider == "openai"


def test_simulated_provider_runs_offline_by_default(tmp_path: Path) -> None:
    config = Config.model_validate({"ledger": {"path": str(tmp_path / "l.db")}})
    h = Harness(config, tmp_path)
    result = h.one(req())
    assert result.provider == "simulated" and result.text
    (event,) = h.events()
    assert event.provider == "simulated" and event.priced and event.cost_nano > 0


def test_metrics_count_requests_failures_and_fallbacks(fake: FakeLLM, tmp_path: Path) -> None:
    fake.script("azure", ["503"])
    h = Harness(make_config(fake, tmp_path), tmp_path)
    h.one(req())
    text = h.metrics.exposition().decode()
    assert (
        'huntaze_llm_failures_total{kind="server_error",model="gpt-4o-mini",provider="azure"}'
        in text
    )
    fallback = (
        'huntaze_llm_fallbacks_total{from_provider="azure",reason="server_error",'
        'to_provider="openai"} 1.0'
    )
    assert fallback in text
    assert 'huntaze_llm_requests_total{model="gpt-4o-mini",provider="openai"} 1.0' in text


def test_auto_uses_the_cheapest_provider_until_it_misses_the_service_levels(
    fake: FakeLLM, tmp_path: Path
) -> None:
    overrides = {
        "azure/gpt-4o-mini": {"input": "0.30", "output": "1.20"},
        "openai/gpt-4o-mini": {"input": "0.10", "output": "0.40"},
    }
    config = make_config(
        fake,
        tmp_path,
        routing={
            "strategy": "auto",
            "circuit_failure_threshold": 1000,
            "auto": {"max_error_pct": 10, "max_p95_ms": 5000, "window": 20},
        },
        pricing={"overrides": overrides},
    )
    fake.set_mix("openai", {"500": 0.5}, seed=4)
    h = Harness(config, tmp_path)

    async def scenario() -> list[Any]:
        try:
            return [await h.orchestrator.generate(req(n)) for n in range(60)]
        finally:
            await h.orchestrator.aclose()

    results = run(scenario())
    first = [e for e in h.events() if e.route_reason and e.route_reason.startswith("auto:")]
    assert first[0].provider == "openai" and first[0].route_reason == "auto:cheapest"
    # Once openai's recent error rate is measured above 10 %, azure goes first.
    assert [r.route_reason for r in results[-10:]] == ["auto:slo:azure"] * 10
    assert {r.provider for r in results[-10:]} == {"azure"}


def test_auto_goes_back_to_the_cheapest_once_its_figures_are_old(tmp_path: Path) -> None:
    from huntaze_cli.llm.routing import HealthWindow, Router

    now = [0.0]
    window = HealthWindow(20, refresh=1, max_age_s=60, clock=lambda: now[0])
    config = Config.model_validate(
        {"routing": {"strategy": "auto", "auto": {"max_error_pct": 5, "max_p95_ms": 500}}}
    )
    prices = {"cheap": Decimal("1"), "dear": Decimal("2")}
    router = Router(config, ["dear", "cheap"], price_of=lambda p, m: prices[p], health=window)
    assert router.plan(req()).reason == "auto:cheapest"
    for _ in range(20):
        window.observe("cheap", 900.0, failed=False)  # p95 above 500 ms
    assert router.plan(req()).order[0] == "dear"
    assert router.plan(req()).reason == "auto:slo:dear"
    now[0] = 61.0
    assert router.plan(req()).reason == "auto:cheapest"


def test_the_served_snapshot_is_recorded_and_priced(fake: FakeLLM, tmp_path: Path) -> None:
    # An Azure deployment mapped to gpt-4o answers as gpt-4o-2024-05-13, which genai-prices
    # lists at $5 in / $15 out per million tokens (gpt-4o itself: $2.50 / $10).
    fake.control({"deployment_models": {"gpt4o-prod": "gpt-4o-2024-05-13"}})
    config = make_config(fake, tmp_path)
    config.providers["azure"].deployments["gpt-4o"] = "gpt4o-prod"
    h = Harness(config, tmp_path)
    result = h.one(req(model="gpt-4o", provider="azure"))
    (event,) = h.events()
    assert (event.model, event.response_model) == ("gpt-4o", "gpt-4o-2024-05-13")
    assert not event.model_mismatch  # a snapshot of the mapped model
    exact = (Decimal(event.input_tokens) * 5 + Decimal(event.output_tokens) * 15) / 10**6
    assert event.cost_nano == int((exact * 10**9).quantize(Decimal(1), ROUND_HALF_EVEN))
    assert result.cost_nano == event.cost_nano


def test_another_model_served_is_counted_as_a_mismatch(fake: FakeLLM, tmp_path: Path) -> None:
    from huntaze_cli.config import load_config
    from huntaze_cli.costs.reports import breakdown, stats

    fake.control({"deployment_models": {"gpt4o-prod": "gpt-4o-mini-2024-07-18"}})
    config = make_config(fake, tmp_path)
    config.providers["azure"].deployments["gpt-4o"] = "gpt4o-prod"
    h = Harness(config, tmp_path)
    run(h.generate_many([req(n, model="gpt-4o", provider="azure") for n in range(3)]))
    events = h.events()
    assert all(e.response_model == "gpt-4o-mini-2024-07-18" and e.model_mismatch for e in events)
    report = stats(load_config(), h.ledger)
    assert report.model_mismatches == 3
    now = events[0].ts
    rows = breakdown(
        h.ledger, start=now, end=now + timedelta(seconds=1), group_by=["response_model"]
    ).rows
    assert [(r.response_model, r.requests) for r in rows] == [("gpt-4o-mini-2024-07-18", 3)]  # type: ignore[attr-defined]
