"""`costs forecast`: this month's spend at month end, overall and per group, with the
chance of crossing the monthly limit and a backtest of the method on the ledger's history.

The statistics are in ``costs.forecast``; this module reads the series
(``costs.series``), caches what a model produced and shapes the report. Fitting is what
costs time (and importing statsmodels), and its inputs only change when a day completes,
so simulated paths and backtest windows are cached on disk keyed by a digest of the
complete days they were computed from: the first forecast of a day fits, the next ones
only read the ledger and the cache. A late import that changes an earlier day changes
the digest, so a stale cache is never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.costs.limits import Limit, global_limits
from huntaze_cli.costs.periods import day_period, month_period
from huntaze_cli.costs.series import Days, daily_series, first_spend, validate_key
from huntaze_cli.errors import UsageError
from huntaze_cli.money import nano_to_usd, usd_to_nano
from huntaze_cli.storage.ledger import slot_of

if TYPE_CHECKING:
    from huntaze_cli.config import Config
    from huntaze_cli.costs import forecast as fc
    from huntaze_cli.storage.ledger import Ledger

logger = logging.getLogger(__name__)

LOOKBACK_DAYS = 84
# Groups beyond the biggest MODEL_GROUPS (by recent spend) get the robust model only, so a
# `--by account` over hundreds of accounts stays quick.
MODEL_GROUPS = 12
CACHE_VERSION = "3"
CACHE_KEEP_S = 3 * 86_400
NANO = 1e9


class Backtest(BaseModel):
    """Rolling-origin backtest of the method on this series' own history."""

    mape_pct: float | None
    coverage_pct: float | None
    windows: int


class ThresholdOutlook(BaseModel):
    limit_usd: float
    # Which limit: ``global-monthly`` ([thresholds] monthly_usd) for the whole ledger, a
    # tenant's monthly budget (``quota:<tenant>``) for a tenant's forecast.
    name: str
    source: str  # global | budget
    probability_exceed_pct: float | None
    expected_breach_date: date | None


class ForecastFigures(BaseModel):
    """The month-end forecast of one series (overall or one group)."""

    model_config = ConfigDict(extra="allow")

    month_to_date_usd: float
    month_to_date_nano: int
    forecast_usd: float | None
    lower_usd: float | None
    upper_usd: float | None
    level_pct: float
    method: str
    history_days: int
    backtest: Backtest
    threshold: ThresholdOutlook | None = None


class _ReportHead(BaseModel):
    generated_at: datetime
    month: str
    timezone: str
    group_by: str | None


class ForecastReport(ForecastFigures, _ReportHead):
    """The overall forecast (fields after the head) and one per group."""

    groups: list[ForecastFigures]


def validate_level(level: float) -> float:
    if not 0 < level < 100:
        raise UsageError(
            f"<level>: {level:g} is not a percentage strictly between 0 and 100",
            field="level",
            value=level,
        )
    return float(level)


@dataclass(frozen=True, slots=True)
class _Month:
    """Where ``now`` is in its month, in the series' days."""

    days: Days  # LOOKBACK_DAYS of history, today, and the rest of the month
    today: int  # index of today in ``days``
    elapsed: int  # complete days of this month before today
    horizon: int  # today and the days left
    today_left: float  # share of today still to come


def _month(now: datetime, tz: Any) -> _Month:
    period = month_period(now, tz)
    today = day_period(now, tz)
    local_today = date.fromisoformat(today.label)
    month_start = date.fromisoformat(period.label + "-01")
    month_end = (period.end - timedelta(seconds=1)).astimezone(tz).date()
    first = month_start - timedelta(days=LOOKBACK_DAYS)
    index = (local_today - first).days
    # From the start of the running quarter-hour (the rollups' resolution), so a forecast
    # moves on when the data can, and the CLI and the daemon agree within a slot.
    slot = datetime.fromtimestamp(slot_of(now), UTC)
    left = (today.end - slot) / (today.end - today.start)
    return _Month(
        days=Days(first, (month_end - first).days + 1, tz),
        today=index,
        elapsed=(local_today - month_start).days,
        horizon=(month_end - local_today).days + 1,
        today_left=min(1.0, max(0.0, left)),
    )


def forecast_report(
    config: Config,
    ledger: Ledger,
    *,
    by: str | None = None,
    level_pct: float = 80.0,
    now: datetime | None = None,
    clock: Clock = SYSTEM_CLOCK,
    cache: bool = True,
    limit: Limit | Literal["global"] | None = "global",
) -> ForecastReport:
    """Month-end forecast overall and, with ``by``, per provider/tenant/account/model.

    The overall forecast is compared with ``limit``: the global monthly threshold by
    default; a tenant's view passes that tenant's monthly budget, or None for none.
    """
    by = validate_key(by)
    level_pct = validate_level(level_pct)
    now = (now or clock.now()).astimezone(UTC)
    tz = config.thresholds.tz
    month = _month(now, tz)
    store = _Cache(config.forecast_cache_dir if cache else None, clock=clock)
    if limit == "global":
        limit = global_limits(config)["monthly"]
    total = daily_series(ledger, month.days)[None]
    overall = _figures(total, month, level_pct, limit, store)
    groups: list[ForecastFigures] = []
    if by:
        series = daily_series(ledger, month.days, by=by)
        ranked = sorted(series.items(), key=lambda kv: (-sum(kv[1]), str(kv[0])))
        for rank, (value, values) in enumerate(ranked):
            figures = _figures(values, month, level_pct, None, store, model=rank < MODEL_GROUPS)
            groups.append(ForecastFigures(**{by: value}, **figures.model_dump()))
        groups.sort(key=lambda g: (-g.month_to_date_nano, str(getattr(g, by))))
    period = month_period(now, tz)
    return ForecastReport(
        generated_at=now,
        month=period.label,
        timezone=config.thresholds.timezone,
        group_by=by,
        groups=groups,
        **overall.model_dump(),
    )


def forecast_scope(
    config: Config,
    ledger: Ledger,
    *,
    scope: Mapping[str, str],
    limit_usd: Any,
    name: str = "scope",
    source: str = "rule",
    level_pct: float = 80.0,
    now: datetime | None = None,
    clock: Clock = SYSTEM_CLOCK,
    cache: bool = True,
) -> ForecastFigures:
    """The forecast of one rule's scope against its limit: what a ``forecast`` rule
    (month-end upper bound >= limit) evaluates; ``name`` and ``source`` say which rule."""
    now = (now or clock.now()).astimezone(UTC)
    month = _month(now, config.thresholds.tz)
    for key in scope:
        if key != "campaign":
            validate_key(key, field="scope")
    series = daily_series(ledger, month.days, scope=scope)[None]
    limit_nano = usd_to_nano(limit_usd, field="limit_usd")
    limit = Limit(name, source, limit_nano) if limit_nano else None
    store = _Cache(config.forecast_cache_dir if cache else None, clock=clock)
    return _figures(series, month, validate_level(level_pct), limit, store)


def _figures(
    values: Sequence[int],
    month: _Month,
    level_pct: float,
    limit: Limit | None,
    cache: _Cache,
    *,
    model: bool = True,
) -> ForecastFigures:
    from huntaze_cli.costs import forecast as fc

    start = first_spend(values[: month.today])
    history = [] if start is None else list(values[start : month.today])
    spent_nano = sum(values[month.today - month.elapsed : month.today + 1])
    today_nano = values[month.today]
    paths, windows = cache.get_or_compute(
        history, elapsed=month.elapsed, horizon=month.horizon, model=model
    )
    level = fc.month_end(
        paths,
        spent=(spent_nano - today_nano) / NANO,
        today_spent=today_nano / NANO,
        today_left=month.today_left,
        level_pct=level_pct,
        limit=None if limit is None else limit.limit_nano / NANO,
        spread=fc.spread_factor(windows, level_pct),
    )
    mape, coverage = fc.score(windows, level_pct)
    threshold = None
    if limit is not None:
        threshold = _threshold(values, month, limit, spent_nano, level)
    return ForecastFigures(
        month_to_date_usd=nano_to_usd(spent_nano),
        month_to_date_nano=spent_nano,
        forecast_usd=None if level is None else _usd(level.forecast),
        lower_usd=None if level is None else _usd(level.lower),
        upper_usd=None if level is None else _usd(level.upper),
        level_pct=level_pct,
        method=paths.method,
        history_days=len(history),
        backtest=Backtest(mape_pct=mape, coverage_pct=coverage, windows=len(windows)),
        threshold=threshold,
    )


def _threshold(
    values: Sequence[int],
    month: _Month,
    limit: Limit,
    spent_nano: int,
    level: fc.MonthEnd | None,
) -> ThresholdOutlook:
    limit_nano = limit.limit_nano
    which = {"limit_usd": nano_to_usd(limit_nano), "name": limit.name, "source": limit.source}
    if spent_nano >= limit_nano:
        # Already crossed: certain, on the day the running total reached the limit.
        running = 0
        crossed = month.today
        for index in range(month.today - month.elapsed, month.today + 1):
            running += values[index]
            if running >= limit_nano:
                crossed = index
                break
        return ThresholdOutlook(
            **which,
            probability_exceed_pct=100.0,
            expected_breach_date=month.days.day(crossed),
        )
    if level is None:
        return ThresholdOutlook(**which, probability_exceed_pct=None, expected_breach_date=None)
    breach = None if level.breach_day is None else month.days.day(month.today + level.breach_day)
    return ThresholdOutlook(
        **which,
        probability_exceed_pct=level.probability_exceed_pct,
        expected_breach_date=breach,
    )


def _usd(amount: float) -> float:
    return round(max(amount, 0.0), 6)


# --- cache ------------------------------------------------------------------------------


class _Cache:
    """Simulated paths and backtest windows on disk, keyed by the history they come from.

    Best effort: an unreadable or unwritable cache only costs a refit.
    """

    def __init__(self, directory: Path | None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.directory = directory
        self._clock = clock
        self._pruned = False

    def get_or_compute(
        self, history: Sequence[int], *, elapsed: int, horizon: int, model: bool
    ) -> tuple[fc.Paths, list[fc.Window]]:
        import numpy as np

        from huntaze_cli.costs import forecast as fc

        if len(history) < fc.MIN_HISTORY_DAYS:
            return fc.simulate([], horizon), []
        digest = hashlib.sha256(
            repr((CACHE_VERSION, elapsed, horizon, model, fc.REPETITIONS, list(history))).encode()
        ).hexdigest()[:32]
        cached = self._load(digest)
        if cached is not None:
            return cached
        y = [v / NANO for v in history]
        paths, windows = fc.forecast(y, elapsed=elapsed, horizon=horizon, allow_model=model)
        self._store(digest, paths, windows, np)
        return paths, windows

    def _path(self, digest: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{digest}.npz"

    def _load(self, digest: str) -> tuple[fc.Paths, list[fc.Window]] | None:
        path = self._path(digest)
        if path is None or not path.exists():
            return None
        import numpy as np

        from huntaze_cli.costs import forecast as fc

        try:
            with np.load(path, allow_pickle=False) as data:
                paths = fc.Paths(str(data["method"]), data["samples"])
                windows = [
                    fc.Window(float(actual), totals)
                    for actual, totals in zip(data["actual"], data["totals"], strict=True)
                ]
        except (OSError, ValueError, KeyError) as exc:
            logger.debug("forecast cache %s unreadable: %s", path, exc)
            return None
        return paths, windows

    def _store(self, digest: str, paths: fc.Paths, windows: list[fc.Window], np: Any) -> None:
        path = self._path(digest)
        if path is None:
            return
        totals = np.stack([w.totals for w in windows]) if windows else np.zeros((0, 0))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._prune(path.parent)
            # Per process and thread: the daemon may fit the same series in two requests.
            tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npz")
            np.savez(
                tmp,
                method=np.array(paths.method),
                samples=paths.samples,
                actual=np.array([w.actual for w in windows], dtype=float),
                totals=totals,
            )
            os.replace(tmp, path)
        except OSError as exc:
            logger.debug("forecast cache %s not written: %s", path, exc)

    def _prune(self, directory: Path) -> None:
        if self._pruned:
            return
        self._pruned = True
        cutoff = self._clock.time() - CACHE_KEEP_S
        for old in directory.glob("*.npz"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                continue
