"""A tenant's view of the ledger answers what a ledger holding only its events answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.config import Config
from huntaze_cli.costs.reports import breakdown, stats
from huntaze_cli.costs.tenant_view import TenantLedger
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import UsageRollup
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from tests.storage.test_ledger_contract import make_event


def _events(now: datetime) -> list[CostEvent]:
    return [
        make_event(
            f"e-{n}",
            now - timedelta(minutes=41 * n),
            tenant=("agency_a", "agency_b", "agency_a")[n % 3],
            campaign_id=f"cmp-{n % 3}",  # cmp-0 and cmp-2 are agency_a's, cmp-1 agency_b's
            provider=("azure", "openai")[n % 2],
            model=("gpt-4o-mini", "gpt-4o")[n % 5 == 0],
            cost_nano=1_000_003 * (n + 1),
            status=("ok", "error")[n % 7 == 0],
            experiment="exp1" if n % 4 else None,
            arm=("control", "b")[n % 2] if n % 4 else None,
        )
        for n in range(150)  # about four days back
    ]


def test_the_view_is_the_ledger_of_the_tenant_alone(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    events = _events(now)
    mixed = SQLiteLedger(tmp_path / "mixed.db", retention_days=30)
    alone = SQLiteLedger(tmp_path / "alone.db", retention_days=30)
    mixed.record(events)
    alone.record([e for e in events if e.tenant == "agency_a"])
    view = TenantLedger(mixed, "agency_a")
    first, until = (now - timedelta(days=6)).date(), (now + timedelta(days=1)).date()
    start, end = now - timedelta(days=6), now + timedelta(hours=1)
    keys = ["provider", "model", "campaign", "tenant", "day"]
    assert sorted(view.daily_groups(first, until, keys)) == sorted(
        alone.daily_groups(first, until, keys)
    )
    assert view.daily(first, until) == alone.daily(first, until)
    assert view.slot_costs(start, end) == alone.slot_costs(start, end)
    ranges = [(start, end), (now - timedelta(hours=3), now)]
    for got, want in zip(view.slot_groups(ranges), alone.slot_groups(ranges), strict=True):
        assert {p: (s.slot, s.counters, s.latency) for p, s in got.items()} == {
            p: (s.slot, s.counters.__class__(**{**vars_of(s.counters), "mismatches": 0}), s.latency)
            for p, s in want.items()
        }
    for group_by in (["provider", "model", "campaign"], ["day"], ["arm"]):
        got_usage = view.usage_groups(first, until, group_by, experiment="exp1")
        want_usage = alone.usage_groups(first, until, group_by, experiment="exp1")
        assert _usage(got_usage) == _usage(want_usage) and got_usage
    assert list(view.events(start, end)) == list(alone.events(start, end))
    assert view.scope_groups(start, end, ["tenant"], {"tenant": "agency_b"}) == []
    # Reports over the view are the tenant's reports.
    report = breakdown(view, start=start, end=end, group_by=["tenant"])
    assert [row.model_dump()["tenant"] for row in report.rows] == ["agency_a"]
    assert report.total == breakdown(alone, start=start, end=end, group_by=["tenant"]).total
    got_stats = stats(Config(), view, now=now)
    want_stats = stats(Config(), alone, now=now)
    assert got_stats.month_to_date == want_stats.month_to_date
    assert got_stats.today.cost_nano == want_stats.today.cost_nano > 0
    assert got_stats.providers == want_stats.providers
    with pytest.raises(TypeError, match="read-only"):
        view.record(events[:1])
    mixed.close()
    alone.close()


def test_a_tenants_stats_have_its_own_latency_percentiles(ledger: Any, tmp_path: Path) -> None:
    """p50/p95 per provider for a tenant are its own attempts', from the same histogram
    and percentile as the global stats: equal to the stats of a ledger holding only its
    events, on either backend, and unlike the platform's."""
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        make_event(
            f"lat-{n}",
            now - timedelta(minutes=3 * n + 1),
            tenant=("agency_a", "agency_b")[n % 2],
            provider=("azure", "openai")[n % 4 >= 2],
            # agency_a is served fast, agency_b slowly.
            latency_ms=(80.0 + n % 9 * 10) if n % 2 == 0 else (4000.0 + n % 7 * 500),
        )
        for n in range(60)
    ]
    ledger.record(events)
    with SQLiteLedger(tmp_path / "alone.db", retention_days=30) as alone:
        alone.record([e for e in events if e.tenant == "agency_a"])
        want = stats(Config(), alone, now=now)
    everyone = stats(Config(), ledger, now=now)
    mine = stats(Config(), TenantLedger(ledger, "agency_a"), now=now)
    assert mine.providers == want.providers
    assert set(mine.providers) == {"azure", "openai"}
    for provider, figures in mine.providers.items():
        assert figures.latency_p50_ms is not None and figures.latency_p95_ms is not None
        assert figures.latency_p95_ms <= 200
        assert everyone.providers[provider].latency_p95_ms > 1000


def _usage(rows: list[UsageRollup]) -> list[tuple[object, ...]]:
    # Float sums (squares of costs and latencies) may differ in their last bits by the
    # order they were added in; every other figure is exact.
    return sorted(
        tuple(round(v, 9) if isinstance(v, float) else v for v in vars_of(row).values())
        for row in rows
    )


def vars_of(counters: object) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    assert is_dataclass(counters) and not isinstance(counters, type)
    return asdict(counters)
