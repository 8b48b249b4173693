"""The price book: what one attempt cost, exactly, from its usage and the model's price.

Prices come from ``[pricing.overrides."<provider>/<model>"]`` (negotiated rates) and
otherwise from genai-prices. An Azure deployment is priced as the model it serves, and the
simulated provider as the OpenAI model it imitates. A model with no known price is
*unpriced* (``price`` returns None): the caller records it as such, never as $0
(DESIGN.md invariant 1).

Resolving a price through genai-prices costs about 150 us, half the orchestrator's CPU
budget per generation, so each (provider, model) is resolved once and costs are computed
here from the cached per-million-token prices in integer arithmetic: exact for any token
count and any number of price decimals, with no dependence on the Decimal context.
genai-prices itself (about 200 ms to import) is imported on the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from huntaze_cli.config import PriceOverride
from huntaze_cli.llm.types import Usage
from huntaze_cli.money import round_to_nano

# genai-prices provider ids: the simulated provider is priced as the OpenAI model it imitates.
_GENAI_PROVIDER = {"azure": "azure", "openai": "openai", "simulated": "openai"}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price in US dollars per million tokens, and where it came from.

    ``cached_input`` None means cached input tokens cost the same as other input tokens.
    ``tiered`` is set when genai-prices prices the model by volume tiers: the fields then
    hold the base tier (good for estimates) and ``PriceBook.cost_nano`` asks genai-prices
    for each attempt.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    source: str = "override"  # "override" | "genai-prices"
    tiered: tuple[str, str] | None = None  # (genai-prices provider id, model)
    # (input, output, cached input) as integers over one common power of ten, and how to
    # turn their weighted sum into nano-dollars: multiply by `scale_up`, or divide by
    # `scale_down` rounding half-even.
    _scaled: tuple[int, int, int, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cached = self.input if self.cached_input is None else self.cached_input
        parts = [
            _fraction(self.input, "input"),
            _fraction(self.output, "output"),
            _fraction(cached, "cached_input"),
        ]
        places = max(exponent for _, exponent in parts)
        n_in, n_out, n_cached = (n * 10 ** (places - exponent) for n, exponent in parts)
        # USD per million tokens -> nano-dollars per token is a factor of 1000.
        up, down = (10 ** (3 - places), 1) if places <= 3 else (1, 10 ** (places - 3))
        object.__setattr__(self, "_scaled", (n_in, n_out, n_cached, up, down))


def _fraction(value: Decimal, name: str) -> tuple[int, int]:
    """``value`` as (n, k) with value == n / 10**k exactly."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"price {name}: {value!r} is not a non-negative decimal")
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    n = int("".join(map(str, digits)) or "0")
    if exponent >= 0:
        return n * 10**exponent, 0
    return n, -exponent


class PriceBook:
    """Resolves and caches prices per (provider, model) and turns usage into nano-dollars."""

    def __init__(
        self,
        overrides: Mapping[str, PriceOverride],
        *,
        on_unpriced: Callable[[str], None] | None = None,
    ) -> None:
        self._overrides = {
            key: Price(o.input, o.output, o.cached_input, source="override")
            for key, o in overrides.items()
        }
        self._on_unpriced = on_unpriced
        self._cache: dict[tuple[str, str], Price | None] = {}
        self._served: dict[tuple[str, str, str], Price | None] = {}

    def price(self, provider_name: str, provider_kind: str, model: str) -> Price | None:
        """The price of ``model`` on ``provider_name`` (by model, never by deployment).

        None when neither an override nor genai-prices knows it; ``on_unpriced(model)`` is
        then called once for this provider and model.
        """
        key = (provider_name, model)
        cached = self._cache.get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        price = self._overrides.get(f"{provider_name}/{model}")
        if price is None:
            price = genai_price(_GENAI_PROVIDER.get(provider_kind, provider_kind), model)
        self._cache[key] = price
        if price is None and self._on_unpriced is not None:
            self._on_unpriced(model)
        return price

    def served_price(
        self, provider_name: str, provider_kind: str, model: str, response_model: str | None
    ) -> Price | None:
        """The price of what served an attempt: ``model`` mapped, ``response_model`` served.

        An Azure deployment mapped to ``gpt-4o`` may run ``gpt-4o-2024-05-13``, priced
        differently. In order: an override for the served model, an override for the
        mapped model (a negotiated rate for the deployment), genai-prices' price of the
        served model, the mapped model's price (``price``). Without a served model this
        is ``price``.
        """
        if not response_model or response_model == model:
            return self.price(provider_name, provider_kind, model)
        key = (provider_name, model, response_model)
        cached = self._served.get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        price = self._overrides.get(f"{provider_name}/{response_model}")
        if price is None and f"{provider_name}/{model}" not in self._overrides:
            price = genai_price(_GENAI_PROVIDER.get(provider_kind, provider_kind), response_model)
        if price is None:
            price = self.price(provider_name, provider_kind, model)
        self._served[key] = price
        return price

    def cost_nano(self, price: Price, usage: Usage) -> int:
        """The exact cost of ``usage`` at ``price``, rounded half-even to a nano-dollar.

        Cached input tokens are part of the input tokens (as both APIs report them) and are
        charged at ``cached_input`` instead of ``input``.
        """
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        if price.tiered is not None:
            return _tiered_cost_nano(price.tiered, usage, cached)
        n_in, n_out, n_cached, up, down = price._scaled
        total = (
            (usage.input_tokens - cached) * n_in + cached * n_cached + usage.output_tokens * n_out
        )
        if down == 1:
            return total * up
        quotient, remainder = divmod(total, down)
        twice = 2 * remainder
        if twice > down or (twice == down and quotient % 2):
            quotient += 1
        return quotient


def genai_price(provider_id: str, model: str) -> Price | None:
    """The price genai-prices lists today for ``model`` at ``provider_id``, or None."""
    from genai_prices import Usage as GenaiUsage
    from genai_prices import calc_price

    try:
        calculation = calc_price(
            GenaiUsage(input_tokens=0, output_tokens=0), model, provider_id=provider_id
        )
    except LookupError:
        return None
    model_price = calculation.model_price
    found = {
        name: getattr(model_price, name)
        for name in ("input_mtok", "output_mtok", "cache_read_mtok")
    }
    if all(value is None for value in found.values()):
        # Listed with no price at all is a free model; priced in other units (audio,
        # characters) is not a chat model we can price from token usage.
        if any(value is not None for value in vars(model_price).values()):
            return None
        return Price(Decimal(0), Decimal(0), source="genai-prices")
    tiered = any(value is not None and not isinstance(value, Decimal) for value in found.values())
    base = {name: _base(value) for name, value in found.items()}
    return Price(
        input=base["input_mtok"] or Decimal(0),
        output=base["output_mtok"] or Decimal(0),
        cached_input=base["cache_read_mtok"],
        source="genai-prices",
        tiered=(provider_id, model) if tiered else None,
    )


def _base(value: Any) -> Decimal | None:
    """A flat price as is; a tiered price's base tier."""
    if value is None or isinstance(value, Decimal):
        return value
    base = getattr(value, "base", None)
    return base if isinstance(base, Decimal) else None


def _tiered_cost_nano(ref: tuple[str, str], usage: Usage, cached: int) -> int:
    from genai_prices import Usage as GenaiUsage
    from genai_prices import calc_price

    provider_id, model = ref
    genai_usage = GenaiUsage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=cached,
        output_tokens=usage.output_tokens,
    )
    return round_to_nano(calc_price(genai_usage, model, provider_id=provider_id).total_price)
