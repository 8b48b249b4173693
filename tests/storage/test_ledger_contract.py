"""The contract every Ledger keeps; each test runs once per backend (see conftest.py).

Only the ``Ledger`` protocol is used here, so SQLite and DynamoDB cannot drift apart.
Timestamps are a few days old at most, well inside the 30-day raw retention.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huntaze_cli.models import CostEvent
from huntaze_cli.money import usd_to_nano
from huntaze_cli.storage.ledger import (
    LATENCY_BUCKETS,
    SLOT_SECONDS,
    Counters,
    DailyRollup,
    Ledger,
    RecordResult,
    SlotRollup,
    group_daily,
    group_slots,
    latency_bucket,
    slot_of,
    slot_start,
)

ONE_US = timedelta(microseconds=1)
SLOT = timedelta(seconds=SLOT_SECONDS)


def make_event(attempt_id: str, ts: datetime, **overrides: Any) -> CostEvent:
    data: dict[str, Any] = {
        "attempt_id": attempt_id,
        "request_id": f"req-{attempt_id}",
        "ts": ts,
        "provider": "azure",
        "deployment": "gpt4o-mini-prod",
        "model": "gpt-4o-mini",
        "input_tokens": 120,
        "cached_input_tokens": 20,
        "output_tokens": 60,
        "cost_nano": 45_123,
        "priced": True,
        "latency_ms": 120.5,
        "status": "ok",
        "error_kind": None,
        "route_reason": "priority",
        "campaign_id": "cmp-1",
        "account": "creator_1",
        "tenant": "agency_a",
    }
    data.update(overrides)
    return CostEvent.model_validate(data)


def noon(days_ago: int) -> datetime:
    day = datetime.now(UTC).date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def expected_counters(events: Iterable[CostEvent]) -> Counters:
    """Sums computed here, independently of the ledger helpers."""
    total = Counters()
    for e in events:
        total.requests += 1
        total.errors += 1 if e.status == "error" else 0
        total.unpriced += 0 if e.priced else 1
        total.input_tokens += e.input_tokens
        total.cached_input_tokens += e.cached_input_tokens
        total.output_tokens += e.output_tokens
        total.cost_nano += e.cost_nano
    return total


def total(rollups: Iterable[DailyRollup | SlotRollup]) -> Counters:
    result = Counters()
    for rollup in rollups:
        result.add(rollup.counters)
    return result


def daily_rows(ledger: Ledger, since: date, until: date) -> list[tuple[Any, ...]]:
    """Daily rollups as sortable, comparable tuples."""
    rows = [
        (r.day, r.provider, r.model, r.account or "", r.campaign_id or "", r.tenant, r.counters)
        for r in ledger.daily(since, until)
    ]
    return sorted(rows, key=lambda row: row[:6])


def slot_rows(ledger: Ledger, since: datetime, until: datetime) -> list[tuple[Any, ...]]:
    rows = [(s.slot, s.provider, s.counters, list(s.latency)) for s in ledger.slots(since, until)]
    return sorted(rows, key=lambda row: row[:2])


def wide_days() -> tuple[date, date]:
    today = datetime.now(UTC).date()
    return today - timedelta(days=10), today + timedelta(days=2)


def wide_times() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=10), now + timedelta(days=2)


def snapshot(ledger: Ledger) -> tuple[Any, ...]:
    events = sorted(ledger.events(), key=lambda e: e.attempt_id)
    return events, daily_rows(ledger, *wide_days()), slot_rows(ledger, *wide_times())


# --- recording and idempotency ---------------------------------------------------------


def test_recorded_events_read_back_exactly(ledger: Ledger) -> None:
    events = [
        make_event("a-1", noon(1)),
        make_event("a-2", noon(1) + timedelta(microseconds=123_457), deployment=None),
        make_event(
            "a-3",
            noon(2),
            status="error",
            error_kind="rate_limited",
            output_tokens=0,
            cost_nano=0,
            latency_ms=30_000.25,
        ),
        make_event("a-4", noon(3), priced=False, cost_nano=0, route_reason=None),
        make_event("a-5", noon(1), cost_nano=usd_to_nano("1234.567890123"), tenant="default"),
    ]
    assert ledger.record(events) == RecordResult(stored=5)
    assert sorted(ledger.events(), key=lambda e: e.attempt_id) == events


def test_empty_batch_changes_nothing(ledger: Ledger) -> None:
    assert ledger.record([]) == RecordResult()
    assert list(ledger.events()) == []
    assert ledger.daily(*wide_days()) == []
    assert ledger.slots(*wide_times()) == []


def test_same_attempt_twice_in_one_batch_is_stored_once(ledger: Ledger) -> None:
    first = make_event("dup", noon(1), cost_nano=1_000)
    again = make_event("dup", noon(2), cost_nano=9_999, provider="openai")
    other = make_event("other", noon(1), cost_nano=7)

    assert ledger.record([first, again, other]) == RecordResult(stored=2, duplicates=1)

    assert sorted(ledger.events(), key=lambda e: e.attempt_id) == [first, other]
    assert total(ledger.daily(*wide_days())) == expected_counters([first, other])
    assert total(ledger.slots(*wide_times())) == expected_counters([first, other])
    assert {r.provider for r in ledger.daily(*wide_days())} == {"azure"}


def test_replaying_batches_changes_nothing(ledger: Ledger) -> None:
    batch = [make_event(f"r-{n}", noon(n % 3) - timedelta(minutes=n)) for n in range(12)]
    assert ledger.record(batch) == RecordResult(stored=12)
    before = snapshot(ledger)

    assert ledger.record(batch) == RecordResult(duplicates=12)
    # A replay that disagrees with what is stored loses too: first write wins.
    altered = [e.model_copy(update={"cost_nano": 1, "provider": "openai"}) for e in batch]
    assert ledger.record(altered) == RecordResult(duplicates=12)

    assert snapshot(ledger) == before


def test_partly_new_batch_stores_only_the_new_events(ledger: Ledger) -> None:
    old = [make_event(f"p-{n}", noon(1)) for n in range(5)]
    ledger.record(old)
    new = [make_event(f"p-{n}", noon(1), cost_nano=10**6) for n in range(5, 8)]

    assert ledger.record([*old[:3], *new, new[0]]) == RecordResult(stored=3, duplicates=4)

    assert len(list(ledger.events())) == 8
    assert total(ledger.daily(*wide_days())) == expected_counters([*old, *new])


def test_events_past_retention_are_refused(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    too_old = make_event("old", now - timedelta(days=ledger.retention_days, hours=1))
    fresh = make_event("fresh", noon(1))

    assert ledger.record([too_old, fresh]) == RecordResult(stored=1, expired=1)
    assert ledger.record([too_old]) == RecordResult(expired=1)

    assert [e.attempt_id for e in ledger.events()] == ["fresh"]
    assert total(ledger.daily(too_old.ts.date(), now.date() + timedelta(days=1))).requests == 1
    assert total(ledger.slots(too_old.ts - SLOT, now + SLOT)).requests == 1


# --- rollups -------------------------------------------------------------------------------


def test_rollup_sums_equal_event_sums_to_the_nano_dollar(ledger: Ledger) -> None:
    costs = ["0.000000001", "0.999999999", "123.456789012", "0", "0.000045123", "7"]
    events = [
        make_event(
            f"s-{n}",
            noon(n % 3) + timedelta(minutes=7 * n),
            cost_nano=usd_to_nano(cost),
            provider=("azure", "openai")[n % 2],
            model=("gpt-4o-mini", "gpt-4o")[n % 2],
            status="error" if n == 3 else "ok",
            priced=n != 4,
            input_tokens=n * 1_000_003,
            cached_input_tokens=n,
            output_tokens=n * 7,
        )
        for n, cost in enumerate(costs * 3)
    ]
    ledger.record(events)

    want = expected_counters(events)
    assert total(ledger.daily(*wide_days())) == want
    assert total(ledger.slots(*wide_times())) == want
    assert want.cost_nano == sum(usd_to_nano(c) for c in costs) * 3

    # Each daily key holds exactly its own events.
    rows = ledger.daily(*wide_days())
    assert len(rows) == len({(e.ts.date(), e.provider, e.model) for e in events})
    for row in rows:
        key = (row.day, row.provider, row.model)
        mine = [e for e in events if (e.ts.date(), e.provider, e.model) == key]
        assert row.counters == expected_counters(mine)


def test_daily_range_is_half_open_in_utc_days(ledger: Ledger) -> None:
    d0 = datetime.now(UTC).date() - timedelta(days=4)
    d1, d2, d3 = (d0 + timedelta(days=n) for n in (1, 2, 3))

    def at(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=UTC)

    ledger.record(
        [
            make_event("d0-last", at(d1) - ONE_US),
            make_event("d1-first", at(d1)),
            make_event("d1-last", at(d2) - ONE_US),
            make_event("d2-first", at(d2)),
        ]
    )

    assert {r.day: r.counters.requests for r in ledger.daily(d0, d2)} == {d0: 1, d1: 2}
    assert {r.day: r.counters.requests for r in ledger.daily(d1, d3)} == {d1: 2, d2: 1}
    assert ledger.daily(d1, d1) == []
    assert ledger.daily(d3, d3 + timedelta(days=5)) == []
    assert all(
        isinstance(r.day, date) and not isinstance(r.day, datetime) for r in ledger.daily(d0, d3)
    )


def test_slot_range_is_half_open_on_slot_starts(ledger: Ledger) -> None:
    s0 = slot_of(datetime.now(UTC) - timedelta(days=1))
    start = slot_start(s0)
    ledger.record(
        [
            make_event("s0-a", start),
            make_event("s0-b", start + SLOT - ONE_US),
            make_event("s1", start + SLOT),
            make_event("s2", start + 2 * SLOT, provider="openai"),
        ]
    )

    got = {(s.slot, s.provider): s.counters.requests for s in ledger.slots(start, start + 2 * SLOT)}
    assert got == {(s0, "azure"): 2, (s0 + SLOT_SECONDS, "azure"): 1}
    # A slot that starts before ``since`` is out, even if it ends after it.
    later = ledger.slots(start + ONE_US, start + 3 * SLOT)
    assert {(s.slot, s.provider) for s in later} == {
        (s0 + SLOT_SECONDS, "azure"),
        (s0 + 2 * SLOT_SECONDS, "openai"),
    }
    assert ledger.slots(start, start) == []
    assert [s.slot for s in ledger.slots(start + 2 * SLOT, start + 2 * SLOT + ONE_US)] == [
        s0 + 2 * SLOT_SECONDS
    ]


def test_absent_account_and_campaign_round_trip_as_none(ledger: Ledger) -> None:
    ts = noon(1)
    events = [
        make_event("n-1", ts, account=None, campaign_id=None),
        make_event("n-2", ts, account=None, campaign_id=None, cost_nano=5),
        make_event("n-3", ts, account="creator_9", campaign_id=None),
        make_event("n-4", ts, account="creator_9", campaign_id="cmp-9"),
    ]
    ledger.record(events)

    got = {(r.account, r.campaign_id): r.counters.requests for r in ledger.daily(*wide_days())}
    assert got == {(None, None): 2, ("creator_9", None): 1, ("creator_9", "cmp-9"): 1}
    stored = {e.attempt_id: (e.account, e.campaign_id) for e in ledger.events()}
    assert stored == {e.attempt_id: (e.account, e.campaign_id) for e in events}


def test_daily_groups_match_grouping_the_daily_rollups(ledger: Ledger) -> None:
    events = [
        make_event(
            f"g-{n}",
            noon(n % 3),
            provider=("azure", "openai")[n % 2],
            model=("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")[n % 3],
            account=(None, "creator_1", "creator_2", "creator_3")[n % 4],
            campaign_id=(None, "cmp-1")[n % 2],
            tenant=("agency_a", "agency_b")[n % 5 == 0],
            cost_nano=n * 1_000_001,
        )
        for n in range(40)
    ]
    ledger.record(events)
    since, until = wide_days()
    for group_by in (
        ["provider"],
        ["provider", "model"],
        ["account", "campaign"],
        ["tenant", "day"],
        ["day", "provider", "model", "account", "campaign", "tenant"],
        [],
    ):
        got = dict(ledger.daily_groups(since, until, group_by))
        assert got == dict(group_daily(ledger.daily(since, until), group_by)), group_by
    assert dict(ledger.daily_groups(since, until, [])) == {(): expected_counters(events)}
    assert ledger.daily_groups(until, until + timedelta(days=3), ["provider"]) == []


def test_scope_groups_filter_and_sum_exactly_in_quarter_hours(ledger: Ledger) -> None:
    """Scope rollups: any filter and grouping, quarter-hour exact (a +05:45 zone's day)."""
    kathmandu = ZoneInfo("Asia/Kathmandu")
    local = datetime.now(kathmandu).date() - timedelta(days=2)
    day_start = datetime(local.year, local.month, local.day, tzinfo=kathmandu).astimezone(UTC)
    day_end = day_start + timedelta(days=1)
    events = [
        make_event(
            f"sc-{n}",
            day_start + timedelta(minutes=37 * n - 120),  # some before, some after the day
            provider=("azure", "openai")[n % 2],
            model=("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")[n % 3],
            account=(None, "creator_1", "creator_2", "creator_3")[n % 4],
            campaign_id=(None, "cmp-1")[n % 2],
            tenant=("agency_a", "agency_b")[n % 5 == 0],
            cost_nano=n * 1_000_003,
            status=("ok", "error")[n % 7 == 0],
        )
        for n in range(60)
    ]
    ledger.record(events)
    inside = [e for e in events if day_start <= e.ts < day_end]
    assert 0 < len(inside) < len(events)

    def expect(where: dict[str, str], group_by: list[str]) -> dict[Any, Counters]:
        field = {"campaign": "campaign_id"}
        out: dict[Any, list[CostEvent]] = {}
        for e in inside:
            if all(getattr(e, field.get(k, k)) == v for k, v in where.items()):
                out.setdefault(tuple(getattr(e, field.get(k, k)) for k in group_by), []).append(e)
        return {key: expected_counters(group) for key, group in out.items()}

    for where, group_by in (
        ({}, []),
        ({}, ["tenant"]),
        ({"tenant": "agency_a"}, ["account", "model"]),
        ({"account": "creator_1", "provider": "azure"}, []),
        ({"campaign": "cmp-1"}, ["campaign", "provider"]),
        ({}, ["provider", "model", "account", "campaign", "tenant"]),
        ({"model": "nope"}, ["provider"]),
    ):
        got = dict(ledger.scope_groups(day_start, day_end, group_by, where=where))
        assert got == expect(where, group_by), (where, group_by)
    assert ledger.scope_groups(day_end + timedelta(days=5), day_end + timedelta(days=6), []) == []
    # By slot too (a tenant's own quarter-hour series): the slot's epoch seconds as text.
    by_slot: dict[Any, list[CostEvent]] = {}
    for e in inside:
        if e.tenant == "agency_a":
            by_slot.setdefault((str(slot_of(e.ts)), e.provider), []).append(e)
    got = dict(
        ledger.scope_groups(day_start, day_end, ["slot", "provider"], {"tenant": "agency_a"})
    )
    assert got == {key: expected_counters(group) for key, group in by_slot.items()}


def test_slot_groups_match_grouping_the_slot_rollups(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    events = [
        make_event(
            f"s-{n}",
            now - timedelta(minutes=37 * n),
            provider=("azure", "openai", "simulated")[n % 3],
            latency_ms=float(n * 13 % 4000),
            cost_nano=n * 999_983,
            status="error" if n % 6 == 0 else "ok",
        )
        for n in range(60)
    ]
    ledger.record(events)
    ranges = [
        (now - timedelta(hours=1), now + timedelta(minutes=1)),
        (now - timedelta(hours=10), now - timedelta(hours=2)),
        (now - timedelta(days=3), now + timedelta(days=1)),
        (now + timedelta(days=1), now + timedelta(days=2)),  # empty
    ]
    got = ledger.slot_groups(ranges)
    since, until = wide_times()
    assert got == group_slots(ledger.slots(since, until), ranges)
    everything = got[2]
    assert sum(s.counters.cost_nano for s in everything.values()) == sum(
        e.cost_nano for e in events
    )
    assert got[3] == {}


def test_scope_slot_groups_are_one_scopes_slot_groups_with_latency(ledger: Ledger) -> None:
    """A tenant's quarter-hour figures per provider, its latency histogram included, are
    what the slot rollups would hold if only its events had been recorded."""
    now = datetime.now(UTC)
    events = [
        make_event(
            f"ss-{n}",
            now - timedelta(minutes=29 * n),
            provider=("azure", "openai")[n % 2],
            tenant=("agency_a", "agency_b", "agency_a")[n % 3],
            account=(None, "creator_1")[n % 2],
            latency_ms=float(n * 97 % 9000) + 0.5,
            cost_nano=n * 1_000_003,
            status="error" if n % 5 == 0 else "ok",
        )
        for n in range(80)
    ]
    ledger.record(events)
    ranges = [
        (now - timedelta(hours=1), now + timedelta(minutes=1)),
        (now - timedelta(hours=20), now - timedelta(hours=2)),
        (now - timedelta(days=3), now + timedelta(days=1)),
        (now + timedelta(days=1), now + timedelta(days=2)),  # empty
    ]
    for where in ({"tenant": "agency_a"}, {"tenant": "agency_b", "account": "creator_1"}):
        got = ledger.scope_slot_groups(ranges, where)
        for (start, end), groups in zip(ranges, got, strict=True):
            want: dict[str, SlotRollup] = {}
            lo, hi = math.ceil(start.timestamp()), math.ceil(end.timestamp())
            for e in events:  # whole quarter-hours: those starting in the range
                if lo <= slot_of(e.ts) < hi and all(getattr(e, k) == v for k, v in where.items()):
                    slot = want.setdefault(e.provider, SlotRollup(lo, e.provider, Counters()))
                    slot.counters.add(expected_counters([e]))
                    slot.latency[latency_bucket(e.latency_ms)] += 1
            assert groups == want, (where, start, end)
        assert got[2] and got[3] == {}
    assert ledger.scope_slot_groups(ranges, {"tenant": "nobody"}) == [{}, {}, {}, {}]


def test_slot_costs_are_the_slot_rollups_costs(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    events = [
        make_event(
            f"c-{n}",
            now - timedelta(minutes=41 * n),
            provider=("azure", "openai")[n % 2],
            cost_nano=n * 1_000_003,
        )
        for n in range(80)
    ]
    ledger.record(events)
    since, until = wide_times()
    want = [(s.slot, s.provider, s.counters.cost_nano) for s in ledger.slots(since, until)]
    assert ledger.slot_costs(since, until) == want
    assert sum(cost for _, _, cost in want) == sum(e.cost_nano for e in events)
    # Half-open on slot starts, like slots().
    start = slot_start(slot_of(now - timedelta(hours=5)))
    inside = [row for row in want if start.timestamp() <= row[0] < (start + 4 * SLOT).timestamp()]
    assert ledger.slot_costs(start, start + 4 * SLOT) == inside
    assert ledger.slot_costs(start + ONE_US, start + ONE_US) == []


def test_latency_histogram_counts_each_event_in_its_bucket(ledger: Ledger) -> None:
    start = slot_start(slot_of(datetime.now(UTC) - timedelta(hours=6)))
    latencies = [0.0, 5.0, 5.0001, 10.0, 250.0, 60_000.0, 60_000.5, 10_000_000.0]
    events = [
        make_event(f"l-{n}", start + timedelta(seconds=n), latency_ms=ms)
        for n, ms in enumerate(latencies)
    ]
    events.append(make_event("l-openai", start, provider="openai", latency_ms=42.0))
    ledger.record(events)

    by_provider = {s.provider: s for s in ledger.slots(start, start + SLOT)}
    azure = by_provider["azure"].latency
    assert len(azure) == LATENCY_BUCKETS
    # Bounds are inclusive upper limits; the last bucket is open-ended.
    assert azure[0] == 2  # 0 and 5 ms
    assert azure[1] == 2  # 5.0001 and 10 ms
    assert azure[-1] == 2  # past 60 s
    expected = [0] * LATENCY_BUCKETS
    for ms in latencies:
        expected[latency_bucket(ms)] += 1
    assert azure == expected
    assert sum(by_provider["openai"].latency) == 1
    assert by_provider["openai"].latency[latency_bucket(42.0)] == 1


# --- raw events --------------------------------------------------------------------------


def test_events_stream_oldest_first_with_half_open_filters(ledger: Ledger) -> None:
    base = noon(2)
    times = [base + timedelta(minutes=37 * n, microseconds=n) for n in range(10)]
    events = [make_event(f"e-{n}", ts) for n, ts in enumerate(times)]
    ledger.record(events[5:][::-1])
    ledger.record(events[:5][::-1])

    def ids(**bounds: datetime) -> list[str]:
        return [e.attempt_id for e in ledger.events(**bounds)]

    assert ids() == [f"e-{n}" for n in range(10)]
    assert ids(since=times[3]) == [f"e-{n}" for n in range(3, 10)]
    assert ids(until=times[3]) == ["e-0", "e-1", "e-2"]
    assert ids(since=times[3], until=times[6]) == ["e-3", "e-4", "e-5"]
    assert ids(since=times[3] + ONE_US, until=times[6] + ONE_US) == ["e-4", "e-5", "e-6"]
    assert ids(since=times[6], until=times[3]) == []
    assert ids(since=times[9] + ONE_US) == []
    # Another time zone names the same instants.
    tokyo = ZoneInfo("Asia/Tokyo")
    assert ids(since=times[3].astimezone(tokyo), until=times[5].astimezone(tokyo)) == [
        "e-3",
        "e-4",
    ]


def test_events_with_the_same_timestamp_are_all_returned(ledger: Ledger) -> None:
    ts = noon(1)
    ledger.record([make_event(f"t-{n}", ts) for n in range(5)])
    ledger.record([make_event("before", ts - ONE_US), make_event("after", ts + ONE_US)])

    got = [e.attempt_id for e in ledger.events()]
    assert got[0] == "before" and got[-1] == "after"
    assert sorted(got[1:-1]) == [f"t-{n}" for n in range(5)]
    assert sorted(e.attempt_id for e in ledger.events(since=ts, until=ts + ONE_US)) == [
        f"t-{n}" for n in range(5)
    ]


def test_prune_removes_old_raw_events_but_keeps_rollups(ledger: Ledger) -> None:
    old = make_event("old", noon(3))
    new = make_event("new", datetime.now(UTC) - timedelta(hours=1))
    ledger.record([old, new])
    days, times = wide_days(), wide_times()

    ledger.prune(old.ts + timedelta(days=ledger.retention_days, hours=1))

    assert [e.attempt_id for e in ledger.events()] == ["new"]
    assert total(ledger.daily(*days)) == expected_counters([old, new])
    assert total(ledger.slots(*times)) == expected_counters([old, new])

    # Far enough ahead, the rollups go too.
    ledger.prune(datetime.now(UTC) + timedelta(days=1000))
    assert list(ledger.events()) == []
    assert ledger.daily(*days) == []
    assert ledger.slots(*times) == []


def test_prune_keeps_everything_within_retention(ledger: Ledger) -> None:
    events = [make_event(f"k-{n}", noon(n)) for n in range(4)]
    ledger.record(events)
    before = snapshot(ledger)
    ledger.prune(datetime.now(UTC))
    assert snapshot(ledger) == before


# --- health -----------------------------------------------------------------------


def test_check_passes_on_a_working_ledger(ledger: Ledger) -> None:
    ledger.check()
    ledger.record([make_event("c-1", noon(0))])
    ledger.check()
    assert [e.attempt_id for e in ledger.events()] == ["c-1"]


# --- property: rollups always add up -------------------------------------------------------

event_specs = st.lists(
    st.tuples(
        st.integers(0, 11),  # attempt index: a small range, so ids repeat often
        st.integers(0, 3 * 86_400 * 10**6),  # microseconds after the base time
        st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False, allow_infinity=False),
        st.sampled_from(["ok", "error"]),
        st.sampled_from([None, "creator_1", "creator_2"]),
        st.floats(min_value=0, max_value=100_000, allow_nan=False),
        st.sampled_from(["gpt-4o-mini", "gpt-4o"]),
    ),
    max_size=12,
)
batch_cuts = st.lists(st.integers(0, 12), max_size=3)


def test_rollups_always_add_up_to_the_distinct_events(
    ledger: Ledger, request: pytest.FixtureRequest
) -> None:
    """For any events (random costs to 9 decimals, repeated ids, any batching), the daily
    and slot rollups sum exactly to the first-written copy of each attempt."""
    # moto copies the whole table on every transaction, so an emulated DynamoDB example
    # costs about a hundred SQLite ones; fewer examples keep the suite fast there.
    examples = 50 if request.node.callspec.params.get("ledger") == "sqlite" else 10

    @settings(max_examples=examples, deadline=None)
    @given(specs=event_specs, cuts=batch_cuts)
    def check(specs: list[tuple[Any, ...]], cuts: list[int]) -> None:
        # The ledger outlives one example: a fresh provider and tenant per example keep
        # this example's rollups apart from earlier ones.
        tag = uuid.uuid4().hex[:12]
        base = datetime.now(UTC) - timedelta(days=3, hours=1)
        events = [
            make_event(
                f"{tag}-{index}",
                base + timedelta(microseconds=offset),
                provider=f"p-{tag}",
                tenant=tag,
                cost_nano=usd_to_nano(Decimal(cost)),
                status=status,
                account=account,
                latency_ms=latency,
                model=model,
            )
            for index, offset, cost, status, account, latency, model in specs
        ]
        distinct: dict[str, CostEvent] = {}
        for event in events:
            distinct.setdefault(event.attempt_id, event)  # the first write wins

        result = RecordResult()
        for lo, hi in itertools.pairwise([0, *sorted(cuts), len(events)]):
            result.add(ledger.record(events[lo:hi]))

        duplicates = len(events) - len(distinct)
        assert result == RecordResult(stored=len(distinct), duplicates=duplicates)
        want = expected_counters(distinct.values())
        days = ledger.daily(base.date(), base.date() + timedelta(days=5))
        daily = [r for r in days if r.tenant == tag]
        slots = [
            s
            for s in ledger.slots(slot_start(slot_of(base)), base + timedelta(days=4))
            if s.provider == f"p-{tag}"
        ]
        assert total(daily) == want
        assert total(slots) == want
        scoped = ledger.scope_groups(
            base - timedelta(hours=1), base + timedelta(days=4), [], where={"tenant": tag}
        )
        assert dict(scoped) == ({(): want} if distinct else {})
        assert sum(r.counters.cost_nano for r in daily) == sum(
            e.cost_nano for e in distinct.values()
        )
        assert sum(sum(s.latency) for s in slots) == len(distinct)

    check()


# --- what served each call ------------------------------------------------------------------


def test_response_model_is_stored_grouped_and_mismatches_counted(ledger: Ledger) -> None:
    at = noon(0)
    events = [
        make_event("rm-1", at, model="gpt-4o", response_model="gpt-4o-2024-05-13"),
        make_event("rm-2", at, model="gpt-4o", response_model="gpt-4o-mini-2024-07-18"),
        make_event("rm-3", at, model="gpt-4o", response_model="gpt-4o-mini-2024-07-18"),
        make_event("rm-4", at, model="gpt-4o", status="error", cost_nano=0),  # none served
    ]
    ledger.record(events)
    assert {e.attempt_id: e for e in ledger.events()} == {e.attempt_id: e for e in events}
    day = at.date()
    groups = dict(ledger.daily_groups(day, day + timedelta(days=1), ["response_model"]))
    assert {key: c.requests for key, c in groups.items()} == {
        ("gpt-4o-2024-05-13",): 1,
        ("gpt-4o-mini-2024-07-18",): 2,
        (None,): 1,
    }
    [slots] = ledger.slot_groups([(at - timedelta(hours=1), at + timedelta(hours=1))])
    assert slots["azure"].counters.mismatches == 2
    rollups = ledger.daily(day, day + timedelta(days=1))
    assert {r.response_model for r in rollups} == {
        "gpt-4o-2024-05-13",
        "gpt-4o-mini-2024-07-18",
        None,
    }
