"""`[tenants.<name>]`: the agencies' clients, each with its own API token, quotas and markup.

A tenant's token (the variable ``token_env`` names) lets `serve` answer that tenant's
requests and nobody else's; ``quota_messages_day`` caps its deliveries per day in
``[thresholds] timezone``; ``quota_usd_month`` becomes a monthly budget on its scope;
``markup_pct`` is added on top of the provider cost in its invoices.
"""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import Field, field_validator

from huntaze_cli.config.section import MAX_USD, _AwsEndpoint, _Section
from huntaze_cli.errors import UsageError

# Tenant names are what campaign files and cost events carry (``tenant = "agency_a"``);
# they also name invoice files, so no path separators.
TENANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class TenantConfig(_Section):
    """One tenant: its token for `serve`, its quotas and its invoice markup."""

    token_env: str | None = Field(
        None,
        pattern=_ENV_NAME,
        description="env var holding this tenant's API token for serve",
        examples=["HUNTAZE_TOKEN_AGENCY_A"],
    )
    quota_messages_day: int | None = Field(
        None, ge=1, description="deliveries per day ([thresholds] timezone)", examples=[5000]
    )
    quota_usd_month: Decimal | None = Field(
        None,
        gt=0,
        le=MAX_USD,
        max_digits=21,
        decimal_places=9,
        allow_inf_nan=False,
        description="monthly spend budget of this tenant",
        examples=[300],
    )
    markup_pct: Decimal = Field(
        Decimal(0),
        ge=0,
        le=1000,
        max_digits=12,
        decimal_places=6,
        allow_inf_nan=False,
        description="invoice markup on top of the provider cost, percent",
    )

    @field_validator("markup_pct", "quota_usd_month", mode="before")
    @classmethod
    def _no_float_money(cls, value: object) -> object:
        # 0.1 as a float is not 0.1: read TOML floats through their text.
        return Decimal(repr(value)) if isinstance(value, float) else value


# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens.
_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class InvoicesConfig(_AwsEndpoint):
    """Where the monthly billing run (`serve`, and `costs invoice --all-tenants` without
    -o) puts every tenant's invoice: under the data dir, or in S3 when a bucket is set."""

    s3_bucket: str | None = Field(
        None,
        pattern=_BUCKET,
        description="S3 bucket for invoices; default: files under the data dir",
        examples=["acme-invoices"],
    )
    s3_prefix: str = Field(
        "invoices/",
        max_length=512,
        description="key prefix; objects are <prefix><YYYY-MM>/<tenant>-<YYYY-MM>.<format>",
    )


def check_tenant_names(value: dict[str, TenantConfig]) -> dict[str, TenantConfig]:
    """Every ``[tenants.<name>]`` name is a valid tenant name."""
    for name in value:
        if not re.match(TENANT_NAME_PATTERN, name):
            raise ValueError(f"{name!r} is not a valid tenant name (letters, digits, _-.)")
    return value


def configured_tenant(tenants: dict[str, TenantConfig], name: str) -> TenantConfig:
    """``[tenants.<name>]``; a usage error on ``tenant`` listing the configured ones."""
    found = tenants.get(name)
    if found is None:
        known = ", ".join(sorted(tenants)) or "none configured"
        raise UsageError(
            f"<tenant> {name!r} is not a configured tenant; configured: {known}",
            field="tenant",
            value=name,
            hint="add [tenants.<name>] to the config",
        )
    return found
