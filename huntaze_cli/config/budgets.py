"""Budgets: hard spending limits that every provider call reserves against ([budgets]).

TOML cannot hold both ``[[budgets]]`` (an array of tables) and ``[budgets]`` (a table)
in one file, so the section is written as ``[budgets]`` with its budgets in
``[[budgets.rules]]`` (as ``[thresholds]`` holds ``[[thresholds.rules]]``); a file with
just ``[[budgets]]`` tables, as CONTRACT.md shows them, means the same budgets with the
default settings.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from huntaze_cli.config.alerting import RULE_NAME_PATTERN
from huntaze_cli.config.section import MAX_USD, _Section

# Budgets derived from ``[tenants.<name>] quota_usd_month`` are named this way (see
# budgets.budgets_in_force); configured budgets cannot take such a name.
QUOTA_PREFIX = "quota:"


class BudgetScope(_Section):
    """What a budget counts: calls matching every key given; ``{}`` counts every call."""

    tenant: str | None = Field(None, min_length=1, description="tenant name")
    account: str | None = Field(None, min_length=1, description="creator account")
    campaign: str | None = Field(None, min_length=1, description="campaign id")

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Budget(_Section):
    """One budget: a hard limit on spend in a scope and period, and what to do when close."""

    name: str = Field(..., pattern=RULE_NAME_PATTERN, description="unique budget name")
    scope: BudgetScope = Field(default_factory=BudgetScope, description="what the budget counts")
    period: Literal["day", "month"] = Field(
        "month", description="day | month (in [thresholds] timezone)"
    )
    limit_usd: Decimal = Field(
        ..., gt=0, le=MAX_USD, max_digits=21, decimal_places=9, description="hard limit in USD"
    )
    soft_pct: int = Field(80, ge=1, le=100, description="% of the limit where on_soft starts")
    on_soft: Literal["downgrade", "throttle", "alert"] = Field(
        "alert", description="downgrade (the downgrade map) | throttle | alert"
    )
    downgrade: dict[str, str] = Field(
        default_factory=dict, description="model = cheaper model, past soft_pct (downgrade)"
    )
    throttle_concurrency: int = Field(
        2, ge=1, le=1024, description="calls in flight per process in scope, past soft_pct"
    )

    @model_validator(mode="after")
    def _downgrade_needs_a_map(self) -> Budget:
        if self.on_soft == "downgrade" and not self.downgrade:
            raise ValueError(
                'on_soft = "downgrade" needs a downgrade map, e.g. '
                'downgrade = { "gpt-4o" = "gpt-4o-mini" }'
            )
        return self


class BudgetsConfig(_Section):
    reservation_ttl_s: float = Field(
        300.0,
        ge=1,
        le=86_400,
        description="a dead process's reservations count as spent this long, then are released",
    )
    rules: list[Budget] = Field(default_factory=list, description="the budgets ([[budgets.rules]])")

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        # `[[budgets]]` tables (CONTRACT.md's spelling) are the budgets themselves.
        if isinstance(data, list):
            return {"rules": data}
        return data

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[Budget]) -> list[Budget]:
        seen: set[str] = set()
        for budget in value:
            if budget.name.startswith(QUOTA_PREFIX):
                raise ValueError(
                    f"budget name {budget.name!r}: names starting {QUOTA_PREFIX!r} are "
                    "reserved for [tenants.<name>] quota_usd_month"
                )
            if budget.name in seen:
                raise ValueError(f"budget name {budget.name!r} is used twice")
            seen.add(budget.name)
        return value
