"""Usage rollups and experiment tags: the same contract on every ledger backend."""

from __future__ import annotations

import math
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import (
    LATENCY_BUCKETS,
    OUTPUT_BUCKETS,
    Ledger,
    RecordResult,
    UsageRollup,
    latency_bucket,
    output_bucket,
)
from tests.storage.test_ledger_contract import make_event, noon, wide_days


def _traffic() -> list[CostEvent]:
    events = []
    for n in range(30):
        arm = "control" if n % 2 else "mini"
        events.append(
            make_event(
                f"u-{n}",
                noon(1) + timedelta(seconds=n),
                model="gpt-4o" if arm == "control" else "gpt-4o-mini",
                experiment="exp1",
                arm=arm,
                output_tokens=10 * n,
                cost_nano=1_000 * (n + 1),
                latency_ms=20.0 * n + 1,
                route_reason="fallback:server_error" if n % 5 == 0 else "priority",
            )
        )
    events.append(
        make_event(
            "u-err",
            noon(1),
            model="gpt-4o",
            experiment="exp1",
            arm="control",
            status="error",
            error_kind="content_filter",
            output_tokens=0,
            cost_nano=777,
        )
    )
    events.append(make_event("u-plain", noon(2), cost_nano=5))
    return events


def _merged(rows: list[UsageRollup]) -> dict[tuple[str | None, str | None], UsageRollup]:
    out: dict[tuple[str | None, str | None], UsageRollup] = {}
    for row in rows:
        key = (row.experiment, row.arm)
        if key not in out:
            out[key] = UsageRollup(row.day, row.provider, row.model, None, *key)
        out[key].add(row)
    return out


def test_events_carry_experiment_and_arm(ledger: Ledger) -> None:
    events = _traffic()
    ledger.record(events)
    stored = {e.attempt_id: e for e in ledger.events()}
    assert stored["u-1"].experiment == "exp1" and stored["u-1"].arm == "control"
    assert stored["u-plain"].experiment is None and stored["u-plain"].arm is None
    assert sorted(stored.values(), key=lambda e: e.attempt_id) == sorted(
        events, key=lambda e: e.attempt_id
    )


def test_usage_rollups_hold_the_shape_of_the_traffic(ledger: Ledger) -> None:
    events = _traffic()
    assert ledger.record(events) == RecordResult(stored=len(events))
    merged = _merged(ledger.usage(*wide_days()))
    assert set(merged) == {("exp1", "control"), ("exp1", "mini"), (None, None)}
    for arm in ("control", "mini"):
        mine = [e for e in events if e.arm == arm]
        ok = [e for e in mine if e.status == "ok"]
        got = merged[("exp1", arm)]
        assert got.attempts == len(mine)
        assert got.ok == len(ok)
        assert got.errors == len(mine) - len(ok)
        assert got.cost_nano == sum(e.cost_nano for e in mine)
        assert got.error_cost_nano == sum(e.cost_nano for e in mine if e.status == "error")
        assert got.fallbacks == sum(1 for e in ok if e.route_reason == "fallback:server_error")
        assert got.output_tokens == sum(e.output_tokens for e in ok)
        assert math.isclose(got.cost_sq, sum((e.cost_nano / 1e9) ** 2 for e in ok))
        assert math.isclose(got.latency_sum, sum(e.latency_ms for e in ok))
        assert math.isclose(got.latency_sq, sum(e.latency_ms**2 for e in ok))
        latency = [0] * LATENCY_BUCKETS
        output = [0] * OUTPUT_BUCKETS
        for e in ok:
            latency[latency_bucket(e.latency_ms)] += 1
            output[output_bucket(e.output_tokens)] += 1
        assert got.latency == latency
        assert got.output == output
    assert merged[("exp1", "control")].error_cost_nano == 777


def test_usage_of_one_experiment_and_replays_count_once(ledger: Ledger) -> None:
    events = _traffic()
    ledger.record(events)
    ledger.record(events)
    rows = ledger.usage(*wide_days(), experiment="exp1")
    assert {row.experiment for row in rows} == {"exp1"}
    assert sum(row.attempts for row in rows) == len(events) - 1
    assert ledger.usage(*wide_days(), experiment="other") == []
    day = noon(1).date()
    assert {row.day for row in ledger.usage(day, day + timedelta(days=1))} == {day}


def test_sqlite_upgrade_builds_usage_rollups_from_stored_events(tmp_path: Path) -> None:
    from huntaze_cli.storage.sqlite.ledger import LEDGER_MIGRATIONS, SQLiteLedger

    path = tmp_path / "old.db"
    ledger = SQLiteLedger(path)
    events = [e for e in _traffic() if e.experiment is None] + [
        make_event(f"old-{n}", noon(1), output_tokens=40 + n) for n in range(5)
    ]
    ledger.record(events)
    ledger.close()
    # Back to the schema before usage rollups, as an older huntaze left it.
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE rollup_usage")
    conn.execute("ALTER TABLE events DROP COLUMN experiment")
    conn.execute("ALTER TABLE events DROP COLUMN arm")
    # usage and its backfill, and the route reason key added since
    usage_steps = [name for name, _ in LEDGER_MIGRATIONS[1:3]] + ["ledger_007_usage_route_reason"]
    conn.execute("DELETE FROM _migrations WHERE name IN (?, ?, ?)", usage_steps)
    conn.commit()
    conn.close()

    upgraded = SQLiteLedger(path)
    try:
        rows = upgraded.usage(*wide_days())
        assert sum(row.attempts for row in rows) == len(events)
        assert sum(row.output_tokens for row in rows) == sum(e.output_tokens for e in events)
        assert sorted(upgraded.events(), key=lambda e: e.attempt_id) == sorted(
            events, key=lambda e: e.attempt_id
        )
    finally:
        upgraded.close()


def test_usage_rollups_count_attempts_and_cost_per_route_reason(ledger: Ledger) -> None:
    events = _traffic()
    ledger.record(events)
    rows = ledger.usage_groups(*wide_days(), ["route_reason"])
    got = {row.route_reason: (row.attempts, row.ok, row.cost_nano) for row in rows}
    want: dict[str | None, tuple[int, int, int]] = {}
    for e in events:
        attempts, ok, cost = want.get(e.route_reason, (0, 0, 0))
        want[e.route_reason] = (attempts + 1, ok + (e.status == "ok"), cost + e.cost_nano)
    assert got == want
    assert {"priority", "fallback:server_error"} <= set(got)
    assert {row.route_reason for row in ledger.usage(*wide_days())} == set(want)


def test_sqlite_upgrade_splits_usage_rollups_by_the_kept_events_route_reasons(
    tmp_path: Path,
) -> None:
    """A ledger whose usage rollups had no route reason: the traffic of the raw events
    still kept moves to its reasons; the rest (events pruned) stays, reason unknown."""
    from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
    from huntaze_cli.storage.sqlite.ledger_schema import USAGE_SUMS

    path = tmp_path / "old.db"
    events = _traffic()
    with SQLiteLedger(path) as ledger:
        ledger.record(events)
        before = ledger.usage_groups(*wide_days(), [])
    keys = "day, provider, model, campaign_id, experiment, arm"
    # Back to rollups without the reason, as an older huntaze left them, plus the rollup
    # of a day whose raw events are already pruned.
    conn = sqlite3.connect(path)
    conn.executescript(f"""
        CREATE TABLE old AS SELECT {keys}, {", ".join(f"SUM({c}) AS {c}" for c in USAGE_SUMS)}
            FROM rollup_usage GROUP BY {keys};
        DROP TABLE rollup_usage;
        CREATE TABLE rollup_usage AS SELECT * FROM old;
        DROP TABLE old;
        DELETE FROM _migrations WHERE name = 'ledger_007_usage_route_reason';
    """)  # fmt: skip
    gone = {"attempts": 4, "ok": 4, "cost_nano": 40}
    conn.execute(
        f"INSERT INTO rollup_usage ({keys}, {', '.join(USAGE_SUMS)}) "
        f"VALUES ({', '.join('?' * (6 + len(USAGE_SUMS)))})",
        (noon(0).date().isoformat(), "azure", "gpt-4o", "cmp-gone", "", "",
         *(gone.get(c, 0) for c in USAGE_SUMS)),
    )  # fmt: skip
    conn.commit()
    conn.close()
    with SQLiteLedger(path) as ledger:
        rows = ledger.usage_groups(*wide_days(), ["campaign", "route_reason"])
        [after] = ledger.usage_groups(*wide_days(), [])
        stored = sorted(ledger.events(), key=lambda e: e.attempt_id)
    got = {(row.campaign_id, row.route_reason): row.attempts for row in rows}
    want: dict[tuple[str | None, str | None], int] = {("cmp-gone", None): 4}
    for e in events:
        want[(e.campaign_id, e.route_reason)] = want.get((e.campaign_id, e.route_reason), 0) + 1
    assert got == want
    assert after.attempts == before[0].attempts + 4
    assert after.cost_nano == before[0].cost_nano + 40
    assert after.latency == before[0].latency and after.output == before[0].output
    assert stored == sorted(events, key=lambda e: e.attempt_id)


@pytest.mark.parametrize("tokens", [0, 8, 9, 16384, 10**7])
def test_output_buckets_cover_every_count(tokens: int) -> None:
    assert 0 <= output_bucket(tokens) < OUTPUT_BUCKETS


@pytest.mark.parametrize(
    "group_by",
    [
        [],
        ["arm"],
        ["provider", "model", "campaign"],
        ["day"],
        ["experiment", "arm"],
        ["campaign", "provider", "route_reason"],
    ],
)
def test_usage_groups_match_grouping_the_usage_rollups(ledger: Ledger, group_by: list[str]) -> None:
    from huntaze_cli.storage.ledger import USAGE_GROUPS, group_usage

    ledger.record(_traffic())
    ledger.record([make_event("late", noon(3), provider="openai", cost_nano=9)])

    def keyed(rows: list[UsageRollup]) -> dict[tuple[object, ...], UsageRollup]:
        for row in rows:  # float sums may differ in the last bits by summation order
            row.cost_sq, row.latency_sum, row.latency_sq = (
                round(row.cost_sq, 15), round(row.latency_sum, 6), round(row.latency_sq, 3)
            )  # fmt: skip
        return {tuple(getattr(r, USAGE_GROUPS[k]) for k in group_by): r for r in rows}

    for experiment in (None, "exp1"):
        got = ledger.usage_groups(*wide_days(), group_by, experiment=experiment)
        want = group_usage(ledger.usage(*wide_days(), experiment=experiment), group_by)
        assert keyed(got) == keyed(want)
