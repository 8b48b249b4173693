"""The limits spend is compared with: the global ``[thresholds]``, or a tenant's budgets.

``costs stats`` (today, month to date) and ``costs forecast`` (month end) compare with the
same :class:`Limit`, which says where it comes from so a reader knows whose limit it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from huntaze_cli.config import Config
from huntaze_cli.money import usd_to_nano

PERIODS = ("daily", "monthly")


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit: ``global-daily``/``global-monthly`` (source ``global``) or a budget's name
    (source ``budget``, e.g. ``quota:<tenant>``), in nano-dollars."""

    name: str
    source: str
    limit_nano: int


def global_limits(config: Config) -> dict[str, Limit | None]:
    """``[thresholds] daily_usd``/``monthly_usd`` by period; None where it is 0 (no limit)."""
    out: dict[str, Limit | None] = {}
    for period in PERIODS:
        field = f"{period}_usd"
        nano = usd_to_nano(getattr(config.thresholds, field), field=f"thresholds.{field}")
        out[period] = Limit(f"global-{period}", "global", nano) if nano else None
    return out
