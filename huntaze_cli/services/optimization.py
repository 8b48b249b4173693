"""Use cases of optimization: recommendations, experiments and ROI.

The CLI commands and the HTTP routes both call these, so they answer the same JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from huntaze_cli.errors import UsageError

if TYPE_CHECKING:
    from huntaze_cli.costs.experiments import ExperimentList, ExperimentReport
    from huntaze_cli.costs.recommendations import OptimizeReport
    from huntaze_cli.costs.roi import RoiReport
    from huntaze_cli.services import Services
    from huntaze_cli.storage.campaigns import CampaignRow

MAX_DAYS = 400  # usage rollups are kept rollup_retention_days (400 by default)


def _provider_kinds(services: Services) -> dict[str, str]:
    from huntaze_cli.llm.providers import effective_provider_configs

    return {name: cfg.kind for name, cfg in effective_provider_configs(services.config()).items()}


def _campaign_lookup(
    services: Services, lock: AbstractContextManager[object] | None
) -> Callable[[str], CampaignRow | None]:
    store = services.store()
    guard = lock or nullcontext()

    def lookup(campaign_id: str) -> CampaignRow | None:
        with guard:
            return store.get(campaign_id)

    return lookup


def optimize_report(
    services: Services,
    *,
    days: int = 30,
    lock: AbstractContextManager[object] | None = None,
    tenant: str | None = None,
) -> OptimizeReport:
    """`costs optimize`: recommendations over the last ``days`` UTC days (only
    ``tenant``'s traffic when one is named, as in every report here)."""
    from huntaze_cli.costs.optimize import optimize

    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days: must be between 1 and {MAX_DAYS}")
    return optimize(
        services.config(),
        services.ledger_for(tenant),
        days=days,
        campaign=_campaign_lookup(services, lock),
        provider_kinds=_provider_kinds(services),
    )


def experiment_list(services: Services) -> ExperimentList:
    """`experiments list`: every configured experiment with its arms and split."""
    from huntaze_cli.costs.experiments import list_experiments

    return list_experiments(services.config())


def experiment_report(
    services: Services,
    name: str,
    *,
    days: int = 30,
    lock: AbstractContextManager[object] | None = None,
    tenant: str | None = None,
) -> ExperimentReport:
    """`experiments report NAME`: per arm figures and comparisons with the baseline."""
    from datetime import UTC, datetime, timedelta

    from huntaze_cli.costs.experiments import ArmRevenue
    from huntaze_cli.costs.experiments import experiment_report as report
    from huntaze_cli.llm.experiments import arm_of

    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days: must be between 1 and {MAX_DAYS}")
    config, ledger = services.config(), services.ledger_for(tenant)
    experiment = config.experiments.get(name)
    revenue: dict[str, ArmRevenue] | None = None
    if experiment is not None and config.outcomes_path.exists():
        # Revenue per arm: each outcome's fan placed in its arm again.
        until = datetime.now(UTC).date() + timedelta(days=1)
        rows = ledger.usage_groups(
            until - timedelta(days=days), until, ["campaign"], experiment=name
        )
        campaigns = [row.campaign_id for row in rows if row.campaign_id]
        with lock or nullcontext():
            outcomes = list(services.outcomes().of_campaigns(campaigns))
        if outcomes:
            revenue = {}
            for o in outcomes:
                arm = arm_of(name, experiment, o.recipient_id)
                revenue.setdefault(arm, ArmRevenue()).add(o.revenue_nano, o.converted)
    return report(config, ledger, name, days=days, revenue=revenue)


def import_outcomes(services: Services, lines: Iterable[str], *, fmt: str, source: str) -> Any:
    """`campaigns outcomes import FILE`: validate every row, then store them all at once."""
    from huntaze_cli.costs.outcomes import OutcomeImport, read_outcomes

    if fmt not in ("csv", "jsonl"):
        raise UsageError(f"--format: unknown format {fmt!r}; choose csv or jsonl")
    outcomes = read_outcomes(lines, fmt=fmt, source=source)  # type: ignore[arg-type]
    result = services.outcomes().put(outcomes)
    return OutcomeImport(
        read=len(outcomes),
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
    )


def roi(
    services: Services,
    *,
    campaign: str | None = None,
    lock: AbstractContextManager[object] | None = None,
    tenant: str | None = None,
) -> RoiReport:
    """`costs roi`: per campaign and arm cost, revenue, conversions and ROI."""
    from huntaze_cli.costs.roi import roi_report

    with lock or nullcontext():
        outcomes = services.outcomes()
        store = services.store()

        def owned(campaign_id: str) -> bool:
            found = store.get(campaign_id)
            return found is not None and found.tenant == tenant

        report = roi_report(
            services.config(),
            services.ledger_for(tenant),
            outcomes,
            campaign=campaign,
            only=None if tenant is None else owned,
        )
        for row in report.campaigns:
            found = store.get(row.campaign_id)
            row.name = found.name if found else None
    return report
