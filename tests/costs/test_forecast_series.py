"""The forecast statistics on generated series (no ledger): huntaze_cli.costs.forecast."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huntaze_cli.costs import forecast as fc

WEEK = np.array([30.0, 32.0, 31.0, 33.0, 29.0, 8.0, 6.0])  # quiet weekends


def weekly(weeks: int, *, noise: float = 0.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.tile(WEEK, weeks)
    return y + rng.normal(0.0, noise, len(y)) if noise else y


@settings(max_examples=40, deadline=None)
@given(
    value=st.floats(min_value=0.001, max_value=10_000),
    days=st.integers(min_value=7, max_value=60),
    horizon=st.integers(min_value=1, max_value=31),
    spent=st.floats(min_value=0, max_value=1000),
)
def test_a_constant_series_forecasts_that_constant_with_a_narrow_interval(
    value: float, days: int, horizon: int, spent: float
) -> None:
    paths = fc.simulate([value] * days, horizon)
    assert paths.method == fc.ROBUST
    end = fc.month_end(paths, spent=spent, today_left=1.0, level_pct=80)
    assert end is not None
    want = spent + value * horizon
    assert end.forecast == pytest.approx(want, rel=1e-9)
    assert end.upper - end.lower <= 1e-9 * want + 1e-12
    windows = fc.backtest_windows([value] * days, elapsed=5, horizon=horizon)
    assert len(windows) == min(days - fc.MIN_HISTORY_DAYS, fc.BACKTEST_WINDOWS)
    if windows:
        assert fc.score(windows, 80) == (0.0, 100.0)


@pytest.mark.parametrize("weeks", [2, 8])
def test_a_weekly_pattern_is_recovered(weeks: int) -> None:
    # Two weeks: the robust model's weekday effect; eight: the seasonal ETS model.
    y = weekly(weeks, noise=0.3)
    paths = fc.simulate(y, 14)
    assert paths.method in ({fc.ROBUST} if weeks == 2 else {fc.ETS, fc.ETS_DAMPED})
    median_day = np.median(paths.samples, axis=0)
    assert median_day[:7] == pytest.approx(WEEK, abs=1.5)
    assert median_day[7:] == pytest.approx(WEEK, abs=2.0)


def test_a_burst_is_not_extrapolated_as_a_new_level() -> None:
    y = np.full(35, 20.0) + np.random.default_rng(4).normal(0, 0.5, 35)
    y[-4] = 200.0  # a campaign three days ago
    y[10] = 150.0  # and an older one
    paths = fc.simulate(y, 10)
    assert np.median(paths.samples.sum(axis=1)) == pytest.approx(200.0, rel=0.05)


def test_a_level_change_that_lasts_is_followed() -> None:
    y = np.concatenate([np.full(30, 20.0), np.full(4, 40.0)])
    y += np.random.default_rng(5).normal(0, 0.5, len(y))
    paths = fc.simulate(y, 10)
    assert np.median(paths.samples.sum(axis=1)) == pytest.approx(400.0, rel=0.08)


def test_clean_bursts_keeps_a_normal_series_and_the_weekly_shape() -> None:
    y = weekly(4, noise=0.5)
    assert np.array_equal(fc.clean_bursts(y), y)
    spiked = y.copy()
    spiked[9] *= 5
    cleaned = fc.clean_bursts(spiked)
    assert cleaned[9] == pytest.approx(y[9], abs=3)
    assert np.array_equal(np.delete(cleaned, 9), np.delete(y, 9))


def test_below_seven_days_there_is_no_forecast() -> None:
    paths = fc.simulate([5.0] * 6, 20)
    assert paths.method == fc.INSUFFICIENT
    assert fc.month_end(paths, spent=10, level_pct=80) is None
    assert fc.backtest_windows([5.0] * 7, elapsed=3, horizon=20) == []


def test_month_end_counts_spend_so_far_and_the_rest_of_today() -> None:
    paths = fc.Paths(fc.ROBUST, np.array([[10.0, 10.0, 10.0], [20.0, 20.0, 20.0]]))
    end = fc.month_end(paths, spent=100, today_spent=4, today_left=0.5, level_pct=80, limit=125)
    assert end is not None
    # Paths end at 100 + 4 + 5 + 20 = 129 and 100 + 4 + 10 + 40 = 154.
    assert end.forecast == pytest.approx((129 + 154) / 2)
    assert end.probability_exceed_pct == 100.0
    # Crossed 125: path 1 on day 2 (119, 129), path 2 on day 1 (124? no: 134): day 1 is 50 %.
    assert end.breach_day == 1
    unlikely = fc.month_end(paths, spent=0, level_pct=80, limit=1000)
    assert unlikely is not None
    assert unlikely.probability_exceed_pct == 0.0 and unlikely.breach_day is None


def test_interval_widens_with_the_level() -> None:
    paths = fc.simulate(weekly(6, noise=3.0), 20)
    narrow = fc.month_end(paths, spent=0, level_pct=50)
    wide = fc.month_end(paths, spent=0, level_pct=95)
    assert narrow is not None and wide is not None
    assert wide.lower < narrow.lower <= narrow.forecast <= narrow.upper < wide.upper


def test_backtest_scores_a_noisy_weekly_series_honestly() -> None:
    y = weekly(9, noise=2.0, seed=7)
    windows = fc.backtest_windows(y, elapsed=7, horizon=24)
    assert len(windows) == fc.BACKTEST_WINDOWS
    mape, coverage = fc.score(windows, 80)
    assert mape is not None and coverage is not None
    assert 0 < mape < 10
    assert 0 <= coverage <= 100


def test_score_of_hand_made_windows() -> None:
    windows = [
        fc.Window(100.0, np.array([90.0, 100.0, 110.0])),  # median exact, inside
        fc.Window(100.0, np.array([140.0, 150.0, 160.0])),  # 50 % off, outside
        fc.Window(0.0, np.array([1.0, 2.0, 3.0])),  # nothing spent: not scored
    ]
    assert fc.score(windows, 80) == (25.0, 50.0)
    assert fc.score([], 80) == (None, None)


def test_the_spread_factor_widens_an_interval_the_backtest_shows_too_narrow() -> None:
    tight = np.array([99.0, 100.0, 101.0])  # 80 % interval about +-0.8
    missed = [fc.Window(100.0 + d, tight) for d in (4.0, -4.0, 2.0, -3.0, 5.0)]
    factor = fc.spread_factor(missed, 80)
    assert factor > 2
    held = [fc.Window(100.0, tight)] * 5
    assert fc.spread_factor(held, 80) == 1.0
    assert fc.spread_factor(missed[:1], 80) == 1.0  # one window proves nothing
    paths = fc.Paths(fc.ROBUST, tight[:, None])
    wide = fc.month_end(paths, spent=0, today_left=1, level_pct=80, spread=3)
    narrow = fc.month_end(paths, spent=0, today_left=1, level_pct=80)
    assert wide is not None and narrow is not None
    assert wide.forecast == narrow.forecast == 100.0
    assert wide.upper - wide.lower == pytest.approx(3 * (narrow.upper - narrow.lower))


def test_backtest_coverage_is_out_of_sample() -> None:
    tight = np.array([99.0, 100.0, 101.0])
    # Each window's miss is bigger than the others': calibrating on the others never
    # covers it, although calibrating on all of them would.
    windows = [fc.Window(100.0 + d, tight) for d in (2.0, 4.0, 8.0, 16.0)]
    assert fc.score(windows, 80)[1] < 100.0
