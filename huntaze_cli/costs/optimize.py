"""Recommendations with a dollar figure: what to change, what it saves, and why we think so.

``optimize`` reads the window's usage rollups (never raw events), the quarter-hour
rollups for outage patterns, and the campaigns' settings, then runs one detector per
kind. Each recommendation carries:

* ``saving_usd_month`` (and exact ``saving_nano_month``): the window's saving projected
  to 30 days from the days the window actually holds traffic;
* ``confidence``: ``high`` / ``medium`` / ``low`` from the number of observations behind
  it (and, for provider moves, how well the other provider behaved);
* ``evidence``: the figures used, so an operator can check the arithmetic;
* ``action``: the config change (TOML) or campaign change that applies it, and for a
  model change an experiment to try it on part of the traffic first.

Hypothetical costs are re-priced from the recorded token counts with today's price book
(``[pricing.overrides]``, then genai-prices) on both sides of every comparison, so a
price change since the events were recorded does not pass for a saving.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from huntaze_cli.config import Config
from huntaze_cli.costs.recommendations import (
    Action,
    Confidence,
    Kind,
    OptimizeReport,
    Recommendation,
)
from huntaze_cli.costs.reports import percentile
from huntaze_cli.llm.pricing import Price, PriceBook
from huntaze_cli.llm.types import Usage
from huntaze_cli.money import nano_to_usd
from huntaze_cli.storage.campaigns import CampaignRow
from huntaze_cli.storage.ledger import (
    OUTPUT_BOUNDS,
    SLOT_SECONDS,
    Ledger,
    UsageRollup,
)

# A model that is a waste on short outputs, and the one to try instead (same family).
DOWNGRADES = {
    "gpt-4o": "gpt-4o-mini",
    "gpt-4.1": "gpt-4.1-mini",
    "gpt-4-turbo": "gpt-4o-mini",
    "gpt-4": "gpt-4o-mini",
    "gpt-4.1-mini": "gpt-4.1-nano",
}
SHORT_OUTPUT_TOKENS = 150  # a p95 output at or below this is a short-answer job
MIN_MESSAGES = 20  # fewer successful messages than this say nothing
CACHE_MIN_PREFIX_TOKENS = 1024  # OpenAI and Azure cache only prefixes this long
MIN_SAVING_NANO_MONTH = 10_000_000  # $0.01 a month: below this, not worth a line
MONTH_DAYS = 30


# --- traffic ---------------------------------------------------------------------------


def _merge(
    rows: Iterable[UsageRollup], key: Callable[[UsageRollup], Any]
) -> dict[Any, UsageRollup]:
    out: dict[Any, UsageRollup] = {}
    for row in rows:
        k = key(row)
        total = out.get(k)
        if total is None:
            total = out[k] = UsageRollup(row.day, row.provider, row.model, row.campaign_id,
                                         row.experiment, row.arm)  # fmt: skip
        total.add(row)
    return out


@dataclass
class _Context:
    config: Config
    prices: PriceBook
    kinds: dict[str, str]  # provider name -> kind (for genai-prices)
    order: list[str]  # the providers traffic may move to, in [routing] order
    rows: list[UsageRollup]
    scale: float  # window -> month
    campaign: Callable[[str], CampaignRow | None]
    slots: Callable[[], list[Any]]

    def price(self, provider: str, model: str) -> Price | None:
        return self.prices.price(provider, self.kinds.get(provider, "openai"), model)

    def cost(self, provider: str, model: str, usage: UsageRollup) -> int | None:
        """The cost of ``usage``'s tokens for ``model`` on ``provider`` at today's price."""
        price = self.price(provider, model)
        if price is None:
            return None
        tokens = Usage(usage.input_tokens, usage.cached_input_tokens, usage.output_tokens)
        return self.prices.cost_nano(price, tokens)

    def month(self, nano: int) -> int:
        return round(nano * self.scale)


def _confidence(observations: int) -> Confidence:
    return "high" if observations >= 1000 else "medium" if observations >= 100 else "low"


def _usd(nano: int) -> float:
    return nano_to_usd(nano)


def _pct(part: float, whole: float) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _recommendation(
    ctx: _Context, *, rid: str, kind: Kind, title: str, saving_window_nano: int,
    confidence: Confidence, evidence: dict[str, Any], action: Action,
) -> Recommendation:  # fmt: skip
    saving = max(ctx.month(saving_window_nano), 0)
    return Recommendation(
        id=rid,
        kind=kind,
        title=title,
        saving_usd_month=_usd(saving),
        saving_nano_month=saving,
        confidence=confidence,
        evidence=evidence,
        action=action,
    )


def _provider_health(row: UsageRollup) -> dict[str, Any]:
    return {
        "attempts": row.attempts,
        "error_pct": _pct(row.errors, row.attempts),
        "latency_p50_ms": percentile(row.latency, 0.50),
        "latency_p95_ms": percentile(row.latency, 0.95),
    }


def _worth(saving_month_nano: int, spend_window_nano: int, ctx: _Context) -> bool:
    return saving_month_nano >= MIN_SAVING_NANO_MONTH and saving_month_nano >= 0.01 * ctx.month(
        spend_window_nano
    )


# --- kinds -----------------------------------------------------------------------------


def _provider_price(ctx: _Context) -> list[Recommendation]:
    """The same model is cheaper on another configured provider."""
    by_provider = _merge(ctx.rows, lambda r: r.provider)
    out = []
    for (provider, model), usage in sorted(
        _merge(ctx.rows, lambda r: (r.provider, r.model)).items()
    ):
        here = ctx.cost(provider, model, usage)
        if here is None or usage.ok < MIN_MESSAGES:
            continue
        options = [
            (cost, other)
            for other in ctx.order
            if other != provider and (cost := ctx.cost(other, model, usage)) is not None
        ]
        if not options:
            continue
        there, other = min(options)
        saving = here - there
        if not _worth(ctx.month(saving), here, ctx):
            continue
        seen = by_provider.get(other)
        health = _provider_health(seen) if seen else {"attempts": 0}
        auto = ctx.config.routing.auto
        meets = bool(
            seen
            and seen.attempts >= MIN_MESSAGES
            and health["error_pct"] <= auto.max_error_pct
            and (health["latency_p95_ms"] or 0) <= auto.max_p95_ms
        )
        confidence = _confidence(usage.ok) if meets else "low"
        order = [other, *(p for p in ctx.order if p != other)]
        out.append(
            _recommendation(
                ctx,
                rid=f"provider_price:{provider}:{model}",
                kind="provider_price",
                title=f"{model} costs {_pct(saving, here)}% less on {other} than on {provider}",
                saving_window_nano=saving,
                confidence=confidence,
                evidence={
                    "model": model,
                    "provider": provider,
                    "cheaper_provider": other,
                    "requests": usage.attempts,
                    "input_tokens": usage.input_tokens,
                    "cached_input_tokens": usage.cached_input_tokens,
                    "output_tokens": usage.output_tokens,
                    "cost_usd": _usd(here),
                    "cost_nano": here,
                    "cost_on_cheaper_usd": _usd(there),
                    "cost_on_cheaper_nano": there,
                    "cheaper_provider_observed": health,
                    "cheaper_provider_meets_slo": meets,
                },
                action=Action(
                    type="config",
                    summary=f"route {model} to {other} first (strategy auto keeps the "
                    "service levels; cost ignores them)",
                    toml='[routing]\nstrategy = "auto"\norder = ['
                    + ", ".join(f'"{p}"' for p in order)
                    + "]",
                ),
            )
        )
    return out


def _short_outputs(usage: UsageRollup, campaign: CampaignRow | None) -> bool:
    p95 = percentile(usage.output, 0.95, OUTPUT_BOUNDS)
    if p95 is None or p95 > SHORT_OUTPUT_TOKENS:
        return False
    return not (campaign and campaign.max_tokens and p95 > campaign.max_tokens / 2)


def _experiment_name(campaign_id: str, suffix: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{campaign_id}-{suffix}")[:64]


def _model_downgrade(ctx: _Context) -> list[Recommendation]:
    """Campaigns on an expensive model whose outputs are short."""
    out = []
    per_provider = _merge(ctx.rows, lambda r: (r.campaign_id, r.model, r.provider))
    for (campaign_id, model), usage in sorted(
        _merge(ctx.rows, lambda r: (r.campaign_id, r.model)).items(), key=lambda kv: str(kv[0])
    ):
        cheaper = DOWNGRADES.get(model)
        if campaign_id is None or cheaper is None or usage.ok < MIN_MESSAGES:
            continue
        campaign = ctx.campaign(campaign_id)
        if not _short_outputs(usage, campaign):
            continue
        here = there = 0
        for (cid, m, provider), row in per_provider.items():
            if cid == campaign_id and m == model:
                a, b = ctx.cost(provider, model, row), ctx.cost(provider, cheaper, row)
                if a is None or b is None:
                    break
                here, there = here + a, there + b
        else:
            saving = here - there
            if not _worth(ctx.month(saving), here, ctx):
                continue
            name = _experiment_name(f"{model}-vs", cheaper)
            scope = f'{{ account = "{campaign.account}" }}' if campaign else "{}"
            out.append(
                _recommendation(
                    ctx,
                    rid=f"model_downgrade:{campaign_id}:{model}",
                    kind="model_downgrade",
                    title=f"campaign {campaign_id} writes short messages on {model}; "
                    f"{cheaper} would cost {_pct(saving, here)}% less",
                    saving_window_nano=saving,
                    confidence=_confidence(usage.ok),
                    evidence={
                        "campaign_id": campaign_id,
                        "model": model,
                        "cheaper_model": cheaper,
                        "messages": usage.ok,
                        "output_tokens_mean": round(usage.output_tokens / usage.ok, 1),
                        "output_tokens_p95": percentile(usage.output, 0.95, OUTPUT_BOUNDS),
                        "max_tokens": campaign.max_tokens if campaign else None,
                        "cost_usd": _usd(here),
                        "cost_nano": here,
                        "cost_on_cheaper_usd": _usd(there),
                        "cost_on_cheaper_nano": there,
                    },
                    action=Action(
                        type="campaign",
                        summary=f"set model = {cheaper!r} in the campaign file; try it on "
                        "half the fans first with the experiment below",
                        campaign_id=campaign_id,
                        set={"model": cheaper},
                        experiment_toml=(
                            f"[experiments.{name}]\nscope = {scope}\n"
                            "split = { control = 50, cheaper = 50 }\n"
                            f'arms = {{ control = {{}}, cheaper = {{ model = "{cheaper}" }} }}'
                        ),
                    ),
                )
            )
    return out


def _bucket_ceiling(histogram: list[int], q: float) -> int | None:
    """The upper bound of the bucket holding the q-quantile (what no more than 1-q exceed)."""
    count = sum(histogram)
    if not count:
        return None
    seen = 0
    for index, n in enumerate(histogram):
        seen += n
        if seen >= q * count:
            return OUTPUT_BOUNDS[index] if index < len(OUTPUT_BOUNDS) else None
    return None


def _max_tokens(ctx: _Context) -> list[Recommendation]:
    """``max_tokens`` far above the observed p99 output: it inflates reservations."""
    out = []
    for campaign_id, usage in sorted(
        _merge(ctx.rows, lambda r: r.campaign_id).items(), key=lambda kv: str(kv[0])
    ):
        if campaign_id is None or usage.ok < MIN_MESSAGES:
            continue
        campaign = ctx.campaign(campaign_id)
        ceiling = _bucket_ceiling(usage.output, 0.99)
        if campaign is None or not campaign.max_tokens or ceiling is None:
            continue
        suggested = max(16, -(-math.ceil(ceiling * 1.25) // 8) * 8)
        if campaign.max_tokens < 2 * ceiling or suggested >= campaign.max_tokens:
            continue
        price = ctx.price(usage.provider, usage.model)
        excess = campaign.max_tokens - suggested
        reserved = ctx.prices.cost_nano(price, Usage(0, 0, excess * usage.ok)) if price else 0
        out.append(
            _recommendation(
                ctx,
                rid=f"max_tokens:{campaign_id}",
                kind="max_tokens",
                title=f"campaign {campaign_id}: max_tokens {campaign.max_tokens} is far above "
                f"the longest outputs (p99 <= {ceiling} tokens)",
                # Output is billed as written: the saving is in reservations and estimates.
                saving_window_nano=0,
                confidence=_confidence(usage.ok),
                evidence={
                    "campaign_id": campaign_id,
                    "messages": usage.ok,
                    "max_tokens": campaign.max_tokens,
                    "output_tokens_p99_at_most": ceiling,
                    "suggested_max_tokens": suggested,
                    "over_reserved_usd_month": _usd(ctx.month(reserved)),
                    "over_reserved_nano_month": ctx.month(reserved),
                },
                action=Action(
                    type="campaign",
                    summary=f"set max_tokens = {suggested}: budgets reserve and estimates "
                    "assume max_tokens per message, so they shrink by the same share",
                    campaign_id=campaign_id,
                    set={"max_tokens": suggested},
                ),
            )
        )
    return out


def _retry_waste(ctx: _Context) -> list[Recommendation]:
    """Money spent on failed attempts, and the breaker setting that cuts it in outages."""
    routing = ctx.config.routing
    slots = None
    out = []
    for provider, usage in sorted(_merge(ctx.rows, lambda r: r.provider).items()):
        if not usage.errors or not _worth(ctx.month(usage.error_cost_nano), usage.cost_nano, ctx):
            continue
        if slots is None:
            slots = ctx.slots()
        per_error = usage.error_cost_nano / usage.errors
        # In an outage slot (most attempts failing) a breaker opening after `threshold`
        # failures lets through one probe per cooldown; the rest is avoidable.
        threshold = max(2, routing.circuit_failure_threshold // 2)
        probes = math.ceil(SLOT_SECONDS / routing.circuit_cooldown_s)
        outage_errors = avoidable = 0
        for slot in slots:
            c = slot.counters
            if slot.provider == provider and c.requests and c.errors * 2 >= c.requests:
                outage_errors += c.errors
                avoidable += max(c.errors - threshold - probes, 0)
        saving = min(round(avoidable * per_error), usage.error_cost_nano)
        if outage_errors and threshold < routing.circuit_failure_threshold:
            action = Action(
                type="config",
                summary=f"open {provider}'s circuit sooner: most of its failed spend came "
                "in outages",
                toml=f"[routing]\ncircuit_failure_threshold = {threshold}",
            )
        else:
            saving = 0
            others = [p for p in ctx.order if p != provider]
            action = Action(
                type="config",
                summary=f"failures on {provider} are scattered, not outages; prefer "
                "another provider for this traffic (strategy auto weighs error rates)",
                toml='[routing]\nstrategy = "auto"\norder = ['
                + ", ".join(f'"{p}"' for p in [*others, provider])
                + "]",
            )
        out.append(
            _recommendation(
                ctx,
                rid=f"retry_waste:{provider}",
                kind="retry_waste",
                title=f"{_usd(ctx.month(usage.error_cost_nano))} USD a month goes to failed "
                f"attempts on {provider}",
                saving_window_nano=saving,
                confidence=_confidence(usage.errors),
                evidence={
                    "provider": provider,
                    "attempts": usage.attempts,
                    "failed_attempts": usage.errors,
                    "failed_cost_usd": _usd(usage.error_cost_nano),
                    "failed_cost_nano": usage.error_cost_nano,
                    "fallback_successes": usage.fallbacks,
                    "errors_in_outages": outage_errors,
                    "circuit_failure_threshold": routing.circuit_failure_threshold,
                },
                action=action,
            )
        )
    return out


def _static_tokens(text: str) -> int:
    return -(-len(text.split()) * 13 // 10)


def _prompt_caching(ctx: _Context) -> list[Recommendation]:
    """A long repeated prefix that is rarely served from the provider's cache."""
    out = []
    for (campaign_id, provider, model), usage in sorted(
        _merge(ctx.rows, lambda r: (r.campaign_id, r.provider, r.model)).items(),
        key=lambda kv: str(kv[0]),
    ):
        if campaign_id is None or usage.attempts < MIN_MESSAGES:
            continue
        campaign = ctx.campaign(campaign_id)
        price = ctx.price(provider, model)
        if campaign is None or price is None or price.cached_input is None:
            continue
        head, _, _ = campaign.prompt.partition("{")
        system = _static_tokens(campaign.system or "")
        prefix = system + _static_tokens(head)
        static = system + _static_tokens(re.sub(r"\{[^}]*\}", " ", campaign.prompt))
        if static < CACHE_MIN_PREFIX_TOKENS:
            continue
        cacheable = static * usage.attempts
        if usage.cached_input_tokens * 2 >= cacheable:
            continue
        missed = min(cacheable - usage.cached_input_tokens, usage.input_tokens)
        per_token = (price.input - price.cached_input) / 1_000_000
        saving = round(missed * per_token * 1_000_000_000)
        if not _worth(ctx.month(saving), usage.cost_nano, ctx):
            continue
        share = _pct(usage.cached_input_tokens, usage.input_tokens)
        if prefix >= CACHE_MIN_PREFIX_TOKENS:
            summary = ("the fixed text already comes first; keep the system prompt and the "
                       "prompt's opening byte-identical across messages and runs")  # fmt: skip
        else:
            summary = ("move the fixed text before the first {placeholder} (or into system), "
                       f"so each message starts with the same {CACHE_MIN_PREFIX_TOKENS}+ "
                       "tokens the provider can cache")  # fmt: skip
        out.append(
            _recommendation(
                ctx,
                rid=f"prompt_caching:{campaign_id}:{provider}:{model}",
                kind="prompt_caching",
                title=f"campaign {campaign_id}: {share}% of input is cached though ~{static} "
                "tokens repeat in every message",
                saving_window_nano=saving,
                confidence=_confidence(usage.attempts),
                evidence={
                    "campaign_id": campaign_id,
                    "provider": provider,
                    "model": model,
                    "requests": usage.attempts,
                    "input_tokens": usage.input_tokens,
                    "cached_input_tokens": usage.cached_input_tokens,
                    "static_tokens_per_message": static,
                    "static_prefix_tokens": prefix,
                    "input_price_per_mtok": str(price.input),
                    "cached_input_price_per_mtok": str(price.cached_input),
                },
                action=Action(type="campaign", summary=summary, campaign_id=campaign_id),
            )
        )
    return out


def _strategy(ctx: _Context) -> list[Recommendation]:
    """What each routing strategy would have cost on the window's traffic."""
    from huntaze_cli.costs.replay import replay_strategies

    current = ctx.config.routing.strategy
    replayed = replay_strategies(
        ctx.rows, order=ctx.order, cost=ctx.cost, price=ctx.price, slo=ctx.config.routing.auto
    )
    if not replayed or (current not in replayed and current != "weighted"):
        return []
    actual = sum(row.cost_nano for row in ctx.rows)
    baseline = replayed.get(current, actual)
    best = min((n for n in replayed if n != current), key=lambda n: replayed[n], default=None)
    if best is None:
        return []
    saving = baseline - replayed[best]
    if not _worth(ctx.month(saving), baseline, ctx):
        return []
    return [
        _recommendation(
            ctx,
            rid=f"strategy:{best}",
            kind="strategy",
            title=f"strategy {best} would have cost {_pct(saving, baseline)}% less than "
            f"{current} on this traffic",
            saving_window_nano=saving,
            confidence=_confidence(sum(row.ok for row in ctx.rows)),
            evidence={
                "current_strategy": current,
                "requests": sum(row.attempts for row in ctx.rows),
                "replayed_cost_usd": {name: _usd(nano) for name, nano in replayed.items()},
                "replayed_cost_nano": replayed,
            },
            action=Action(
                type="config",
                summary=f"switch [routing] strategy to {best}",
                toml=f'[routing]\nstrategy = "{best}"',
            ),
        )
    ]


DETECTORS: dict[Kind, Callable[[_Context], list[Recommendation]]] = {
    "provider_price": _provider_price,
    "model_downgrade": _model_downgrade,
    "max_tokens": _max_tokens,
    "retry_waste": _retry_waste,
    "prompt_caching": _prompt_caching,
    "strategy": _strategy,
}


def optimize(
    config: Config,
    ledger: Ledger,
    *,
    days: int = 30,
    campaign: Callable[[str], CampaignRow | None] = lambda _: None,
    now: datetime | None = None,
    provider_kinds: dict[str, str] | None = None,
) -> OptimizeReport:
    """Every recommendation the last ``days`` UTC days of traffic support, best first."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    last = now.date()
    first = last - timedelta(days=days - 1)
    until = last + timedelta(days=1)
    # The window summed per provider, model and campaign: a few thousand rows at most,
    # whatever the number of events.
    rows = ledger.usage_groups(first, until, ["provider", "model", "campaign"])
    seen_days = sorted(row.day for row in ledger.usage_groups(first, until, ["day"]))
    covered = (seen_days[-1] - seen_days[0]).days + 1 if seen_days else 1
    # Alternatives are the configured providers (else those seen); kinds price them.
    kinds = dict(provider_kinds or {})
    for row in rows:
        kinds.setdefault(row.provider, "azure" if row.provider == "azure" else "openai")
    candidates = list(provider_kinds or kinds)
    order = [p for p in config.routing.order if p in candidates]
    order += [p for p in candidates if p not in order]
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = start + timedelta(days=days)
    ctx = _Context(
        config=config,
        prices=PriceBook(config.pricing.overrides),
        kinds=kinds,
        order=order,
        rows=rows,
        scale=MONTH_DAYS / covered,
        campaign=campaign,
        slots=lambda: ledger.slots(start, end),
    )
    found = [rec for detect in DETECTORS.values() for rec in detect(ctx)]
    found.sort(key=lambda r: (-r.saving_nano_month, r.kind, r.id))
    spend = sum(row.cost_nano for row in rows)
    return OptimizeReport(
        generated_at=now,
        window_days=days,
        since=start,
        until=end,
        days_with_traffic=len(seen_days),
        spend_usd=_usd(spend),
        spend_nano=spend,
        recommendations=found,
    )
