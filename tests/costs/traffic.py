"""Ledgers and campaign stores built to show (or not to show) one pattern each."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from huntaze_cli.config import Config
from huntaze_cli.llm.pricing import PriceBook
from huntaze_cli.llm.types import Usage
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore as CampaignStore
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

_ids = itertools.count()


def priced(config: Config, provider: str, model: str, usage: Usage) -> int:
    price = PriceBook(config.pricing.overrides).price(provider, provider, model)
    assert price is not None
    return PriceBook(config.pricing.overrides).cost_nano(price, usage)


def events(
    config: Config,
    count: int,
    *,
    provider: str = "azure",
    model: str = "gpt-4o",
    campaign_id: str | None = "cmp-a",
    input_tokens: int = 200,
    cached: int = 0,
    outputs: Iterable[int] = (40,),
    status: str = "ok",
    latency_ms: float = 300.0,
    ts: datetime | None = None,
    route_reason: str = "priority",
    **extra: Any,
) -> list[CostEvent]:
    """``count`` events priced exactly as the orchestrator prices them."""
    out = []
    lengths = itertools.cycle(outputs)
    when = ts or datetime.now(UTC) - timedelta(hours=1)
    for _ in range(count):
        tokens_out = 0 if status == "error" else next(lengths)
        usage = Usage(input_tokens, cached, tokens_out)
        n = next(_ids)
        out.append(
            CostEvent(
                attempt_id=f"t-{n}",
                request_id=f"r-{n}",
                ts=when,
                provider=provider,
                model=model,
                input_tokens=input_tokens,
                cached_input_tokens=cached,
                output_tokens=tokens_out,
                cost_nano=priced(config, provider, model, usage),
                latency_ms=latency_ms,
                status=status,  # type: ignore[arg-type]
                error_kind="server_error" if status == "error" else None,
                route_reason=route_reason,
                campaign_id=campaign_id,
                account="creator_1",
                tenant="agency_a",
                **extra,
            )
        )
    return out


def ledger_with(path: Path, *batches: list[CostEvent]) -> SQLiteLedger:
    ledger = SQLiteLedger(path)
    for batch in batches:
        ledger.record(batch)
    return ledger


def add_campaign(
    store: CampaignStore,
    campaign_id: str,
    *,
    model: str = "gpt-4o",
    max_tokens: int | None = 300,
    system: str | None = "You write short, warm messages.",
    prompt: str = "Thank {name}.",
    account: str = "creator_1",
) -> None:
    store.create(
        campaign_id=campaign_id,
        idempotency_key=None,
        spec={
            "name": campaign_id,
            "account": account,
            "tenant": "agency_a",
            "model": model,
            "provider": "auto",
            "system": system,
            "prompt": prompt,
            "max_tokens": max_tokens,
        },
        recipients=[("fan_1", {"name": "A"})],
        estimated_cost_nano=0,
    )
