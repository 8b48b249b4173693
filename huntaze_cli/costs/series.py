"""Cost series read from the ledger's rollups, for forecasts and anomaly detection.

A series is one integer nano-dollar amount per day or hour, oldest first, with zeros
where nothing was spent. Nothing here reads raw events:

* overall and per provider, days and hours come from the quarter-hour rollups, so a day
  is a day in ``[thresholds] timezone`` (every real offset is a multiple of 15 minutes);
* per tenant, account, model or campaign, days come from the daily rollups, whose days
  are UTC days: the day labelled 2026-11-25 is the UTC day of that date;
* per tenant, account, model or campaign, hours come from the quarter-hour scope rollups
  (kept ``SCOPE_RETENTION_DAYS``), so they are clock hours of the time zone too.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from huntaze_cli.errors import UsageError
from huntaze_cli.storage.ledger import GROUP_FIELDS, Ledger

# Keys a series can be split by; "provider" reads slots, the others daily rollups.
SERIES_KEYS = ("provider", "tenant", "account", "model")
SLOT_KEYS = frozenset({"provider"})
HOUR = timedelta(hours=1)

Group = str | None


def validate_key(key: str | None, *, field: str = "by") -> str | None:
    """``key`` if a series can be split by it; UsageError naming ``field`` if not."""
    if key is None or key in SERIES_KEYS:
        return key
    raise UsageError(
        f"<{field}>: unknown key {key!r}; choose from {', '.join(SERIES_KEYS)}",
        field=field,
        value=key,
    )


@dataclass(frozen=True, slots=True)
class Days:
    """Consecutive calendar days ``first .. first + count - 1`` in a time zone."""

    first: date
    count: int
    tz: ZoneInfo

    def day(self, index: int) -> date:
        return self.first + timedelta(days=index)

    def bounds(self) -> list[datetime]:
        """UTC start of every day, then the end of the last one (count + 1 instants)."""
        out = []
        for n in range(self.count + 1):
            d = self.day(n)
            out.append(datetime(d.year, d.month, d.day, tzinfo=self.tz).astimezone(UTC))
        return out


def daily_series(
    ledger: Ledger, days: Days, *, by: str | None = None, scope: Mapping[str, str] | None = None
) -> dict[Group, list[int]]:
    """Spend per day of ``days``, per value of ``by`` (one series keyed None without it).

    ``scope`` keeps only rollups whose keys have the given values (a rule's scope: any of
    provider, tenant, account, model, campaign).
    """
    scope = dict(scope or {})
    wanted = ({by} if by else set()) | set(scope)
    if wanted <= SLOT_KEYS:
        return _slot_days(ledger, days, by=by, scope=scope)
    return _rollup_days(ledger, days, by=by, scope=scope)


def _slot_days(
    ledger: Ledger, days: Days, *, by: str | None, scope: Mapping[str, str]
) -> dict[Group, list[int]]:
    bounds = [int(b.timestamp()) for b in days.bounds()]
    out: dict[Group, list[int]] = {}
    provider = scope.get("provider")
    for slot, name, cost in ledger.slot_costs(days.bounds()[0], days.bounds()[-1]):
        if provider is not None and name != provider:
            continue
        index = bisect_right(bounds, slot) - 1
        if 0 <= index < days.count:
            key = name if by else None
            series = out.get(key)
            if series is None:
                series = out[key] = [0] * days.count
            series[index] += cost
    if not by and None not in out:
        out[None] = [0] * days.count
    return out


def _rollup_days(
    ledger: Ledger, days: Days, *, by: str | None, scope: Mapping[str, str]
) -> dict[Group, list[int]]:
    keys = sorted(set(scope) | ({by} if by else set()))
    for key in keys:
        if key not in GROUP_FIELDS or key == "day":
            raise UsageError(f"scope: unknown key {key!r}")
    rows = ledger.daily_groups(days.first, days.day(days.count), [*keys, "day"])
    out: dict[Group, list[int]] = {}
    for values, counters in rows:
        named = dict(zip(keys, values[:-1], strict=True))
        if any(named[k] != v for k, v in scope.items()):
            continue
        index = (date.fromisoformat(str(values[-1])) - days.first).days
        if not 0 <= index < days.count:
            continue
        group: Group = named[by] if by else None
        series = out.get(group)
        if series is None:
            series = out[group] = [0] * days.count
        series[index] += counters.cost_nano
    if not by and None not in out:
        out[None] = [0] * days.count
    return out


def hour_start(moment: datetime, tz: ZoneInfo) -> datetime:
    """Start of the clock hour of ``tz`` holding ``moment`` (UTC)."""
    local = moment.astimezone(tz)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def hourly_series(
    ledger: Ledger,
    first: datetime,
    count: int,
    *,
    by: str | None = None,
    scope: Mapping[str, str] | None = None,
) -> dict[Group, list[int]]:
    """Spend per hour for ``count`` hours from ``first`` (an hour start), per value of
    ``by`` (one series keyed None without it), of the rollups matching ``scope``.

    Overall and per provider from the quarter-hour rollups; anything else from the
    quarter-hour scope rollups.
    """
    scope = dict(scope or {})
    start, until = int(first.timestamp()), first + count * HOUR
    wanted = ({by} if by else set()) | set(scope)
    rows: list[tuple[int, str | None, int]]
    if wanted <= SLOT_KEYS:
        provider = scope.get("provider")
        rows = [r for r in ledger.slot_costs(first, until) if provider in (None, r[1])]
    else:
        groups = ledger.scope_groups(first, until, ["slot", by or "provider"], where=scope)
        rows = [(int(str(key[0])), key[1], c.cost_nano) for key, c in groups]
    out: dict[Group, list[int]] = {}
    for slot, name, cost in rows:
        index = (slot - start) // 3600
        if 0 <= index < count:
            key = name if by else None
            series = out.get(key)
            if series is None:
                series = out[key] = [0] * count
            series[index] += cost
    if not by and None not in out:
        out[None] = [0] * count
    return out


def first_spend(series: Sequence[int]) -> int | None:
    """Index of the first non-zero value: where a series' history starts."""
    for index, value in enumerate(series):
        if value:
            return index
    return None
