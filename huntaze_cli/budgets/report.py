"""What `huntaze budgets list` and ``GET /api/v2/costs/budgets`` show: one core for both.

Each budget in force with its current period's figures from the reservation store:
``spent`` (settled calls), ``reserved`` (calls in flight, and calls of processes that
died within ``reservation_ttl_s``), ``remaining`` and a state: ``ok``, ``soft`` (past
``soft_pct``) or ``hard`` (nothing left, or less than the last refused call needed:
generation in its scope is paused).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from huntaze_cli.budgets.rules import Limit, budgets_in_force, current_period
from huntaze_cli.config import Config
from huntaze_cli.money import nano_to_usd, pct
from huntaze_cli.storage.budgets import ReservationStore


class BudgetStatus(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    scope: dict[str, str]
    period: str
    period_label: str
    period_start: datetime
    period_end: datetime
    limit_usd: float
    limit_nano: int
    spent_usd: float
    spent_nano: int
    reserved_usd: float
    reserved_nano: int
    remaining_usd: float
    remaining_nano: int
    used_pct: float
    soft_pct: int
    on_soft: str
    state: str


class BudgetList(BaseModel):
    model_config = ConfigDict(defer_build=True)

    generated_at: datetime
    reservation_ttl_s: float
    budgets: list[BudgetStatus]


def budget_list(
    config: Config,
    store: ReservationStore,
    now: datetime,
    *,
    covering: tuple[str | None, str | None, str | None] | None = None,
    tenant: str | None = None,
) -> BudgetList:
    """Every budget in force and its figures for the period holding ``now``; with
    ``covering`` (tenant, account, campaign id) only the budgets covering such calls;
    with ``tenant`` only the budgets scoped to that tenant (a tenant token's view: a
    budget over several tenants would show the others' spend)."""
    rows = []
    for budget in budgets_in_force(config):
        limit = Limit.of(budget)
        if covering is not None and not limit.covers(*covering):
            continue
        if tenant is not None and budget.scope.tenant != tenant:
            continue
        period = current_period(budget.period, now, config.thresholds.tz)
        usage = store.usage(budget.name, period.label)
        remaining = max(limit.limit_nano - usage.used_nano, 0)
        rows.append(
            BudgetStatus(
                name=budget.name,
                scope=budget.scope.as_dict(),
                period=budget.period,
                period_label=period.label,
                period_start=period.start,
                period_end=period.end,
                limit_usd=nano_to_usd(limit.limit_nano),
                limit_nano=limit.limit_nano,
                spent_usd=nano_to_usd(usage.spent_nano),
                spent_nano=usage.spent_nano,
                reserved_usd=nano_to_usd(usage.reserved_nano),
                reserved_nano=usage.reserved_nano,
                remaining_usd=nano_to_usd(remaining),
                remaining_nano=remaining,
                used_pct=pct(usage.used_nano, limit.limit_nano),
                soft_pct=budget.soft_pct,
                on_soft=budget.on_soft,
                state=limit.state(usage.used_nano, usage.refused_nano),
            )
        )
    return BudgetList(
        generated_at=now, reservation_ttl_s=config.budgets.reservation_ttl_s, budgets=rows
    )


def pausing_budget(budgets: BudgetList) -> str | None:
    """The budget that pauses calls in its scope: a hard one, else the fullest."""
    if not budgets.budgets:
        return None
    return max(budgets.budgets, key=lambda b: (b.state == "hard", b.used_pct)).name
