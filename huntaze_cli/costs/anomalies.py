"""Spend spikes in a cost series against a robust seasonal baseline: the statistics only.

``costs.anomaly_report`` reads hourly and daily series from the ledger and calls
``spikes`` on each; everything here takes plain numbers, so it is tested on generated
series.

A point is compared with the points before it at the same phase of the cycle (the same
hour of the day for hourly series, the same weekday for daily ones), within a lookback
window: the expected value is their median (for hourly series scaled by how the last few
hours compared with their usual), and the scale a robust standard deviation of the log
ratios point / usual over the window (1.4826 x their median absolute deviation): spend
varies in proportion to its level. Medians ignore earlier spikes, so a spike does not
raise the bar for the next one, and the point after a spike is judged against the usual
level, not the spike. A point is a spike when it is both ``MIN_RATIO`` times the expected
value and ``MIN_Z`` robust standard deviations above it; only spend above the usual
counts (a quiet hour is not an anomaly worth an alert).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_RATIO = 1.8
MIN_Z = 4.0
# History each hour and day is judged on, and the least a judgement needs. From
# WEEKLY_FROM_DAYS of history on, the same hour of the same weekday is compared.
HOUR_LOOKBACK = 28 * 24
HOUR_MIN_HISTORY = 3 * 24
HOUR_LOCAL = 6
DAY_LOOKBACK = 28
DAY_MIN_HISTORY = 7
WEEKLY_FROM_DAYS = 21
# Log ratios spread at least this much: steadier series still need MIN_RATIO and a margin.
MIN_LOG_SCALE = 0.05
# Spikes smaller than this (in the series' unit, dollars) are noise, whatever the ratio.
MIN_EXCESS = 0.01


@dataclass(frozen=True, slots=True)
class Spike:
    index: int
    observed: float
    expected: float
    score: float
    severity: str  # "low" | "medium" | "high"


def severity(observed: float, expected: float, score: float) -> str:
    ratio = observed / expected if expected > 0 else float("inf")
    if ratio >= 3 or score >= 12:
        return "high"
    if ratio >= 2 or score >= 7:
        return "medium"
    return "low"


def baseline(window: np.ndarray, period: int, *, local: int = 0) -> tuple[float, float]:
    """(expected value, robust scale of log ratios) of the point right after ``window``.

    ``local`` > 0 raises the expected value by how far the last ``local`` points ran above
    their own usual values (median ratio, at most 2 x), so growth, a level change or a
    busy day moves the baseline within hours instead of weeks.
    """
    n = len(window)
    # Rows of one cycle, ending right before the point judged, whose phase is column 0.
    pad = (-n) % period
    grid = np.concatenate([np.full(pad, np.nan), window]).reshape(-1, period)
    medians = np.nanmedian(grid, axis=0)
    medians = np.where(np.isnan(medians), np.median(window), medians)
    usual = np.tile(medians, len(grid))[pad:]
    positive = window[window > 0]
    # Where the usual is nothing (a quiet night), a tenth of a typical point stands in.
    floor = 0.1 * float(np.median(positive)) if len(positive) else 0.0
    usual = np.maximum(usual, floor)
    expected = max(float(medians[0]), floor)
    valid = (window > 0) & (usual > 0)
    if local and valid[-local:].any():
        recent = np.flatnonzero(valid[-local:]) + n - local
        factor = float(np.median(window[recent] / usual[recent]))
        # Up only: a quiet spell (a weekend) must not lower the bar for the next busy hour.
        expected *= min(2.0, max(1.0, factor))
    logs = np.log(window[valid] / usual[valid]) if valid.any() else np.zeros(1)
    mad = float(np.median(np.abs(logs - np.median(logs))))
    return expected, max(1.4826 * mad, MIN_LOG_SCALE)


def spikes(
    values: Sequence[float] | np.ndarray,
    *,
    period: int,
    lookback: int,
    start: int,
    min_history: int,
    end: int | None = None,
    local: int = 0,
    min_ratio: float = MIN_RATIO,
    min_z: float = MIN_Z,
) -> list[Spike]:
    """Spikes among ``values[start:end]``, each judged on the ``lookback`` points before it.

    Points with fewer than ``min_history`` points before them are not judged. The score
    is the log of observed / expected in robust standard deviations of such log ratios
    (spend varies in proportion to its level). The last value may be a period still
    running (spend so far): it can only grow, so a spike found in it is already certain.
    """
    y = np.asarray(values, dtype=float)
    found: list[Spike] = []
    for i in range(max(start, min_history), len(y) if end is None else min(end, len(y))):
        observed = float(y[i])
        window = y[max(0, i - lookback) : i]
        if observed <= 0 or len(window) < min_history:
            continue
        expected, scale = baseline(window, period, local=local)
        if expected <= 0 or observed - expected < MIN_EXCESS or observed < min_ratio * expected:
            continue
        score = float(np.log(observed / expected)) / scale
        if score < min_z:
            continue
        found.append(Spike(i, observed, expected, score, severity(observed, expected, score)))
    return found


def hourly_spikes(values: Sequence[float] | np.ndarray, *, start: int) -> list[Spike]:
    """Spikes among hours ``values[start:]`` (the first value is the first hour with
    spend): against the same hour of the day, and of the same weekday for hours with three
    weeks of history before them."""
    weekly_from = WEEKLY_FROM_DAYS * 24
    common = {"lookback": HOUR_LOOKBACK, "min_history": HOUR_MIN_HISTORY, "local": HOUR_LOCAL}
    return spikes(values, period=24, start=start, end=weekly_from, **common) + spikes(
        values, period=168, start=max(start, weekly_from), **common
    )


def daily_spikes(values: Sequence[float] | np.ndarray, *, start: int) -> list[Spike]:
    """Spikes among days ``values[start:]``: against the last two weeks, and the same
    weekday of the last four for days with three weeks of history before them."""
    return spikes(
        values,
        period=1,
        lookback=14,
        start=start,
        end=WEEKLY_FROM_DAYS,
        min_history=DAY_MIN_HISTORY,
    ) + spikes(
        values,
        period=7,
        lookback=DAY_LOOKBACK,
        start=max(start, WEEKLY_FROM_DAYS),
        min_history=DAY_MIN_HISTORY,
    )
