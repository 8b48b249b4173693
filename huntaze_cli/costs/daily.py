"""Spend per day of ``[thresholds] timezone`` and provider: the dashboard overview's chart.

The days are the days the daily threshold counts (``check-thresholds``, ``costs stats``
today): read from the quarter-hour rollups through ``series.daily_series``, as the
forecast reads them, so today's bar is ``costs stats``' today and the daily limit line
stands against the same day. (``costs breakdown --by day`` groups the daily rollups,
whose days are UTC days.)
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import BaseModel

from huntaze_cli.config import Config
from huntaze_cli.costs.reports import USD_UNIT_NANO
from huntaze_cli.costs.series import Days, daily_series
from huntaze_cli.money import apportion, nano_to_usd
from huntaze_cli.storage.ledger import Ledger


class DaySpendRow(BaseModel):
    day: date
    provider: str
    cost_usd: float
    cost_nano: int


class DailySpend(BaseModel):
    timezone: str
    days: list[date]  # oldest first, today last
    rows: list[DaySpendRow]  # days and providers that spent something
    total_usd: float
    total_nano: int


def daily_spend(config: Config, ledger: Ledger, *, days: int, now: datetime) -> DailySpend:
    """The last ``days`` days (today included) of the threshold time zone, by provider."""
    tz = config.thresholds.tz
    today = now.astimezone(tz).date()
    span = Days(today - timedelta(days=days - 1), days, tz)
    series = daily_series(ledger, span, by="provider")
    cells = [
        (span.day(i), str(provider), n)
        for provider, values in sorted(series.items(), key=lambda kv: str(kv[0]))
        for i, n in enumerate(values)
        if n
    ]
    # Rounded together, as breakdowns are: the rows' cost_usd add up to total_usd.
    shown = apportion([n for _, _, n in cells], USD_UNIT_NANO)
    rows = [
        DaySpendRow(day=day, provider=provider, cost_usd=nano_to_usd(rounded), cost_nano=n)
        for (day, provider, n), rounded in zip(cells, shown, strict=True)
    ]
    total = sum(n for _, _, n in cells)
    return DailySpend(
        timezone=config.thresholds.timezone,
        days=[span.day(i) for i in range(days)],
        rows=rows,
        total_usd=nano_to_usd(total),
        total_nano=total,
    )
