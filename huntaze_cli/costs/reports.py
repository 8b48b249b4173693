"""Cost reports over the ledger's rollups: breakdowns and real-time stats.

Neither report reads raw events: breakdowns sum daily rollups, stats sum quarter-hour
rollups, so both stay fast on a ledger of millions of events. All sums are integer
nano-dollars; only the finished figures are rounded for display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from huntaze_cli.config import Config
from huntaze_cli.costs.limits import Limit, global_limits
from huntaze_cli.costs.periods import day_period, month_period
from huntaze_cli.errors import UsageError
from huntaze_cli.models import (
    BreakdownReport,
    BreakdownRow,
    LastHourFigures,
    PeriodFigures,
    ProviderStats,
    StatsReport,
    ThresholdUse,
    Totals,
)
from huntaze_cli.money import apportion, nano_to_usd, pct, shares_pct
from huntaze_cli.storage.ledger import (
    GROUP_FIELDS,
    LATENCY_BOUNDS_MS,
    SLOT_SECONDS,
    Counters,
    Ledger,
    SlotRollup,
)

GROUP_KEYS = tuple(GROUP_FIELDS)
USD_UNIT_NANO = 1000  # *_usd figures have 6 decimals: one unit is 1,000 nano-dollars


# --- time ranges -----------------------------------------------------------------------


def parse_when(value: str, *, field: str) -> datetime | date:
    """A date (YYYY-MM-DD) or an ISO-8601 time with offset, for ``since``/``until``."""
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"<{field}>: cannot parse {value!r}; use YYYY-MM-DD or an ISO-8601 time "
            "such as 2026-11-25T10:00:00+00:00",
            field=field,
            value=value,
        ) from None
    if parsed.tzinfo is None:
        raise UsageError(
            f"<{field}>: {value!r} has no UTC offset; add one, e.g. +00:00",
            field=field,
            value=value,
        )
    return parsed.astimezone(UTC)


def _start_of(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def time_range(
    *, since: str | None, until: str | None, days: int | None, now: datetime
) -> tuple[datetime, datetime]:
    """Resolve since/until/days to a half-open UTC range ``[start, end)``.

    A date given as ``until`` is inclusive (the whole day); a time is exclusive. Without
    ``since``, the range is the last ``days`` UTC days including today (default 30).
    """
    if days is not None and since is not None:
        raise UsageError(
            "<days> and <since> cannot be used together", field="days", value=days, refs=["since"]
        )
    if days is not None and days < 1:
        raise UsageError("<days> must be at least 1", field="days", value=days)
    try:
        return _time_range(since=since, until=until, days=days, now=now)
    except OverflowError:
        raise UsageError(
            "<since>/<until>/<days>: the range runs past year 9999",
            field="since" if since is not None else "until" if until is not None else "days",
            refs=["since", "until", "days"],
        ) from None


def _time_range(
    *, since: str | None, until: str | None, days: int | None, now: datetime
) -> tuple[datetime, datetime]:
    if until is None:
        today = now.astimezone(UTC).date()
        end = _start_of(today + timedelta(days=1))
    else:
        parsed = parse_when(until, field="until")
        end = parsed if isinstance(parsed, datetime) else _start_of(parsed + timedelta(days=1))
    if since is None:
        last_day = (end - timedelta(microseconds=1)).date()
        start = _start_of(last_day - timedelta(days=(days or 30) - 1))
    else:
        start = _start_of(parse_when(since, field="since"))
    if start >= end:
        raise UsageError(
            "<since> must be before <until>", field="since", value=since, refs=["until"]
        )
    return start, end


# --- breakdown -------------------------------------------------------------------------


def validate_group_by(keys: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for key in keys or ["provider"]:
        if key not in GROUP_KEYS:
            raise UsageError(
                f"<by>: unknown key {key!r}; choose from {', '.join(GROUP_KEYS)}",
                field="by",
                value=key,
            )
        if key not in chosen:
            chosen.append(key)
    return chosen


def breakdown(
    ledger: Ledger, *, start: datetime, end: datetime, group_by: Sequence[str]
) -> BreakdownReport:
    """Cost grouped by ``group_by`` over the UTC days touching ``[start, end)``.

    Rollups are daily, so a range is widened to whole UTC days.
    """
    keys = validate_group_by(group_by)
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    groups = ledger.daily_groups(first, last + timedelta(days=1), keys)
    total = Counters()
    for _, counters in groups:
        total.add(counters)
    ordered = sorted(
        groups,
        key=lambda item: (-item[1].cost_nano, -item[1].requests, [str(v) for v in item[0]]),
    )
    # Rounded together: the rows' cost_usd and share_pct add up to the total's.
    shown = apportion([c.cost_nano for _, c in ordered], USD_UNIT_NANO)
    shares = shares_pct([c.cost_nano for _, c in ordered])
    rows = [
        BreakdownRow(
            **dict(zip(keys, group, strict=True)),
            requests=c.requests,
            errors=c.errors,
            input_tokens=c.input_tokens,
            output_tokens=c.output_tokens,
            cost_usd=nano_to_usd(rounded),
            cost_nano=c.cost_nano,
            share_pct=share,
            unpriced_requests=c.unpriced,
        )
        for (group, c), rounded, share in zip(ordered, shown, shares, strict=True)
    ]
    return BreakdownReport(
        since=_start_of(first),
        until=_start_of(last + timedelta(days=1)),
        group_by=keys,
        rows=rows,
        total=Totals(
            requests=total.requests,
            errors=total.errors,
            input_tokens=total.input_tokens,
            output_tokens=total.output_tokens,
            cost_usd=nano_to_usd(total.cost_nano),
            cost_nano=total.cost_nano,
            unpriced_requests=total.unpriced,
        ),
        unpriced_requests=total.unpriced,
    )


# --- stats -----------------------------------------------------------------------------


def percentile(
    histogram: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BOUNDS_MS
) -> float | None:
    """The q-quantile (0..1) of a histogram with upper ``bounds`` (default: the latency
    buckets), interpolated inside its bucket."""
    count = sum(histogram)
    if count == 0:
        return None
    rank = q * count
    seen = 0
    for index, in_bucket in enumerate(histogram):
        if in_bucket and seen + in_bucket >= rank:
            lower = bounds[index - 1] if index else 0.0
            if index >= len(bounds):
                return float(lower)
            upper = bounds[index]
            return round(lower + (upper - lower) * (rank - seen) / in_bucket, 1)
        seen += in_bucket
    return float(bounds[-1])


def _figures(counters: Counters) -> PeriodFigures:
    return PeriodFigures(
        requests=counters.requests,
        errors=counters.errors,
        cost_usd=nano_to_usd(counters.cost_nano),
        cost_nano=counters.cost_nano,
    )


def _threshold_use(limit: Limit | None, spent_nano: int) -> ThresholdUse:
    limit_nano = limit.limit_nano if limit else 0
    return ThresholdUse(
        name=limit.name if limit else None,
        source=limit.source if limit else "none",
        limit_usd=nano_to_usd(limit_nano),
        limit_nano=limit_nano,
        spent_usd=nano_to_usd(spent_nano),
        spent_nano=spent_nano,
        used_pct=pct(spent_nano, limit_nano),
    )


def stats(
    config: Config,
    ledger: Ledger,
    *,
    now: datetime | None = None,
    limits: Mapping[str, Limit | None] | None = None,
) -> StatsReport:
    """Real-time figures: last hour, today, yesterday, month to date, per provider.

    Today and the month are compared with ``limits`` (``daily``, ``monthly``): the global
    ``[thresholds]`` by default; a tenant's view passes that tenant's budgets.
    """
    limits = global_limits(config) if limits is None else limits
    now = (now or datetime.now(UTC)).astimezone(UTC)
    tz = config.thresholds.tz
    today = day_period(now, tz)
    yesterday = day_period(now, tz, days_back=1)
    month = month_period(now, tz)
    epoch = int(now.timestamp())
    hour_start = datetime.fromtimestamp(epoch - 3600 - (epoch - 3600) % SLOT_SECONDS, UTC)
    hour, day, before, month_groups = ledger.slot_groups(
        [(hour_start, today.end), (today.start, today.end),
         (yesterday.start, yesterday.end), (month.start, month.end)]
    )  # fmt: skip
    day_total = _sum(day)
    month_total = _sum(month_groups)
    return StatsReport(
        generated_at=now,
        timezone=config.thresholds.timezone,
        last_hour=LastHourFigures(since=hour_start, **_figures(_sum(hour)).model_dump()),
        today=_figures(day_total),
        yesterday=_figures(_sum(before)),
        month_to_date=_figures(month_total),
        providers=_provider_stats(day),
        unpriced_requests=month_total.unpriced,
        model_mismatches=month_total.mismatches,
        thresholds={
            "daily": _threshold_use(limits.get("daily"), day_total.cost_nano),
            "monthly": _threshold_use(limits.get("monthly"), month_total.cost_nano),
        },
    )


def _sum(groups: dict[str, SlotRollup]) -> Counters:
    out = Counters()
    for slot in groups.values():
        out.add(slot.counters)
    return out


def _provider_stats(groups: dict[str, SlotRollup]) -> dict[str, ProviderStats]:
    ordered = sorted(groups.values(), key=lambda s: (-s.counters.cost_nano, s.provider))
    nanos = [slot.counters.cost_nano for slot in ordered]
    # Rounded together, so the providers add up to today's cost_usd and to 100 %.
    return {
        slot.provider: ProviderStats(
            requests=slot.counters.requests,
            errors=slot.counters.errors,
            cost_usd=nano_to_usd(rounded),
            cost_nano=slot.counters.cost_nano,
            share_pct=share,
            latency_p50_ms=percentile(slot.latency, 0.50),
            latency_p95_ms=percentile(slot.latency, 0.95),
        )
        for slot, rounded, share in zip(
            ordered, apportion(nanos, USD_UNIT_NANO), shares_pct(nanos), strict=True
        )
    }
