"""One campaign in depth, for the dashboard's drill-down and ``GET /api/v2/campaigns/detail``.

Beside the campaign as `status ID` shows it: per provider the attempts, failures,
fallbacks, cost and latency (from the ledger's usage rollups, never raw events), and the
dead letters with their last error (from the campaign store), and per provider and
route reason (``priority``, ``cost``, ``fallback:<kind>``, ``retry:<kind>``, ...) the
attempts and their cost: usage rollups are keyed by route reason too. A reason of None
is traffic recorded before the rollups kept reasons (and past the raw events' retention).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from huntaze_cli.campaigns.generation import campaign_report
from huntaze_cli.config import Config
from huntaze_cli.costs.reports import percentile
from huntaze_cli.models import CampaignReport, _Report
from huntaze_cli.money import nano_to_usd
from huntaze_cli.storage.campaigns import CampaignStore
from huntaze_cli.storage.ledger import Ledger, UsageRollup, group_usage


class ProviderRoute(BaseModel):
    """What one provider did for the campaign: ``primary`` + ``fallbacks`` = ``ok``."""

    provider: str
    attempts: int
    ok: int
    errors: int
    primary: int
    fallbacks: int
    cost_usd: float
    cost_nano: int
    error_cost_usd: float
    error_cost_nano: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class RouteReasonView(BaseModel):
    """The attempts one provider made for the campaign under one route reason."""

    provider: str
    route_reason: str | None
    attempts: int
    ok: int
    errors: int
    cost_usd: float
    cost_nano: int


class DeadLetterView(BaseModel):
    recipient_id: str
    stage: str  # delivery | generation
    error: str | None
    updated_at: datetime


class CampaignDetail(_Report):
    campaign: CampaignReport
    providers: list[ProviderRoute]
    route_reasons: list[RouteReasonView]
    dead_letters: list[DeadLetterView]
    dead_letters_limit: int


def _route(row: UsageRollup) -> ProviderRoute:
    return ProviderRoute(
        provider=row.provider,
        attempts=row.attempts,
        ok=row.ok,
        errors=row.errors,
        primary=row.ok - row.fallbacks,
        fallbacks=row.fallbacks,
        cost_usd=nano_to_usd(row.cost_nano),
        cost_nano=row.cost_nano,
        error_cost_usd=nano_to_usd(row.error_cost_nano),
        error_cost_nano=row.error_cost_nano,
        latency_p50_ms=percentile(row.latency, 0.50),
        latency_p95_ms=percentile(row.latency, 0.95),
    )


def campaign_detail(
    config: Config, store: CampaignStore, ledger: Ledger, campaign_id: str, *, limit: int = 50
) -> CampaignDetail:
    report = campaign_report(config, store, ledger, campaign_id)
    first = report.created_at.astimezone(UTC).date()
    until = datetime.now(UTC).date() + timedelta(days=1)
    reasons = [
        row
        for row in ledger.usage_groups(first, until, ["campaign", "provider", "route_reason"])
        if row.campaign_id == campaign_id
    ]
    rows = group_usage(reasons, ["campaign", "provider"])
    rows.sort(key=lambda row: (-row.cost_nano, row.provider))
    reasons.sort(key=lambda row: (-row.attempts, row.provider, row.route_reason or ""))
    return CampaignDetail(
        campaign=report,
        providers=[_route(row) for row in rows],
        route_reasons=[
            RouteReasonView(
                provider=row.provider,
                route_reason=row.route_reason,
                attempts=row.attempts,
                ok=row.ok,
                errors=row.errors,
                cost_usd=nano_to_usd(row.cost_nano),
                cost_nano=row.cost_nano,
            )
            for row in reasons
        ],
        dead_letters=[
            DeadLetterView(
                recipient_id=d.recipient_id, stage=d.stage, error=d.error, updated_at=d.updated_at
            )
            for d in store.dead_letters(campaign_id, limit=limit)
        ],
        dead_letters_limit=limit,
    )
