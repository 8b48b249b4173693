"""A small ledger spread over this month and the one before, with known costs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from huntaze_cli.models import CostEvent
from tests.costs.history import record
from tests.helpers import make_event


def month_starts(now: datetime | None = None) -> tuple[date, date]:
    """The first day of this UTC month and of the month before."""
    today = (now or datetime.now(UTC)).date()
    first = today.replace(day=1)
    return first, (first - timedelta(days=1)).replace(day=1)


def at(day: date, hour: int = 10) -> datetime:
    moment = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return min(moment, datetime.now(UTC) - timedelta(seconds=5))


def two_months() -> list[CostEvent]:
    """This month: azure 3 x 1.1 USD, openai 1 x 0.25 USD (unpriced one too);
    last month: azure 2 x 1.0 USD, simulated 1 x 0.123456789 USD."""
    this, last = month_starts()
    events = [
        make_event(1, ts=at(this), provider="azure", cost_nano=1_100_000_000, campaign_id="c-a"),
        make_event(2, ts=at(this, 0), provider="azure", cost_nano=1_100_000_000),
        make_event(3, ts=at(this, 1), provider="azure", cost_nano=1_100_000_000, tenant="t-b"),
        make_event(4, ts=at(this, 2), provider="openai", model="gpt-4o", cost_nano=250_000_000,
                   campaign_id="Été 🎉 naïve"),
        make_event(5, ts=at(this, 3), provider="openai", model="mystery", cost_nano=0,
                   priced=False),
        make_event(6, ts=at(last + timedelta(days=3)), provider="azure", cost_nano=1_000_000_000),
        make_event(7, ts=at(last + timedelta(days=9)), provider="azure", cost_nano=1_000_000_000),
        make_event(8, ts=at(last + timedelta(days=9)), provider="simulated",
                   cost_nano=123_456_789),
    ]  # fmt: skip
    record(events)
    return events
