"""Return on investment: what each campaign (and experiment arm) cost and brought in.

Cost comes from the usage rollups (every attempt, all retained days); revenue and
conversions from imported outcomes (`campaigns outcomes import`). An arm's revenue is
found by placing each outcome's fan in its arm again (the assignment is a stable hash
of the experiment and the recipient), so it needs the experiment still configured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from huntaze_cli.config import Config
from huntaze_cli.errors import NotFoundError
from huntaze_cli.llm.experiments import arm_of
from huntaze_cli.money import nano_to_usd
from huntaze_cli.storage.ledger import Ledger, UsageRollup
from huntaze_cli.storage.sqlite.outcomes import Outcome, OutcomeStore

WINDOW_DAYS = 400  # as far back as usage rollups go by default


class RoiFigures(BaseModel):
    messages: int
    cost_usd: float
    cost_nano: int
    revenue_usd: float | None
    revenue_nano: int | None
    conversions: int | None
    cost_per_conversion_usd: float | None
    roi_pct: float | None


class RoiArm(RoiFigures):
    experiment: str
    arm: str


class RoiCampaign(RoiFigures):
    campaign_id: str
    name: str | None
    outcomes: int
    arms: list[RoiArm]


class RoiReport(BaseModel):
    """`huntaze costs roi --json` and `GET /api/v2/costs/roi`."""

    model_config = ConfigDict(defer_build=True)

    generated_at: datetime
    campaigns: list[RoiCampaign]
    total: RoiFigures


def _figures(
    messages: int, cost: int, revenue: int | None, conversions: int | None
) -> dict[str, Any]:
    return {
        "messages": messages,
        "cost_usd": nano_to_usd(cost),
        "cost_nano": cost,
        "revenue_usd": None if revenue is None else nano_to_usd(revenue),
        "revenue_nano": revenue,
        "conversions": conversions,
        "cost_per_conversion_usd": (nano_to_usd(cost // conversions) if conversions else None),
        "roi_pct": (
            round((revenue - cost) * 100 / cost, 2) if revenue is not None and cost else None
        ),
    }


def _arm_revenue(
    config: Config, experiment: str, outcomes: Iterable[Outcome]
) -> dict[str, tuple[int, int]] | None:
    exp = config.experiments.get(experiment)
    if exp is None:
        return None
    out: dict[str, tuple[int, int]] = {}
    for o in outcomes:
        arm = arm_of(experiment, exp, o.recipient_id)
        revenue, conversions = out.get(arm, (0, 0))
        out[arm] = (revenue + o.revenue_nano, conversions + o.converted)
    return out


def roi_report(
    config: Config,
    ledger: Ledger,
    outcomes: OutcomeStore,
    *,
    campaign: str | None = None,
    only: Callable[[str], bool] | None = None,
    now: datetime | None = None,
) -> RoiReport:
    """Per campaign (and arm) cost, revenue, conversions, cost per conversion and ROI.

    ``only`` keeps the campaigns it accepts (a tenant's own); another is "not found".
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    until = now.date() + timedelta(days=1)
    usage = ledger.usage_groups(
        until - timedelta(days=WINDOW_DAYS), until, ["campaign", "experiment", "arm"]
    )
    totals = outcomes.totals(None if campaign is None else [campaign])
    wanted = [campaign] if campaign is not None else sorted(totals)
    if only is not None:
        wanted = [c for c in wanted if only(c)]
        if campaign is not None and not wanted:
            raise NotFoundError(f"campaign {campaign!r} not found")
    by_campaign: dict[str, list[UsageRollup]] = {}
    for row in usage:
        if row.campaign_id in wanted:
            by_campaign.setdefault(row.campaign_id, []).append(row)
    if campaign is not None and campaign not in by_campaign and campaign not in totals:
        raise NotFoundError(
            f"campaign {campaign!r}: no cost events and no outcomes",
            hint="`huntaze status` lists campaigns; import outcomes with "
            "`huntaze campaigns outcomes import FILE`",
        )
    rows: list[RoiCampaign] = []
    grand = [0, 0, 0, 0]  # messages, cost, revenue, conversions
    for campaign_id in wanted:
        parts = by_campaign.get(campaign_id, [])
        messages = sum(p.ok for p in parts)
        cost = sum(p.cost_nano for p in parts)
        got = totals.get(campaign_id)
        revenue = got.revenue_nano if got else 0
        conversions = got.conversions if got else 0
        arms = []
        experiments = sorted({p.experiment for p in parts if p.experiment})
        for experiment in experiments:
            per_arm = _arm_revenue(
                config, experiment, outcomes.of_campaigns([campaign_id]) if got else []
            )
            for p in sorted(parts, key=lambda p: p.arm or ""):
                if p.experiment != experiment or p.arm is None:
                    continue
                r = None if per_arm is None else per_arm.get(p.arm, (0, 0))
                arms.append(
                    RoiArm(
                        experiment=experiment,
                        arm=p.arm,
                        **_figures(
                            p.ok,
                            p.cost_nano,
                            None if r is None else r[0],
                            None if r is None else r[1],
                        ),
                    )
                )
        rows.append(
            RoiCampaign(
                campaign_id=campaign_id,
                name=None,
                outcomes=got.outcomes if got else 0,
                arms=arms,
                **_figures(messages, cost, revenue, conversions),
            )
        )
        for index, value in enumerate((messages, cost, revenue, conversions)):
            grand[index] += value
    return RoiReport(
        generated_at=now,
        campaigns=rows,
        total=RoiFigures(**_figures(*grand)),
    )
