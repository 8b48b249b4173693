"""The budget use cases: the gate every orchestrator gets, and the list both interfaces show."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huntaze_cli.budgets.gate import BudgetGate
    from huntaze_cli.budgets.report import BudgetList
    from huntaze_cli.config import Config
    from huntaze_cli.services import Services


def budget_gate(
    services: Services, config: Config, *, warn: Callable[[str], None] | None = None
) -> BudgetGate | None:
    """The gate over the container's reservation store; None when no budget is in force
    (then nothing is reserved and no store is opened)."""
    from huntaze_cli.budgets import budgets_in_force

    budgets = budgets_in_force(config)
    if not budgets:
        return None
    from huntaze_cli.budgets.gate import BudgetGate

    return BudgetGate(
        budgets,
        services.reservations(),
        tz=config.thresholds.tz,
        ttl_s=config.budgets.reservation_ttl_s,
        warn=warn,
    )


def list_budgets(services: Services, *, tenant: str | None = None) -> BudgetList:
    """`huntaze budgets list`, ``GET /api/v2/costs/budgets`` and the dashboard's budgets;
    with ``tenant``, only the budgets scoped to that tenant."""
    from datetime import UTC, datetime

    from huntaze_cli.budgets.report import budget_list

    return budget_list(services.config(), services.reservations(), datetime.now(UTC), tenant=tenant)


def paused_by(services: Services, tenant: str, account: str, campaign_id: str) -> str | None:
    """The budget keeping a ``paused_budget`` campaign paused (`status` shows it)."""
    from datetime import UTC, datetime

    from huntaze_cli.budgets.report import budget_list, pausing_budget

    found = budget_list(
        services.config(),
        services.reservations(),
        datetime.now(UTC),
        covering=(tenant, account, campaign_id),
    )
    return pausing_budget(found)
