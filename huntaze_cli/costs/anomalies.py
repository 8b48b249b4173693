"""Spend spikes in a cost series against a robust seasonal baseline: the statistics only.

``costs.anomaly_report`` reads hourly and daily series from the ledger and calls
``spikes`` on each; everything here takes plain numbers, so it is tested on generated
series.

A point is compared with the points before it at the same phase of the cycle (the same
hour of the day for hourly series, the same weekday for daily ones), within a lookback
window: the expected value is their median and the scale a robust standard deviation
(1.4826 x the median absolute deviation of every point in the window from its phase's
median). Medians ignore earlier spikes, so a spike does not raise the bar for the next
one, and the point after a spike is judged against the usual level, not the spike. A
point is a spike when it is both ``MIN_RATIO`` times the expected value and ``MIN_Z``
robust standard deviations above it; only spend above the usual counts (a quiet hour is
not an anomaly worth an alert).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_RATIO = 1.5
MIN_Z = 4.0
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


def baseline(window: np.ndarray, period: int) -> tuple[float, float]:
    """(expected, scale) of the point right after ``window``."""
    n = len(window)
    # Each window point's phase relative to the point judged: 0 is the same phase.
    phases = (n - np.arange(n)) % period
    medians = np.zeros(period)
    for k in range(period):
        same = window[phases == k]
        medians[k] = np.median(same) if len(same) else np.median(window)
    expected = float(medians[0])
    resid = window - medians[phases]
    mad = float(np.median(np.abs(resid - np.median(resid))))
    typical = float(np.median(window))
    scale = max(1.4826 * mad, 0.1 * expected, 0.05 * typical, 1e-9)
    return expected, scale


def spikes(
    values: Sequence[float] | np.ndarray,
    *,
    period: int,
    lookback: int,
    start: int,
    min_history: int,
    min_ratio: float = MIN_RATIO,
    min_z: float = MIN_Z,
) -> list[Spike]:
    """Spikes among ``values[start:]``, each judged on the ``lookback`` points before it.

    Points with fewer than ``min_history`` points before them are not judged. The last
    value may be a period still running (spend so far): it can only grow, so a spike
    found in it is already certain.
    """
    y = np.asarray(values, dtype=float)
    found: list[Spike] = []
    for i in range(max(start, min_history), len(y)):
        observed = float(y[i])
        window = y[max(0, i - lookback) : i]
        if observed <= 0 or len(window) < min_history:
            continue
        expected, scale = baseline(window, period)
        excess = observed - expected
        if excess < MIN_EXCESS or observed < min_ratio * expected:
            continue
        score = excess / scale
        if score < min_z:
            continue
        found.append(Spike(i, observed, expected, score, severity(observed, expected, score)))
    return found
