"""Spike detection on generated series (no ledger): huntaze_cli.costs.anomalies."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from huntaze_cli.costs import anomalies as an

DAY_SHAPE = np.array([0.2] * 7 + [1.0] * 12 + [0.6] * 5)  # quiet nights, busy days


def hourly(days: int, *, noise: float = 0.1, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.tile(DAY_SHAPE, days) * 10.0
    return y * rng.lognormal(0.0, noise, len(y))


def hourly_spikes(y: np.ndarray, start: int) -> list[an.Spike]:
    return an.spikes(y, period=24, lookback=14 * 24, start=start, min_history=3 * 24)


def test_a_spike_is_flagged_and_the_day_after_is_not() -> None:
    daily = np.full(40, 50.0) + np.random.default_rng(3).normal(0, 2, 40)
    daily[30] *= 3
    found = an.spikes(daily, period=7, lookback=28, start=20, min_history=7)
    assert [s.index for s in found] == [30]
    spike = found[0]
    assert spike.expected == np.median(daily[2:30][(30 - np.arange(2, 30)) % 7 == 0])
    assert spike.observed == daily[30] and spike.severity == "high" and spike.score > 10


def test_a_three_fold_hour_is_flagged_among_weeks_of_hours() -> None:
    y = hourly(21)
    at = 20 * 24 + 10  # a busy hour on the last day
    y[at] *= 3
    found = hourly_spikes(y, start=14 * 24)
    assert [s.index for s in found] == [at]
    assert found[0].severity == "high"


def test_a_spike_still_running_is_flagged_on_its_spend_so_far() -> None:
    y = hourly(10)
    y[-1] = y[-1 - 24] * 2.5  # the running hour has already spent 2.5x a usual hour
    found = hourly_spikes(y, start=len(y) - 1)
    assert [s.index for s in found] == [len(y) - 1]


def test_earlier_spikes_do_not_hide_later_ones() -> None:
    y = hourly(21)
    spikes_at = [d * 24 + 12 for d in range(3, 21, 3)]  # every third day at noon
    for at in spikes_at:
        y[at] *= 3
    found = hourly_spikes(y, start=3 * 24)
    assert [s.index for s in found] == spikes_at


def test_quiet_hours_and_drops_are_not_anomalies() -> None:
    y = hourly(10)
    y[-5] = 0.0  # an outage
    assert hourly_spikes(y, start=3 * 24) == []


def test_nothing_is_judged_without_enough_history() -> None:
    y = hourly(2)
    y[-1] *= 10
    assert hourly_spikes(y, start=0) == []


@settings(max_examples=30, deadline=None)
@given(
    level=st.floats(min_value=0.01, max_value=1000),
    days=st.integers(min_value=4, max_value=21),
)
def test_a_steady_series_has_no_anomalies(level: float, days: int) -> None:
    y = np.full(days * 24, level)
    assert an.spikes(y, period=24, lookback=336, start=0, min_history=72) == []


def test_severity_grows_with_the_ratio() -> None:
    assert an.severity(16, 10, 5) == "low"
    assert an.severity(21, 10, 5) == "medium"
    assert an.severity(31, 10, 5) == "high"
    assert an.severity(1, 0, 5) == "high"


def test_steady_growth_is_not_a_stream_of_spikes() -> None:
    days = 42
    growth = np.repeat(1 + 0.015 * np.arange(days), 24)  # +1.5 % a day, +85 % in all
    y = hourly(days) * growth
    assert an.hourly_spikes(y, start=28 * 24) == []
    y[40 * 24 + 11] *= 3
    assert [s.index for s in an.hourly_spikes(y, start=28 * 24)] == [40 * 24 + 11]


def test_a_weekend_spike_is_judged_against_weekends() -> None:
    week = np.repeat([1.0, 1.0, 1.0, 1.0, 1.0, 0.35, 0.35], 24)
    y = hourly(35) * np.tile(week, 5)
    at = 33 * 24 + 12  # a Saturday noon, in the fifth week
    y[at] *= 3  # 3 x a weekend hour, about what a weekday hour costs
    assert [s.index for s in an.hourly_spikes(y, start=28 * 24)] == [at]


def test_daily_spikes_use_the_weekday_once_three_weeks_are_known() -> None:
    week = np.array([10.0, 10, 10, 10, 10, 2, 2])
    y = np.tile(week, 6) * np.random.default_rng(8).lognormal(0, 0.05, 42)
    y[40] = 7.0  # a Saturday at 3.5 x its usual: below a weekday, still a spike
    assert [s.index for s in an.daily_spikes(y, start=21)] == [40]
    young = y[:14].copy()
    young[12] = 40.0
    assert [s.index for s in an.daily_spikes(young, start=7)] == [12]
