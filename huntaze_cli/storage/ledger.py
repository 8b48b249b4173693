"""The cost ledger protocol and what every implementation shares.

A ledger stores one ``CostEvent`` per provider attempt, keyed by ``attempt_id`` (a second
write of the same id changes nothing), and in the same transaction adds the event to two
rollups that every report reads instead of raw events:

* daily rollups, by (UTC day, provider, model, account, campaign, tenant): breakdowns;
* quarter-hour rollups, by (15-minute UTC slot, provider), with a latency histogram:
  stats and thresholds. Every real time zone offset is a multiple of 15 minutes, so a
  day or month in ``[thresholds] timezone`` is an exact set of slots;
* usage rollups, by (UTC day, provider, model, campaign, experiment, arm, route reason):
  the shape of the traffic that recommendations, experiment reports and a campaign's
  drill-down need and sums cannot give (output-token and latency histograms of
  successful attempts, spend on failed attempts, fallbacks, attempts per route reason,
  sums of squares for confidence intervals);
* quarter-hour scope rollups, by (15-minute UTC slot, provider, model, account,
  campaign, tenant), with the same latency histogram as the quarter-hour rollups: alert
  rules scoped to a tenant, account, campaign or model, exact in any time zone, and a
  tenant's own stats (``costs.tenant_view``). Kept ``SCOPE_RETENTION_DAYS`` (a month and
  the one before it).

Raw events are kept ``retention_days``; rollups ``rollup_retention_days`` (400).
Events older than the raw retention are refused by ``record`` (counted as expired): once
their id could have been pruned, a replay could no longer be recognised as one.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from huntaze_cli.models import CostEvent

SLOT_SECONDS = 15 * 60

# Upper bounds (ms) of the latency histogram buckets; the last bucket is open-ended.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 30000, 60000,
)  # fmt: skip
LATENCY_BUCKETS = len(LATENCY_BOUNDS_MS) + 1


def latency_bucket(latency_ms: float) -> int:
    return bisect_left(LATENCY_BOUNDS_MS, latency_ms)


# Upper bounds (tokens) of the output-token histogram of usage rollups; last is open-ended.
OUTPUT_BOUNDS: tuple[int, ...] = (
    8, 16, 32, 48, 64, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096,
    8192, 16384,
)  # fmt: skip
OUTPUT_BUCKETS = len(OUTPUT_BOUNDS) + 1


def output_bucket(tokens: int) -> int:
    return bisect_left(OUTPUT_BOUNDS, tokens)


def slot_of(ts: datetime) -> int:
    """Epoch second at which the 15-minute UTC slot holding ``ts`` starts."""
    epoch = int(ts.timestamp())
    return epoch - epoch % SLOT_SECONDS


def slot_start(slot: int) -> datetime:
    return datetime.fromtimestamp(slot, UTC)


@dataclass(slots=True)
class Counters:
    """Additive figures of a set of events; money in nano-dollars."""

    requests: int = 0
    errors: int = 0
    unpriced: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_nano: int = 0
    # Attempts served by another model than the one mapped (CostEvent.model_mismatch).
    mismatches: int = 0

    def add_event(self, event: CostEvent) -> None:
        self.requests += 1
        self.errors += event.status == "error"
        self.unpriced += not event.priced
        self.input_tokens += event.input_tokens
        self.cached_input_tokens += event.cached_input_tokens
        self.output_tokens += event.output_tokens
        self.cost_nano += event.cost_nano
        self.mismatches += event.model_mismatch

    def add(self, other: Counters) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.unpriced += other.unpriced
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.output_tokens += other.output_tokens
        self.cost_nano += other.cost_nano
        self.mismatches += other.mismatches


COUNTER_FIELDS = (
    "requests",
    "errors",
    "unpriced",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_nano",
    "mismatches",
)
# What daily rollups hold: every counter but mismatches, which stats reads from the
# quarter-hour rollups; one column less keeps a month's breakdown as fast as before.
DAILY_COUNTER_FIELDS = COUNTER_FIELDS[:-1]

# Key of a daily rollup: (day ISO, provider, model, account, campaign_id, tenant,
# response_model); absent account/campaign/response_model are stored as "".
DailyKey = tuple[str, str, str, str, str, str, str]
# Key of a slot rollup: (slot epoch seconds, provider).
SlotKey = tuple[int, str]
# What ``Ledger.slot_costs`` answers per slot rollup: (slot, provider, cost_nano).
SlotCost = tuple[int, str, int]
# Key of a scope rollup: (slot epoch seconds, provider, model, account, campaign_id,
# tenant); absent account/campaign are stored as "".
ScopeKey = tuple[int, str, str, str, str, str]
SCOPE_RETENTION_DAYS = 62


@dataclass(slots=True)
class DailyRollup:
    day: date
    provider: str
    model: str
    account: str | None
    campaign_id: str | None
    tenant: str
    counters: Counters
    response_model: str | None = None


@dataclass(slots=True)
class SlotRollup:
    slot: int
    provider: str
    counters: Counters
    latency: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)


@dataclass(slots=True)
class RecordResult:
    stored: int = 0
    duplicates: int = 0
    expired: int = 0

    def add(self, other: RecordResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.expired += other.expired


# Key of a usage rollup: (day ISO, provider, model, campaign_id, experiment, arm,
# route_reason); absent campaign/experiment/arm/route_reason are stored as "" (so are the
# reasons of rollups written before the key had one, beyond the raw events kept).
UsageKey = tuple[str, str, str, str, str, str, str]

# Integer and float sums of a usage rollup, in storage column order.
USAGE_INT_FIELDS = (
    "attempts",
    "errors",
    "ok",
    "fallbacks",
    "cost_nano",
    "error_cost_nano",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
)
USAGE_FLOAT_FIELDS = ("cost_sq", "latency_sum", "latency_sq")


@dataclass(slots=True)
class UsageRollup:
    """The shape of one day's traffic of one provider, model, campaign, arm and route reason.

    Histograms, ``output_tokens`` and the float sums cover successful attempts only
    (``ok`` of them); ``cost_nano`` covers every attempt, ``error_cost_nano`` the failed
    ones. ``cost_sq`` is the sum of squared successful-attempt costs in USD, and
    ``latency_sum``/``latency_sq`` of their latencies in ms: enough for a mean and a
    variance. ``fallbacks`` counts successes on a fallback provider.
    """

    day: date
    provider: str
    model: str
    campaign_id: str | None
    experiment: str | None
    arm: str | None
    route_reason: str | None = None
    attempts: int = 0
    errors: int = 0
    ok: int = 0
    fallbacks: int = 0
    cost_nano: int = 0
    error_cost_nano: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_sq: float = 0.0
    latency_sum: float = 0.0
    latency_sq: float = 0.0
    latency: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)
    output: list[int] = field(default_factory=lambda: [0] * OUTPUT_BUCKETS)

    @property
    def key(self) -> UsageKey:
        return (
            self.day.isoformat(),
            self.provider,
            self.model,
            self.campaign_id or "",
            self.experiment or "",
            self.arm or "",
            self.route_reason or "",
        )

    def add_event(self, event: CostEvent) -> None:
        self.attempts += 1
        self.cost_nano += event.cost_nano
        self.input_tokens += event.input_tokens
        self.cached_input_tokens += event.cached_input_tokens
        if event.status == "error":
            self.errors += 1
            self.error_cost_nano += event.cost_nano
            return
        self.ok += 1
        self.fallbacks += (event.route_reason or "").startswith("fallback:")
        self.output_tokens += event.output_tokens
        cost = event.cost_nano / 1e9
        self.cost_sq += cost * cost
        self.latency_sum += event.latency_ms
        self.latency_sq += event.latency_ms * event.latency_ms
        self.latency[latency_bucket(event.latency_ms)] += 1
        self.output[output_bucket(event.output_tokens)] += 1

    def add(self, other: UsageRollup) -> None:
        self.attempts += other.attempts
        self.errors += other.errors
        self.ok += other.ok
        self.fallbacks += other.fallbacks
        self.cost_nano += other.cost_nano
        self.error_cost_nano += other.error_cost_nano
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.output_tokens += other.output_tokens
        self.cost_sq += other.cost_sq
        self.latency_sum += other.latency_sum
        self.latency_sq += other.latency_sq
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
        self.output = [a + b for a, b in zip(self.output, other.output, strict=True)]


# Grouping keys of usage rollups and the UsageRollup attribute each one reads.
USAGE_GROUPS: dict[str, str] = {
    "day": "day",
    "provider": "provider",
    "model": "model",
    "campaign": "campaign_id",
    "experiment": "experiment",
    "arm": "arm",
    "route_reason": "route_reason",
}


def group_usage(rows: Iterable[UsageRollup], group_by: Sequence[str]) -> list[UsageRollup]:
    """Usage rollups summed by the named USAGE_GROUPS keys; other keys come out empty
    (``day`` as the group's first day, ``provider``/``model`` as "")."""
    attrs = [USAGE_GROUPS[key] for key in group_by]
    out: dict[tuple[object, ...], UsageRollup] = {}
    for row in rows:
        key = tuple(getattr(row, attr) for attr in attrs)
        total = out.get(key)
        if total is None:
            values = dict(zip(attrs, key, strict=True))
            total = out[key] = UsageRollup(
                values.get("day", row.day),
                values.get("provider", ""),
                values.get("model", ""),
                values.get("campaign_id"),
                values.get("experiment"),
                values.get("arm"),
                values.get("route_reason"),
            )
        elif "day" not in attrs and row.day < total.day:
            total.day = row.day
        total.add(row)
    return list(out.values())


def usage_from_key(key: UsageKey) -> UsageRollup:
    day, provider, model, campaign_id, experiment, arm, reason = key
    return UsageRollup(
        date.fromisoformat(day), provider, model, campaign_id or None, experiment or None,
        arm or None, reason or None,
    )  # fmt: skip


def usage_key(event: CostEvent) -> UsageKey:
    return (
        event.ts.date().isoformat(),
        event.provider,
        event.model,
        event.campaign_id or "",
        event.experiment or "",
        event.arm or "",
        event.route_reason or "",
    )


def aggregate_usage(events: Iterable[CostEvent]) -> dict[UsageKey, UsageRollup]:
    """The usage rollup increments a batch of (new, distinct) events makes."""
    usage: dict[UsageKey, UsageRollup] = {}
    for event in events:
        key = usage_key(event)
        rollup = usage.get(key)
        if rollup is None:
            rollup = usage[key] = usage_from_key(key)
        rollup.add_event(event)
    return usage


def daily_key(event: CostEvent) -> DailyKey:
    return (
        event.ts.date().isoformat(),
        event.provider,
        event.model,
        event.account or "",
        event.campaign_id or "",
        event.tenant,
        event.response_model or "",
    )


def aggregate(
    events: Iterable[CostEvent],
) -> tuple[dict[DailyKey, Counters], dict[SlotKey, SlotRollup]]:
    """The rollup increments a batch of (new, distinct) events makes."""
    daily: dict[DailyKey, Counters] = {}
    slots: dict[SlotKey, SlotRollup] = {}
    for event in events:
        dkey = daily_key(event)
        counters = daily.get(dkey)
        if counters is None:
            counters = daily[dkey] = Counters()
        counters.add_event(event)
        skey = (slot_of(event.ts), event.provider)
        slot = slots.get(skey)
        if slot is None:
            slot = slots[skey] = SlotRollup(skey[0], skey[1], Counters())
        slot.counters.add_event(event)
        slot.latency[latency_bucket(event.latency_ms)] += 1
    return daily, slots


def scope_key(event: CostEvent) -> ScopeKey:
    return (
        slot_of(event.ts),
        event.provider,
        event.model,
        event.account or "",
        event.campaign_id or "",
        event.tenant,
    )


def aggregate_scopes(events: Iterable[CostEvent]) -> dict[ScopeKey, SlotRollup]:
    """The scope-rollup increments a batch of (new, distinct) events makes: per scope
    key, its counters and latency histogram (as a ``SlotRollup`` of the key's slot and
    provider)."""
    scopes: dict[ScopeKey, SlotRollup] = {}
    for event in events:
        key = scope_key(event)
        rollup = scopes.get(key)
        if rollup is None:
            rollup = scopes[key] = SlotRollup(key[0], key[1], Counters())
        rollup.counters.add_event(event)
        rollup.latency[latency_bucket(event.latency_ms)] += 1
    return scopes


# Keys a scope rollup can be filtered and grouped by, and the column each one is.
SCOPE_FIELDS: dict[str, str] = {
    "provider": "provider",
    "model": "model",
    "account": "account",
    "campaign": "campaign_id",
    "tenant": "tenant",
}
# What a scope rollup can also be grouped by: its slot, reported as the slot's epoch
# seconds in decimal text (a tenant's own quarter-hour series: costs.tenant_view).
SCOPE_GROUPS: dict[str, str] = {**SCOPE_FIELDS, "slot": "slot"}


_SCOPE_KEY_NAMES = ("slot", *SCOPE_FIELDS)  # the order of a ScopeKey


def scope_matches(where: Mapping[str, str] | None) -> Callable[[ScopeKey], bool]:
    """Whether a scope key has the ``where`` values (SCOPE_FIELDS keys): the one filter
    ``group_scopes`` and ``group_scope_slots`` (DynamoDB's scope reads) apply."""
    wanted = [(_SCOPE_KEY_NAMES.index(key), value) for key, value in (where or {}).items()]
    return lambda key: all(key[i] == value for i, value in wanted)


def group_scopes(
    rows: Iterable[tuple[ScopeKey, Counters]],
    since: datetime,
    until: datetime,
    group_by: Sequence[str],
    where: Mapping[str, str] | None = None,
) -> list[tuple[tuple[str | None, ...], Counters]]:
    """Scope rollups in ``[since, until)`` matching ``where``, summed by ``group_by``.

    The reference answer of ``Ledger.scope_groups``; absent account/campaign are None.
    """
    lo, hi = math.ceil(since.timestamp()), math.ceil(until.timestamp())
    names = _SCOPE_KEY_NAMES
    matches = scope_matches(where)
    positions = [names.index(key) for key in group_by]
    groups: dict[tuple[str | None, ...], Counters] = {}
    for key, counters in rows:
        if not lo <= key[0] < hi or not matches(key):
            continue
        # Absent account/campaign are stored as "" and reported as None.
        group: tuple[str | None, ...] = tuple(
            str(key[i]) if i == 0 else str(key[i]) or None if names[i] in ("account", "campaign")
            else str(key[i])
            for i in positions
        )  # fmt: skip
        total = groups.get(group)
        if total is None:
            total = groups[group] = Counters()
        total.add(counters)
    return list(groups.items())


# Grouping keys of a breakdown and the DailyRollup attribute each one reads.
GROUP_FIELDS: dict[str, str] = {
    "provider": "provider",
    "model": "model",
    "account": "account",
    "campaign": "campaign_id",
    "tenant": "tenant",
    "day": "day",
    "response_model": "response_model",
}


def group_daily(
    rows: Iterable[DailyRollup], group_by: Sequence[str]
) -> list[tuple[tuple[str | None, ...], Counters]]:
    """Sum daily rollups by the named GROUP_FIELDS keys (days as ISO strings)."""
    attrs = [GROUP_FIELDS[key] for key in group_by]
    groups: dict[tuple[str | None, ...], Counters] = {}
    for row in rows:
        group = tuple(
            value.isoformat() if isinstance(value := getattr(row, attr), date) else value
            for attr in attrs
        )
        counters = groups.get(group)
        if counters is None:
            counters = groups[group] = Counters()
        counters.add(row.counters)
    return list(groups.items())


def group_slots(
    slots: Iterable[SlotRollup], ranges: Sequence[tuple[datetime, datetime]]
) -> list[dict[str, SlotRollup]]:
    """For each ``[start, end)`` range, the slots in it summed per provider.

    Each result's ``slot`` is the range's start (epoch seconds).
    """
    # A slot starts on a whole second: "slot >= start" is "slot >= ceil(start)".
    bounds = [(math.ceil(start.timestamp()), math.ceil(end.timestamp())) for start, end in ranges]
    out: list[dict[str, SlotRollup]] = [{} for _ in bounds]
    for slot in slots:
        for index, (lo, hi) in enumerate(bounds):
            if lo <= slot.slot < hi:
                total = out[index].get(slot.provider)
                if total is None:
                    total = out[index][slot.provider] = SlotRollup(lo, slot.provider, Counters())
                total.counters.add(slot.counters)
                for bucket, count in enumerate(slot.latency):
                    total.latency[bucket] += count
    return out


def group_scope_slots(
    rows: Iterable[tuple[ScopeKey, SlotRollup]],
    ranges: Sequence[tuple[datetime, datetime]],
    where: Mapping[str, str] | None = None,
) -> list[dict[str, SlotRollup]]:
    """Per range, the scope rollups matching ``where`` summed per provider, latency
    histogram included: ``group_slots`` over a scope (the reference answer of
    ``Ledger.scope_slot_groups``)."""
    matches = scope_matches(where)
    return group_slots((rollup for key, rollup in rows if matches(key)), ranges)


def dedupe_batch(events: Sequence[CostEvent]) -> tuple[list[CostEvent], int]:
    """Drop repeats of an attempt_id within one batch (first wins); count them."""
    seen: set[str] = set()
    unique: list[CostEvent] = []
    for event in events:
        if event.attempt_id in seen:
            continue
        seen.add(event.attempt_id)
        unique.append(event)
    return unique, len(events) - len(unique)


def retention_cutoff(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


class Ledger(Protocol):
    """What the core needs from a ledger; SQLite and DynamoDB implement it."""

    retention_days: int

    def record(self, events: Sequence[CostEvent]) -> RecordResult:
        """Store events not yet stored and add them to the rollups, atomically."""
        ...

    def daily(self, since: date, until: date) -> list[DailyRollup]:
        """Daily rollups with ``since <= day < until``."""
        ...

    def daily_groups(
        self, since: date, until: date, group_by: Sequence[str]
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        """Daily rollups with ``since <= day < until`` summed by GROUP_FIELDS keys.

        Same answer as ``group_daily(self.daily(since, until), group_by)``; a backend
        may compute it closer to the data (SQLite does it in SQL).
        """
        ...

    def slots(self, since: datetime, until: datetime) -> list[SlotRollup]:
        """Quarter-hour rollups whose slot starts in ``[since, until)``."""
        ...

    def usage(
        self, since: date, until: date, *, experiment: str | None = None
    ) -> list[UsageRollup]:
        """Usage rollups with ``since <= day < until`` (of one experiment if named)."""
        ...

    def usage_groups(
        self,
        since: date,
        until: date,
        group_by: Sequence[str],
        *,
        experiment: str | None = None,
    ) -> list[UsageRollup]:
        """Usage rollups of ``[since, until)`` summed by USAGE_GROUPS keys.

        Same answer as ``group_usage(self.usage(since, until, experiment=...), group_by)``
        (in some order); a backend may sum closer to the data (SQLite does it in SQL).
        """
        ...

    def slot_groups(
        self, ranges: Sequence[tuple[datetime, datetime]]
    ) -> list[dict[str, SlotRollup]]:
        """Per ``[start, end)`` range, quarter-hour rollups summed by provider.

        Same answer as ``group_slots(self.slots(min start, max end), ranges)``; a backend
        may sum closer to the data (SQLite does it in SQL). Stats and thresholds use it.
        """
        ...

    def slot_costs(self, since: datetime, until: datetime) -> list[SlotCost]:
        """``(slot, provider, cost_nano)`` of each quarter-hour rollup in ``[since, until)``.

        Ordered by slot then provider. The cost series forecasts and anomaly detection
        read: the figures of ``slots()`` without the counters and histogram they do not
        need, so weeks of slots stay cheap to read.
        """
        ...

    def scope_groups(
        self,
        since: datetime,
        until: datetime,
        group_by: Sequence[str],
        where: Mapping[str, str] | None = None,
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        """Scope rollups whose slot starts in ``[since, until)``, filtered by ``where``
        (SCOPE_FIELDS keys to exact values) and summed by ``group_by`` (SCOPE_GROUPS keys:
        SCOPE_FIELDS and ``slot``, the slot's epoch seconds as text).

        Same answer as ``group_scopes`` over every scope rollup; alert rules use it.
        """
        ...

    def scope_slot_groups(
        self,
        ranges: Sequence[tuple[datetime, datetime]],
        where: Mapping[str, str],
    ) -> list[dict[str, SlotRollup]]:
        """Per ``[start, end)`` range, the scope rollups matching ``where`` summed by
        provider, with their latency histograms: ``slot_groups`` of one scope (a tenant's
        stats). ``mismatches`` is not kept per scope and reads 0.

        Same answer as ``group_scope_slots`` over every scope rollup.
        """
        ...

    def events(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[CostEvent]:
        """Raw events with ``since <= ts < until``, oldest first, streamed."""
        ...

    def prune(self, now: datetime) -> None:
        """Delete raw events past retention and rollups past rollup retention."""
        ...

    def check(self) -> None:
        """Raise BackendError unless the ledger is reachable and writable."""
        ...

    def close(self) -> None: ...
