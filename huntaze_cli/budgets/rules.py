"""Which budgets exist, which of them cover a call, and their current period.

``budgets_in_force(config)`` is the one list every part of huntaze uses: the
``[[budgets.rules]]`` of the config, then one budget per tenant with a
``quota_usd_month`` (``[tenants.<name>]``), named ``quota:<tenant>``, a monthly hard
limit on that tenant's calls (``tenant_quota_budget``). Periods are the day or month in
``[thresholds] timezone``, labelled as the ledger's reports label them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from huntaze_cli.config import Budget, BudgetScope, Config
from huntaze_cli.config.budgets import QUOTA_PREFIX
from huntaze_cli.costs.periods import Period, day_period, month_period
from huntaze_cli.money import round_to_nano


def tenant_quota_budget(tenant: str, quota_usd_month: Decimal | float | int) -> Budget:
    """The budget a tenant's ``quota_usd_month`` stands for: that tenant, per month, hard.

    Past 80 % it alerts through the alert rules, like any budget with ``on_soft = "alert"``.
    """
    return Budget(
        name=f"{QUOTA_PREFIX}{tenant}",
        scope=BudgetScope(tenant=tenant),
        period="month",
        limit_usd=Decimal(str(quota_usd_month)),
    )


def budgets_in_force(config: Config) -> list[Budget]:
    """Every budget: the configured ones, then one per tenant quota (``quota:<tenant>``)."""
    found = list(config.budgets.rules)
    for name, tenant in config.tenants.items():
        if tenant.quota_usd_month:
            found.append(tenant_quota_budget(name, tenant.quota_usd_month))
    return found


@dataclass(frozen=True, slots=True)
class Limit:
    """A budget ready to check calls against: its scope as a tuple, money in nano-dollars."""

    budget: Budget
    limit_nano: int
    tenant: str | None
    account: str | None
    campaign: str | None

    @classmethod
    def of(cls, budget: Budget) -> Limit:
        scope = budget.scope
        return cls(
            budget, round_to_nano(budget.limit_usd), scope.tenant, scope.account, scope.campaign
        )

    @property
    def name(self) -> str:
        return self.budget.name

    def covers(self, tenant: str | None, account: str | None, campaign_id: str | None) -> bool:
        """Whether a call of this tenant, account and campaign (id) counts against it."""
        return (
            (self.tenant is None or self.tenant == tenant)
            and (self.account is None or self.account == account)
            and (self.campaign is None or self.campaign == campaign_id)
        )

    def soft_reached(self, used_nano: int) -> bool:
        return used_nano * 100 >= self.limit_nano * self.budget.soft_pct

    def state(self, used_nano: int, refused_nano: int = 0) -> str:
        """ok, soft (past soft_pct) or hard: nothing left, or less than the last call
        refused (``refused_nano``) needed."""
        if used_nano >= self.limit_nano or (
            refused_nano and used_nano + refused_nano > self.limit_nano
        ):
            return "hard"
        return "soft" if self.soft_reached(used_nano) else "ok"


def current_period(period: str, now: datetime, tz: ZoneInfo) -> Period:
    """The day or month holding ``now`` in ``tz``; its label keys the reservation store."""
    return day_period(now, tz) if period == "day" else month_period(now, tz)
