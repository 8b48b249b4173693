"""Calendar periods in the thresholds time zone and the spend inside them.

Days and months are counted in ``[thresholds] timezone``; they are read from the ledger's
quarter-hour rollups, which tile every real time zone exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from huntaze_cli.storage.ledger import Counters, Ledger


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open span ``[start, end)`` of UTC time with its calendar label."""

    name: str  # "daily" | "monthly" | ...
    label: str  # "2026-11-25" | "2026-11"
    start: datetime
    end: datetime


def day_period(now: datetime, tz: ZoneInfo, days_back: int = 0) -> Period:
    local = now.astimezone(tz).date() - timedelta(days=days_back)
    start = datetime(local.year, local.month, local.day, tzinfo=tz)
    nxt = local + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return Period("daily", local.isoformat(), start.astimezone(UTC), end.astimezone(UTC))


def month_period(now: datetime, tz: ZoneInfo) -> Period:
    local = now.astimezone(tz)
    start = datetime(local.year, local.month, 1, tzinfo=tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    end = datetime(year, month, 1, tzinfo=tz)
    return Period(
        "monthly", f"{local.year:04d}-{local.month:02d}", start.astimezone(UTC), end.astimezone(UTC)
    )


def provider_totals(ledger: Ledger, periods: Sequence[Period]) -> list[dict[str, Counters]]:
    """For each period, what each provider spent in it (one rollup read per period)."""
    groups = ledger.slot_groups([(p.start, p.end) for p in periods])
    return [{name: slot.counters for name, slot in group.items()} for group in groups]
