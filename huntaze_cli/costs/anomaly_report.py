"""`costs anomalies`: hourly and daily spend spikes, overall and per provider, tenant,
account or model, each against its own robust seasonal baseline (``costs.anomalies``).

Hourly series are clock hours of ``[thresholds] timezone`` for every key (quarter-hour
rollups overall and per provider, scope rollups per tenant, account and model); daily
series too (per tenant, account and model they are UTC days, see ``costs.series``). The
hour and the day still running are judged on their spend so far, so a runaway campaign
shows up within the hour it starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.costs.periods import day_period
from huntaze_cli.costs.reports import parse_when
from huntaze_cli.costs.series import (
    HOUR,
    Days,
    Group,
    daily_series,
    first_spend,
    hour_start,
    hourly_series,
    validate_key,
)
from huntaze_cli.errors import UsageError
from huntaze_cli.money import nano_to_usd

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from huntaze_cli.config import Config
    from huntaze_cli.costs import anomalies as an
    from huntaze_cli.storage.ledger import Ledger

DEFAULT_DAYS = 7
# History read before the first hour and day judged (what costs.anomalies looks back on).
HOUR_LOOKBACK = 28 * 24
DAY_LOOKBACK = 28
NANO = 1e9


class Anomaly(BaseModel):
    start: datetime
    end: datetime
    granularity: Literal["hour", "day"]
    scope: dict[str, str | None]
    observed_usd: float
    observed_nano: int
    expected_usd: float
    score: float
    severity: str
    ongoing: bool


class AnomalyReport(BaseModel):
    generated_at: datetime
    since: datetime
    timezone: str
    group_by: list[str]
    anomalies: list[Anomaly]


def validate_keys(keys: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for key in keys:
        validate_key(key)
        if key not in chosen:
            chosen.append(key)
    return chosen


def parse_since(value: str | None, tz: ZoneInfo) -> datetime | None:
    """``since``: a date is that day's start in ``tz``; a time needs an offset."""
    if value is None:
        return None
    parsed = parse_when(value, field="since")
    if isinstance(parsed, datetime):
        return parsed
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=tz).astimezone(UTC)


def anomaly_report(
    config: Config,
    ledger: Ledger,
    *,
    since: datetime | None = None,
    by: Sequence[str] = (),
    now: datetime | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> AnomalyReport:
    """Spikes that started at or after ``since`` (default: the last 7 days), newest first."""
    keys = validate_keys(by)
    now = (now or clock.now()).astimezone(UTC)
    since = (since or now - timedelta(days=DEFAULT_DAYS)).astimezone(UTC)
    if since >= now:
        raise UsageError("<since> must be in the past", field="since", value=since)
    # Nothing older than the rollups is left to judge.
    since = max(since, now - timedelta(days=config.ledger.rollup_retention_days))
    tz = config.thresholds.tz
    found = _hourly(ledger, tz, since, now, by=None)
    found += _daily(ledger, tz, since, now, by=None)
    for key in keys:
        found += _hourly(ledger, tz, since, now, by=key)
        found += _daily(ledger, tz, since, now, by=key)
    found.sort(key=lambda a: (-a.start.timestamp(), a.granularity, -a.score))
    return AnomalyReport(
        generated_at=now,
        since=since,
        timezone=config.thresholds.timezone,
        group_by=keys,
        anomalies=found,
    )


def anomaly_scope(
    config: Config,
    ledger: Ledger,
    *,
    scope: Mapping[str, str],
    since: datetime,
    now: datetime | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> list[Anomaly]:
    """Spikes of one rule's scope since ``since``, hourly and daily: what an ``anomaly``
    rule evaluates."""
    now = (now or clock.now()).astimezone(UTC)
    tz = config.thresholds.tz
    found = _hourly(ledger, tz, since, now, by=None, scope=scope)
    found += _daily(ledger, tz, since, now, by=None, scope=scope)
    for anomaly in found:
        anomaly.scope = dict(scope)
    return found


def _hourly(
    ledger: Ledger,
    tz: ZoneInfo,
    since: datetime,
    now: datetime,
    *,
    by: str | None,
    scope: Mapping[str, str] | None = None,
) -> list[Anomaly]:
    judged = hour_start(since, tz)
    first = judged - HOUR_LOOKBACK * HOUR
    count = int((hour_start(now, tz) - first) / HOUR) + 1
    series = hourly_series(ledger, first, count, by=by, scope=scope)
    start = int((judged - first) / HOUR)
    out = []
    for group, values in series.items():
        for spike in _spikes(values, start=start, hourly=True):
            begin = first + spike.index * HOUR
            out.append(
                _anomaly(
                    spike,
                    begin,
                    begin + HOUR,
                    "hour",
                    {by: group} if by else {},
                    values[spike.index],
                    ongoing=begin + HOUR > now,
                )
            )
    return out


def _daily(
    ledger: Ledger,
    tz: ZoneInfo,
    since: datetime,
    now: datetime,
    *,
    by: str | None,
    scope: Mapping[str, str] | None = None,
) -> list[Anomaly]:
    today = day_period(now, tz)
    first_judged = since.astimezone(tz).date()
    last = now.astimezone(tz).date()
    first = first_judged - timedelta(days=DAY_LOOKBACK)
    days = Days(first, (last - first).days + 1, tz)
    series = daily_series(ledger, days, by=by, scope=scope)
    bounds = days.bounds()
    out = []
    for group, values in series.items():
        for spike in _spikes(values, start=DAY_LOOKBACK, hourly=False):
            out.append(
                _anomaly(
                    spike,
                    bounds[spike.index],
                    bounds[spike.index + 1],
                    "day",
                    {by: group} if by else {},
                    values[spike.index],
                    ongoing=bounds[spike.index] == today.start,
                )
            )
    return out


def _spikes(values: Sequence[int], *, start: int, hourly: bool) -> list[an.Spike]:
    """Spikes in ``values[start:]``; history before the first spend is not history."""
    from huntaze_cli.costs import anomalies as an

    lead = first_spend(values)
    if lead is None:
        return []
    detect = an.hourly_spikes if hourly else an.daily_spikes
    found = detect([v / NANO for v in values[lead:]], start=max(0, start - lead))
    return [an.Spike(s.index + lead, s.observed, s.expected, s.score, s.severity) for s in found]


def _anomaly(
    spike: an.Spike,
    start: datetime,
    end: datetime,
    granularity: Literal["hour", "day"],
    scope: dict[str, Group],
    observed_nano: int,
    *,
    ongoing: bool,
) -> Anomaly:
    return Anomaly(
        start=start,
        end=end,
        granularity=granularity,
        scope=scope,
        observed_usd=nano_to_usd(observed_nano),
        observed_nano=observed_nano,
        expected_usd=round(spike.expected, 6),
        score=round(spike.score, 2),
        severity=spike.severity,
        ongoing=ongoing,
    )
