"""Month-end spend forecasts from a daily cost series: the statistics, with no ledger.

Everything here takes plain numbers (one value per complete day, oldest first) and returns
plain numbers, so it can be tested on generated series; ``costs.forecast_report`` reads the
ledger, caches and builds the report around it.

How a forecast is made:

1. **Bursts are cleaned first.** A day far above a robust baseline (rolling median of a
   week plus a median weekday effect; threshold ``BURST_Z`` robust standard deviations) is
   replaced by the baseline before any model sees it, so a one-off campaign is not read as
   a new level. A run of such days that reaches the end of the history and lasts at least
   ``LEVEL_CHANGE_DAYS`` is kept: that is a new level, not a burst.
2. **A model simulates the days left.** From ``ETS_MIN_DAYS`` days of history, statsmodels'
   ``ETSModel`` (additive errors and weekly seasonality, with and without a damped trend,
   chosen by AICc) simulates ``REPETITIONS`` future paths with bootstrapped residuals.
   Shorter or flat series use ``robust_median``: the median of the last week (plus the
   weekday effect once two weeks are known) with bootstrapped residuals and a shared level
   error, so a month's sum keeps the uncertainty of its level.
3. **The month is summed per path.** Month-end = spend so far + the rest of today + the
   days left; the forecast is the median path, the interval its quantiles, the chance of
   crossing a limit the share of paths that cross it.

The backtest replays steps 2-3 from earlier origins of the same history (rolling origin)
and scores the month-end it would have forecast against what was then spent. One model
fit serves the forecast and every window: a window simulates from the model's state at
its origin (which depends only on the days before it) with the residuals of those days,
keeping the fitted smoothing parameters; refitting per window costs a fit each and moved
the backtest's figures by little (bench/forecast.py measures both the accuracy and the
time). It also calibrates: the paths are spread around their median by the factor that
would have made the backtest's intervals hold (``spread_factor``), since simulated paths
are too sure. statsmodels (and its scipy and pandas) are imported only when a model is
fitted: importing it costs about a second of CPU, which is why forecasts are cached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_HISTORY_DAYS = 7
ETS_MIN_DAYS = 21
SEASON = 7
REPETITIONS = 400
BURST_Z = 4.0
LEVEL_CHANGE_DAYS = 3
BACKTEST_WINDOWS = 5
MAX_SPREAD = 5.0

INSUFFICIENT = "insufficient_history"
ROBUST = "robust_median"
ETS = "ets_weekly"
ETS_DAMPED = "ets_damped_trend_weekly"


@dataclass(frozen=True, slots=True)
class Paths:
    """Simulated daily spend: ``samples[r, h]`` is path r's spend on day h of the horizon."""

    method: str
    samples: np.ndarray


@dataclass(frozen=True, slots=True)
class MonthEnd:
    """One forecast of a period's total from its simulated paths."""

    forecast: float
    lower: float
    upper: float
    probability_exceed_pct: float | None
    breach_day: int | None  # index into the horizon of the expected breach, None if unlikely


@dataclass(frozen=True, slots=True)
class Window:
    """One backtest window: what was spent and the month-ends the model simulated."""

    actual: float
    totals: np.ndarray


# --- cleaning ---------------------------------------------------------------------------


def _rolling_median(y: np.ndarray, width: int) -> np.ndarray:
    """Median of the ``width`` points centred on each point; near the ends, of the first
    or last ``width`` points, so every window spans a whole cycle."""
    n = len(y)
    if n <= width:
        return np.full(n, float(np.median(y)))
    windows = np.lib.stride_tricks.sliding_window_view(y, width)
    middle = np.median(windows, axis=1)
    half = width // 2
    return np.concatenate(
        [np.full(half, middle[0]), middle, np.full(n - len(middle) - half, middle[-1])]
    )


def decompose(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A robust level per day, the weekday effect per phase (index mod 7) and the robust
    scale of what is left. The effect is zero before two weeks are known."""
    level = _rolling_median(y, SEASON)
    effect = np.zeros(SEASON)
    if len(y) >= 2 * SEASON:
        detrended = y - level
        phase = np.arange(len(y)) % SEASON
        for k in range(SEASON):
            effect[k] = np.median(detrended[phase == k])
    resid = y - level - effect[np.arange(len(y)) % SEASON]
    mad = float(np.median(np.abs(resid - np.median(resid))))
    typical = float(np.median(np.abs(y))) if len(y) else 0.0
    scale = max(1.4826 * mad, 0.02 * typical, 1e-9)
    return level, effect, scale


def clean_bursts(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The series with one-off bursts replaced by their robust baseline."""
    y = np.asarray(values, dtype=float)
    if len(y) < 3:
        return y.copy()
    level, effect, scale = decompose(y)
    baseline = level + effect[np.arange(len(y)) % SEASON]
    burst = (y - baseline) > BURST_Z * scale
    # A run of "bursts" up to the last day is a new level once it lasts long enough.
    run = 0
    while run < len(y) and burst[len(y) - 1 - run]:
        run += 1
    if run >= LEVEL_CHANGE_DAYS:
        burst[len(y) - run :] = False
    out = y.copy()
    out[burst] = baseline[burst]
    return out


# --- simulating the days left -----------------------------------------------------------


def simulate(
    history: Sequence[float] | np.ndarray,
    horizon: int,
    *,
    repetitions: int = REPETITIONS,
    seed: int = 0,
    allow_model: bool = True,
    method: str | None = None,
) -> Paths:
    """Simulated daily spend for the ``horizon`` days after ``history``.

    ``history`` holds complete days, oldest first; fewer than MIN_HISTORY_DAYS gives
    method ``insufficient_history`` and no samples. ``allow_model=False`` keeps to the
    robust model (cheap: no statsmodels); ``method`` fits only that ETS variant.
    """
    return _simulate(
        history, horizon, repetitions=repetitions, seed=seed, allow_model=allow_model, method=method
    )[0]


def forecast(
    history: Sequence[float] | np.ndarray,
    *,
    elapsed: int,
    horizon: int,
    windows: int = BACKTEST_WINDOWS,
    repetitions: int = REPETITIONS,
    seed: int = 0,
    allow_model: bool = True,
) -> tuple[Paths, list[Window]]:
    """The paths of ``simulate`` and the rolling-origin backtest of the same method
    (``backtest_windows``), from one model fit: what `costs forecast` computes."""
    paths, model = _simulate(
        history, horizon, repetitions=repetitions, seed=seed, allow_model=allow_model
    )
    found = backtest_windows(
        history,
        elapsed=elapsed,
        horizon=horizon,
        windows=windows,
        repetitions=repetitions,
        allow_model=allow_model,
        method=paths.method,
        model=model,
    )
    return paths, found


@dataclass(frozen=True, slots=True)
class Model:
    """An ETS model fitted to a cleaned history (a statsmodels ``ETSResults``)."""

    method: str
    fit: Any
    clean: np.ndarray


def _simulate(
    history: Sequence[float] | np.ndarray,
    horizon: int,
    *,
    repetitions: int,
    seed: int,
    allow_model: bool,
    method: str | None = None,
) -> tuple[Paths, Model | None]:
    y = np.asarray(history, dtype=float)
    if len(y) < MIN_HISTORY_DAYS:
        return Paths(INSUFFICIENT, np.zeros((0, horizon))), None
    if horizon <= 0:
        return Paths(ROBUST, np.zeros((repetitions, 0))), None
    clean = clean_bursts(y)
    rng = np.random.default_rng(seed)
    if allow_model and method != ROBUST:
        model = fit_model(clean, method=method)
        if model is not None:
            samples = _ets_samples(model, horizon, repetitions, rng, origin=len(clean))
            if samples is not None:
                return Paths(model.method, samples), model
    return Paths(ROBUST, _robust_paths(clean, horizon, repetitions, rng)), None


def _flat(y: np.ndarray) -> bool:
    """Too little variation (or spend) for a model to learn anything from."""
    recent = y[-2 * SEASON :]
    spread = float(np.max(recent) - np.min(recent))
    return spread <= 1e-6 * max(float(np.mean(np.abs(recent))), 1e-9)


def _robust_paths(y: np.ndarray, horizon: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    _, effect, _ = decompose(y)
    phase = np.arange(len(y)) % SEASON
    deseasoned = y - effect[phase]
    level_now = float(np.median(deseasoned[-SEASON:]))
    resid = deseasoned[-4 * SEASON :] - level_now
    resid = resid - np.median(resid)
    # Daily noise: residuals drawn with replacement; level error: the noise of a median of
    # a week, shared by every day of a path (a month's sum does not average it away).
    noise = rng.choice(resid, size=(reps, horizon), replace=True)
    level_sd = 1.2533 * float(np.std(resid)) / math.sqrt(SEASON)
    shift = rng.normal(0.0, level_sd, size=(reps, 1)) if level_sd > 0 else np.zeros((reps, 1))
    mean = level_now + effect[(len(y) + np.arange(horizon)) % SEASON]
    return np.clip(mean[None, :] + noise + shift, 0.0, None)


def fit_model(clean: np.ndarray, *, method: str | None = None) -> Model | None:
    """statsmodels' ETSModel (additive errors, weekly seasonality, with and without a
    damped trend, the lower AICc chosen; only ``method``'s variant if it names one) on a
    cleaned history; None when it is too short or flat, or no fit converges."""
    if len(clean) < ETS_MIN_DAYS or _flat(clean):
        return None
    import warnings

    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    variants = (False, True) if method not in (ETS, ETS_DAMPED) else (method == ETS_DAMPED,)
    best = None
    with warnings.catch_warnings():
        # Convergence chatter from the optimiser; a failed fit is simply not chosen.
        warnings.simplefilter("ignore")
        for damped in variants:
            try:
                model = ETSModel(
                    clean,
                    error="add",
                    trend="add" if damped else None,
                    damped_trend=damped,
                    seasonal="add",
                    seasonal_periods=SEASON,
                    initialization_method="heuristic",
                )
                fit = model.fit(disp=False, maxiter=200)
            except (ValueError, np.linalg.LinAlgError):
                continue
            if not math.isfinite(fit.aicc):
                continue
            if best is None or fit.aicc < best[0]:
                best = (fit.aicc, damped, fit)
    if best is None:
        return None
    _, damped, fit = best
    return Model(ETS_DAMPED if damped else ETS, fit, clean)


def _ets_samples(
    model: Model, horizon: int, reps: int, rng: np.random.Generator, *, origin: int
) -> np.ndarray | None:
    """``reps`` paths of ``horizon`` days from the model's state after ``origin`` days,
    with errors bootstrapped from the residuals of those days."""
    import warnings

    resid = np.asarray(model.fit.resid, dtype=float)[:origin]
    errors = rng.choice(resid, size=(horizon, reps), replace=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # statsmodels anchors on the last known observation: the day before ``origin``.
        anchor = "end" if origin == model.fit.nobs else origin - 1
        sims = model.fit.simulate(horizon, anchor=anchor, repetitions=reps, random_errors=errors)
    samples = np.asarray(sims, dtype=float).reshape(horizon, reps).T
    if not np.all(np.isfinite(samples)):
        return None
    return np.clip(samples, 0.0, None)


# --- the month's total ------------------------------------------------------------------


def month_end(
    paths: Paths,
    *,
    spent: float,
    today_spent: float = 0.0,
    today_left: float = 0.0,
    level_pct: float,
    limit: float | None = None,
    spread: float = 1.0,
) -> MonthEnd | None:
    """Month-end spend from simulated paths whose first day is today.

    ``spent`` is the month's spend before today, ``today_spent`` today's so far and
    ``today_left`` the share of today still to come (0 when the horizon starts tomorrow).
    ``spread`` widens the paths around their median (see ``spread_factor``). None when
    there are no paths (insufficient history).
    """
    if paths.samples.shape[0] == 0:
        return None
    daily = paths.samples.copy()
    if daily.shape[1]:
        daily[:, 0] *= today_left
    cumulative = spent + today_spent + np.cumsum(daily, axis=1)
    if spread != 1.0 and cumulative.shape[1]:
        middle = np.median(cumulative, axis=0)
        cumulative = np.maximum(middle + spread * (cumulative - middle), spent + today_spent)
    totals = cumulative[:, -1] if daily.shape[1] else np.full(len(daily), spent + today_spent)
    lower, upper = interval(totals, level_pct)
    probability = breach = None
    if limit is not None and limit > 0:
        probability = round(100.0 * float(np.mean(totals >= limit)), 2)
        crossed = np.mean(cumulative >= limit, axis=0) if daily.shape[1] else np.zeros(0)
        likely = np.flatnonzero(crossed >= 0.5)
        breach = int(likely[0]) if len(likely) else None
    return MonthEnd(float(np.median(totals)), lower, upper, probability, breach)


def interval(totals: np.ndarray, level_pct: float) -> tuple[float, float]:
    tail = (1.0 - level_pct / 100.0) / 2.0
    lo, hi = np.quantile(totals, [tail, 1.0 - tail])
    return float(lo), float(hi)


# --- backtest ---------------------------------------------------------------------------


def backtest_windows(
    history: Sequence[float] | np.ndarray,
    *,
    elapsed: int,
    horizon: int,
    windows: int = BACKTEST_WINDOWS,
    repetitions: int = REPETITIONS,
    allow_model: bool = True,
    method: str | None = None,
    model: Model | None = None,
) -> list[Window]:
    """Rolling-origin replays of a forecast made ``elapsed`` days into a month with
    ``horizon`` days left, over earlier spans of ``history``.

    A window whose origin has ETS_MIN_DAYS of history simulates from ``model`` (fitted
    here on the whole history, once, when not given) at its origin; an earlier one, or
    every one when ``method`` is the robust model, uses the robust model on the days
    before its origin. When the history is too short for the full horizon the horizon
    shrinks, so a young ledger still gets a (shorter-range) score; none below
    MIN_HISTORY_DAYS + 1 days.
    """
    y = np.asarray(history, dtype=float)
    # Shorter history: a shorter horizon, still leaving room for every window.
    if len(y) <= MIN_HISTORY_DAYS or horizon < 1:
        return []
    horizon = min(horizon, max(1, len(y) - MIN_HISTORY_DAYS - windows + 1))
    last = len(y) - horizon
    origins = sorted({round(x) for x in np.linspace(MIN_HISTORY_DAYS, last, windows)})
    if model is None and allow_model and method != ROBUST and last >= ETS_MIN_DAYS:
        model = fit_model(clean_bursts(y), method=method)
    out = []
    for seed, origin in enumerate(origins[-windows:]):
        known = float(np.sum(y[max(0, origin - elapsed) : origin]))
        actual = known + float(np.sum(y[origin : origin + horizon]))
        samples = None
        if model is not None and origin >= ETS_MIN_DAYS and not _flat(model.clean[:origin]):
            rng = np.random.default_rng(seed + 1)
            samples = _ets_samples(model, horizon, repetitions, rng, origin=origin)
        if samples is None:
            samples = simulate(
                y[:origin], horizon, repetitions=repetitions, seed=seed + 1, allow_model=False
            ).samples
        out.append(Window(actual, known + samples.sum(axis=1)))
    return out


def spread_factor(windows: Sequence[Window], level_pct: float) -> float:
    """How much wider than simulated the interval must be to have held the backtest's
    actual totals at ``level_pct`` (split-conformal calibration; at least 1).

    Bootstrapped in-sample residuals and fitted parameters make simulated paths too sure
    of themselves; the backtest shows by how much, on this very series.
    """
    ratios = []
    for w in windows:
        if not len(w.totals):
            continue
        lo, hi = interval(w.totals, level_pct)
        error = abs(w.actual - float(np.median(w.totals)))
        half = (hi - lo) / 2
        ratios.append(error / half if half > 0 else (MAX_SPREAD if error > 0 else 0.0))
    if len(ratios) < 2:
        return 1.0
    return min(MAX_SPREAD, max(1.0, float(np.quantile(ratios, level_pct / 100.0))))


def score(windows: Sequence[Window], level_pct: float) -> tuple[float | None, float | None]:
    """(MAPE %, interval coverage %) of backtest windows; None when there are none.

    Coverage is out of sample: each window's interval is widened by the spread factor of
    the other windows, as a forecast's interval is by the factor of all of them.
    """
    scored = [w for w in windows if w.actual > 0 and len(w.totals)]
    if not scored:
        return None, None
    errors = [abs(float(np.median(w.totals)) - w.actual) / w.actual for w in scored]
    inside = 0
    for n, w in enumerate(scored):
        spread = spread_factor(scored[:n] + scored[n + 1 :], level_pct)
        middle = float(np.median(w.totals))
        lo, hi = interval(w.totals, level_pct)
        inside += middle + spread * (lo - middle) <= w.actual <= middle + spread * (hi - middle)
    return round(100.0 * float(np.mean(errors)), 2), round(100.0 * inside / len(scored), 2)
