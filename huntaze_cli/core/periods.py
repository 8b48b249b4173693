"""Calendar periods in the thresholds time zone and the spend inside them.

Days and months are counted in ``[thresholds] timezone``; they are read from the ledger's
quarter-hour rollups, which tile every real time zone exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from huntaze_cli.backends.ledger import Counters, Ledger, SlotRollup


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


def sum_slots(slots: list[SlotRollup], start: datetime, end: datetime) -> Counters:
    """Totals of the slots starting in ``[start, end)``."""
    lo, hi = int(start.timestamp()), int(end.timestamp())
    total = Counters()
    for slot in slots:
        if lo <= slot.slot < hi:
            total.add(slot.counters)
    return total


def spent(ledger: Ledger, period: Period) -> Counters:
    """Totals of everything recorded in ``period``."""
    return sum_slots(ledger.slots(period.start, period.end), period.start, period.end)
