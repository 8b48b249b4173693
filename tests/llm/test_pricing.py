"""The price book: genai-prices and overrides, exact nano-dollar costs, unpriced models."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal, localcontext
from typing import Any

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from huntaze_cli.config import PriceOverride, ProviderConfig
from huntaze_cli.llm import pricing
from huntaze_cli.llm.pricing import Price, PriceBook
from huntaze_cli.llm.providers import AzureProvider
from huntaze_cli.llm.types import Usage
from huntaze_cli.money import round_to_nano


def exact_cost_nano(price: Price, usage: Usage) -> int:
    """The reference: the Decimal formula with ample precision, rounded half-even."""
    with localcontext(prec=200):
        cached_price = price.input if price.cached_input is None else price.cached_input
        usd = (
            Decimal(usage.input_tokens - usage.cached_input_tokens) * price.input
            + Decimal(usage.cached_input_tokens) * cached_price
            + Decimal(usage.output_tokens) * price.output
        ) / Decimal(1_000_000)
        return round_to_nano(usd)


def genai_cost_nano(model: str, provider_id: str, usage: Usage) -> int:
    genai_usage = GenaiUsage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
    )
    return round_to_nano(calc_price(genai_usage, model, provider_id=provider_id).total_price)


USAGE = Usage(input_tokens=1000, cached_input_tokens=100, output_tokens=500)


@pytest.mark.parametrize(("name", "kind"), [("openai", "openai"), ("azure", "azure")])
def test_gpt_4o_mini_is_priced_by_genai_prices(name: str, kind: str) -> None:
    book = PriceBook({})
    price = book.price(name, kind, "gpt-4o-mini")
    assert price is not None
    assert price.source == "genai-prices"
    assert (price.input, price.output, price.cached_input) == (
        Decimal("0.15"),
        Decimal("0.6"),
        Decimal("0.075"),
    )
    # 900 x 0.15 + 100 x 0.075 + 500 x 0.6 = 442.5 USD per million requests like this one.
    assert book.cost_nano(price, USAGE) == 442_500
    assert book.cost_nano(price, USAGE) == genai_cost_nano("gpt-4o-mini", kind, USAGE)


def test_simulated_provider_is_priced_as_the_openai_model_it_imitates() -> None:
    book = PriceBook({})
    assert book.price("simulated", "simulated", "gpt-4o") == book.price(
        "openai", "openai", "gpt-4o"
    )


def test_an_override_wins_for_its_provider_only() -> None:
    overrides = {"azure/gpt-4o-mini": PriceOverride(input=Decimal("0.1"), output=Decimal("0.4"))}
    book = PriceBook(overrides)
    azure = book.price("azure", "azure", "gpt-4o-mini")
    openai = book.price("openai", "openai", "gpt-4o-mini")
    assert azure is not None and openai is not None
    assert (azure.source, azure.input, azure.output) == ("override", Decimal("0.1"), Decimal("0.4"))
    assert openai.source == "genai-prices"
    # No cached price in the override: cached input costs the same as other input.
    assert book.cost_nano(azure, USAGE) == (1000 * 100 + 500 * 400)


def test_an_override_can_price_a_model_genai_prices_does_not_know() -> None:
    overrides = {"openai/house-model": PriceOverride(input=Decimal(1), output=Decimal(2))}
    assert PriceBook(overrides).price("openai", "openai", "house-model") is not None


def test_cached_input_tokens_are_charged_at_the_cached_price() -> None:
    price = Price(Decimal("2.5"), Decimal("10"), Decimal("1.25"))
    book = PriceBook({})
    full = book.cost_nano(price, Usage(input_tokens=1000, output_tokens=0))
    half_cached = book.cost_nano(price, Usage(input_tokens=1000, cached_input_tokens=500))
    assert full == 2_500_000
    assert half_cached == 500 * 2_500 + 500 * 1_250
    # A report of more cached than input tokens is read as all input cached, never negative.
    assert book.cost_nano(price, Usage(input_tokens=10, cached_input_tokens=50)) == 12_500


def test_unknown_model_is_unpriced_and_reported_once_per_provider() -> None:
    reported: list[str] = []
    book = PriceBook({}, on_unpriced=reported.append)
    for _ in range(3):
        assert book.price("azure", "azure", "no-such-model-xyz") is None
        assert book.price("openai", "openai", "no-such-model-xyz") is None
    assert reported == ["no-such-model-xyz", "no-such-model-xyz"]


def test_models_priced_in_other_units_are_unpriced_and_free_models_cost_zero() -> None:
    book = PriceBook({})
    assert book.price("openai", "openai", "tts-1") is None
    free = book.price("azure", "azure", "phi-4-reasoning:free")
    assert free is not None
    assert book.cost_nano(free, USAGE) == 0


def test_azure_is_priced_by_the_model_not_the_deployment() -> None:
    provider = AzureProvider(
        "azure-eu",
        ProviderConfig(kind="azure", deployments={"gpt-4o-mini": "prod-mini-eu"}),
    )
    book = PriceBook({})
    assert provider.deployment_for("gpt-4o-mini") == "prod-mini-eu"
    price = book.price(provider.name, provider.kind, "gpt-4o-mini")
    assert price is not None and price.input == Decimal("0.15")
    # The deployment name means nothing to the price table.
    assert book.price(provider.name, provider.kind, "prod-mini-eu") is None


def test_each_provider_and_model_is_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = pricing.genai_price

    def counting(provider_id: str, model: str) -> Price | None:
        calls.append((provider_id, model))
        return real(provider_id, model)

    monkeypatch.setattr(pricing, "genai_price", counting)
    book = PriceBook({})
    for _ in range(5):
        book.price("azure", "azure", "gpt-4o-mini")
        book.price("sim", "simulated", "gpt-4o-mini")
    assert calls == [("azure", "gpt-4o-mini"), ("openai", "gpt-4o-mini")]


@pytest.mark.parametrize("input_tokens", [1_000, 300_000])
def test_tiered_models_are_costed_by_genai_prices_each_time(input_tokens: int) -> None:
    book = PriceBook({})
    price = book.price("openai", "openai", "gpt-5.4")
    assert price is not None and price.tiered == ("openai", "gpt-5.4")
    usage = Usage(input_tokens=input_tokens, cached_input_tokens=100, output_tokens=10)
    assert book.cost_nano(price, usage) == genai_cost_nano("gpt-5.4", "openai", usage)


def test_price_rejects_negative_and_non_finite_values() -> None:
    with pytest.raises(ValueError, match="input"):
        Price(Decimal("-1"), Decimal(1))
    with pytest.raises(ValueError, match="output"):
        Price(Decimal(1), Decimal("NaN"))


# Prices with up to 6 decimals (negotiated rates) and occasionally many more.
decimal_prices = st.builds(
    lambda units, places: Decimal(units).scaleb(-places),
    st.integers(0, 10**9),
    st.one_of(st.integers(0, 6), st.integers(7, 30)),
)
prices = st.builds(
    lambda i, o, c: Price(i, o, c), decimal_prices, decimal_prices, st.none() | decimal_prices
)


@st.composite
def usages(draw: Any) -> Usage:
    input_tokens = draw(st.integers(0, 10**9))
    return Usage(
        input_tokens=input_tokens,
        cached_input_tokens=draw(st.integers(0, input_tokens)),
        output_tokens=draw(st.integers(0, 10**9)),
    )


@settings(max_examples=300, deadline=None)
@given(price=prices, usage=usages())
def test_cost_is_the_exact_decimal_formula_rounded_half_even(price: Price, usage: Usage) -> None:
    cost = PriceBook({}).cost_nano(price, usage)
    assert type(cost) is int
    assert cost == exact_cost_nano(price, usage)


@settings(max_examples=50, deadline=None)
@given(price=prices, batch=st.lists(usages(), min_size=1, max_size=200))
def test_a_sum_of_costs_equals_the_sum_of_exact_per_event_costs(
    price: Price, batch: list[Usage]
) -> None:
    book = PriceBook({})
    costs = [book.cost_nano(price, usage) for usage in batch]
    assert all(type(cost) is int for cost in costs)
    assert sum(costs) == sum(exact_cost_nano(price, usage) for usage in batch)


def test_importing_pricing_and_providers_loads_neither_sdk() -> None:
    code = (
        "import sys, huntaze_cli.llm.pricing, huntaze_cli.llm.providers\n"
        "print(sorted(m for m in ('openai', 'genai_prices', 'httpx2') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
