"""Publish today's and month-to-date spend per provider to Amazon CloudWatch.

`check-thresholds` calls this after evaluating the rules, so an operator can alarm on the
same figures in CloudWatch. The datums and the PutMetricData plumbing are in
``huntaze_cli.observability.cloudwatch``; this module only chooses the periods.
"""

from __future__ import annotations

from datetime import UTC, datetime

from huntaze_cli.clock import SYSTEM_CLOCK
from huntaze_cli.config import Config
from huntaze_cli.costs.periods import day_period, month_period, provider_totals
from huntaze_cli.observability.cloudwatch import MAX_DATUMS_PER_REQUEST, build_datums, put_datums
from huntaze_cli.storage.ledger import Ledger


def publish_costs(
    config: Config,
    ledger: Ledger,
    *,
    now: datetime | None = None,
    chunk_size: int = MAX_DATUMS_PER_REQUEST,
) -> int:
    """Put today's and this month's cost metrics; return how many datums were published.

    Raises ``BackendError`` (one line naming the namespace and region) when CloudWatch
    refuses or cannot be reached; datums of requests sent before the failure stay put.
    """
    if not 1 <= chunk_size <= MAX_DATUMS_PER_REQUEST:
        raise ValueError(f"chunk_size must be 1..{MAX_DATUMS_PER_REQUEST}, not {chunk_size}")
    if now is not None and now.tzinfo is None:
        raise ValueError("now must carry a UTC offset")
    now = (now or SYSTEM_CLOCK.now()).astimezone(UTC)
    tz = config.thresholds.tz
    day, month = day_period(now, tz), month_period(now, tz)
    today, month_to_date = provider_totals(ledger, [day, month])
    datums = build_datums(today, month_to_date, timestamp=now)
    put_datums(config, datums, chunk_size)
    return len(datums)
