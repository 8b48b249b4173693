"""Use cases of optimization: recommendations, experiments and ROI.

The CLI commands and the HTTP routes both call these, so they answer the same JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from huntaze_cli.errors import UsageError

if TYPE_CHECKING:
    from huntaze_cli.costs.experiments import ExperimentList, ExperimentReport
    from huntaze_cli.costs.optimize import OptimizeReport
    from huntaze_cli.services import Services
    from huntaze_cli.storage.sqlite.campaigns import CampaignRow

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
    services: Services, *, days: int = 30, lock: AbstractContextManager[object] | None = None
) -> OptimizeReport:
    """`costs optimize`: recommendations over the last ``days`` UTC days."""
    from huntaze_cli.costs.optimize import optimize

    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days: must be between 1 and {MAX_DAYS}")
    return optimize(
        services.config(),
        services.ledger(),
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
) -> ExperimentReport:
    """`experiments report NAME`: per arm figures and comparisons with the baseline."""
    from huntaze_cli.costs.experiments import experiment_report as report

    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days: must be between 1 and {MAX_DAYS}")
    return report(services.config(), services.ledger(), name, days=days)
