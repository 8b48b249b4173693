"""A ledger with weeks of hourly spend, for forecast and anomaly tests through the CLI/HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from huntaze_cli.config import load_config
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from tests.helpers import make_event

# Nano-dollars per hour and provider by weekday (Monday first): quiet weekends.
WEEKDAY_NANO = (90_000_000, 95_000_000, 92_000_000, 97_000_000, 91_000_000, 30_000_000, 25_000_000)


def hourly_events(days: int, *, now: datetime | None = None, start: int = 0) -> list[CostEvent]:
    """One event per provider per hour for the last ``days`` days up to the current hour."""
    now = now or datetime.now(UTC)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
    events = []
    n = start
    hour = first
    while hour <= now:
        for provider in ("azure", "openai"):
            ts = min(hour + timedelta(minutes=7), now - timedelta(seconds=1))
            events.append(
                make_event(
                    n,
                    ts=ts,
                    provider=provider,
                    model="gpt-4o-mini" if provider == "azure" else "gpt-4o",
                    cost_nano=WEEKDAY_NANO[ts.weekday()] + (n % 7) * 1_000_003,
                    tenant=("agency_a", "agency_b")[n % 2],
                )
            )
            n += 1
        hour += timedelta(hours=1)
    return events


def record(events: list[CostEvent]) -> None:
    """Into the configured SQLite ledger, past the 30-day raw retention if need be."""
    ledger = SQLiteLedger(load_config().ledger_path, retention_days=400)
    try:
        ledger.record(events)
    finally:
        ledger.close()
