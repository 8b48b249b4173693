"""Experiment reports: per arm figures, and whether each difference to the baseline is real.

Figures come from the usage rollups of the experiment (never raw events):

* ``messages`` are successful attempts (one per message written); ``cost_usd`` is every
  attempt's cost, so ``cost_per_message_usd`` carries the arm's retries and failures;
* ``failure_pct`` is the share of attempts that failed, ``fallback_pct`` the share of
  messages a fallback provider wrote;
* latency percentiles come from the rollups' histograms, the mean from exact sums.

Each comparison is the arm minus the baseline with a 95 % confidence interval from
Welch's t-test (scipy's ``ttest_ind_from_stats`` for the p-value, the t quantile for the
interval), fed with each arm's mean and standard deviation: successful-message cost and
latency from the rollups' sums of squares, failures and fallbacks as 0/1 outcomes,
revenue per message from the outcomes. ``significant`` is p < 0.05. The latency
percentiles, which only histograms hold, get a percentile bootstrap of the histograms
instead (numpy, 2,000 multinomial resamples, a fixed seed). An arm with fewer than
``MIN_MESSAGES`` messages gets no interval; ``needs_more_messages`` says how many more
messages each arm needs: up to that minimum, then (while the cost difference is not
significant) to detect the observed difference with 80 % power. scipy and numpy are
imported here only, when a report is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from huntaze_cli.config import Config, ExperimentConfig
from huntaze_cli.costs.reports import percentile
from huntaze_cli.errors import NotFoundError
from huntaze_cli.money import nano_to_usd
from huntaze_cli.storage.ledger import Ledger, UsageRollup

MIN_MESSAGES = 30
ALPHA = 0.05
POWER = 0.80


@dataclass(slots=True)
class ArmRevenue:
    """Outcomes of one arm's fans: revenue (nano), conversions, sum of squared USD."""

    revenue_nano: int = 0
    conversions: int = 0
    revenue_sq: float = 0.0
    outcomes: int = 0

    def add(self, revenue_nano: int, converted: bool) -> None:
        self.revenue_nano += revenue_nano
        self.conversions += converted
        self.revenue_sq += (revenue_nano / 1e9) ** 2
        self.outcomes += 1


class ArmFigures(BaseModel):
    arm: str
    overrides: dict[str, Any]
    split_pct: float
    messages: int
    attempts: int
    cost_usd: float
    cost_nano: int
    cost_per_message_usd: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_mean_ms: float | None
    failure_pct: float
    fallback_pct: float
    output_tokens_mean: float | None
    revenue_usd: float | None = None
    conversions: int | None = None
    revenue_per_message_usd: float | None = None
    needs_more_messages: int = 0


class Comparison(BaseModel):
    metric: str
    arm: str
    baseline: str
    difference: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool


class ExperimentReport(BaseModel):
    """`huntaze experiments report NAME --json` and `GET /api/v2/experiments/{name}`."""

    model_config = ConfigDict(defer_build=True)

    name: str
    enabled: bool
    scope: dict[str, Any]
    baseline: str
    since: datetime
    until: datetime
    arms: list[ArmFigures]
    comparison: list[Comparison]
    verdict: str


class ExperimentSummary(BaseModel):
    name: str
    enabled: bool
    arms: dict[str, dict[str, Any]]
    split: dict[str, float]
    scope: dict[str, Any]
    baseline: str


class ExperimentList(BaseModel):
    model_config = ConfigDict(defer_build=True)

    experiments: list[ExperimentSummary]


def list_experiments(config: Config) -> ExperimentList:
    return ExperimentList(
        experiments=[
            ExperimentSummary(
                name=name,
                enabled=exp.enabled,
                arms={arm: o.model_dump(exclude_none=True) for arm, o in exp.arms.items()},
                split=dict(exp.shares()),
                scope=exp.scope.model_dump(exclude_none=True),
                baseline=exp.baseline_arm,
            )
            for name, exp in sorted(config.experiments.items())
        ]
    )


# --- statistics ---------------------------------------------------------------------------


class _Sample:
    """Mean, standard deviation and size of one arm's metric."""

    def __init__(self, mean: float, sd: float, n: int) -> None:
        self.mean, self.sd, self.n = mean, sd, n

    @classmethod
    def from_sums(cls, total: float, squares: float, n: int) -> _Sample:
        mean = total / n
        variance = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
        return cls(mean, math.sqrt(variance), n)

    @classmethod
    def proportion(cls, hits: int, n: int) -> _Sample:
        p = hits / n
        return cls(p, math.sqrt(p * (1 - p) * n / (n - 1)) if n > 1 else 0.0, n)


def _welch(
    arm: _Sample, base: _Sample, difference: float
) -> tuple[float | None, float | None, float | None, bool]:
    """(ci_low, ci_high, p_value, significant) of ``arm - base`` by Welch's t-test."""
    from scipy import stats

    va, vb = arm.sd**2 / arm.n, base.sd**2 / base.n
    se = math.sqrt(va + vb)
    if se == 0:
        # No spread in either arm: the difference is exact.
        return difference, difference, None, difference != 0
    dof = (va + vb) ** 2 / (va**2 / (arm.n - 1) + vb**2 / (base.n - 1))
    half = float(stats.t.ppf(1 - ALPHA / 2, dof)) * se
    result = stats.ttest_ind_from_stats(
        arm.mean, arm.sd, arm.n, base.mean, base.sd, base.n, equal_var=False
    )
    p_value = float(result.pvalue)
    return difference - half, difference + half, p_value, p_value < ALPHA


BOOTSTRAP_RESAMPLES = 2000


def _quantile_difference(
    arm: list[int], base: list[int], q: float
) -> tuple[float, float, float, float, bool] | None:
    """(difference, ci_low, ci_high, p_value, significant) of the q-quantile of two
    latency histograms, by a percentile bootstrap: each arm's histogram is resampled
    (multinomial, fixed seed, so a report is reproducible) and the interpolated quantile
    recomputed, as ``percentile`` does."""
    import numpy as np

    from huntaze_cli.storage.ledger import LATENCY_BOUNDS_MS

    point_a, point_b = percentile(arm, q), percentile(base, q)
    if point_a is None or point_b is None:
        return None
    upper = np.array([*LATENCY_BOUNDS_MS, LATENCY_BOUNDS_MS[-1]], dtype=float)
    lower = np.array([0.0, *LATENCY_BOUNDS_MS], dtype=float)
    rng = np.random.default_rng(0)

    def resampled(histogram: list[int]) -> Any:
        counts = np.asarray(histogram, dtype=float)
        n = int(counts.sum())
        draws = rng.multinomial(n, counts / n, size=BOOTSTRAP_RESAMPLES).astype(float)
        cumulative = draws.cumsum(axis=1)
        rank = q * n
        index = (cumulative >= rank).argmax(axis=1)
        rows = np.arange(BOOTSTRAP_RESAMPLES)
        inside = draws[rows, index]
        seen = cumulative[rows, index] - inside
        share = np.divide(rank - seen, inside, out=np.zeros_like(inside), where=inside > 0)
        return lower[index] + (upper[index] - lower[index]) * share

    differences = resampled(arm) - resampled(base)
    low, high = (float(v) for v in np.quantile(differences, [ALPHA / 2, 1 - ALPHA / 2]))
    tail = min(float((differences <= 0).mean()), float((differences >= 0).mean()))
    p_value = min(1.0, 2 * tail)
    return point_a - point_b, low, high, p_value, low > 0 or high < 0


def _needed_per_arm(arm: _Sample, base: _Sample) -> int | None:
    """Messages per arm to detect the observed difference of means with 80 % power."""
    from scipy import stats

    delta = abs(arm.mean - base.mean)
    if delta == 0:
        return None
    z = float(stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER))
    return math.ceil(z * z * (arm.sd**2 + base.sd**2) / (delta * delta))


# --- report --------------------------------------------------------------------------------


def _figures(
    arm: str,
    experiment: ExperimentConfig,
    usage: UsageRollup | None,
    revenue: ArmRevenue | None,
) -> ArmFigures:
    u = usage or UsageRollup(datetime.now(UTC).date(), "", "", None, None, arm)
    shares = dict(experiment.shares())
    figures = ArmFigures(
        arm=arm,
        overrides=experiment.arms[arm].model_dump(exclude_none=True),
        split_pct=round(shares[arm], 4),
        messages=u.ok,
        attempts=u.attempts,
        cost_usd=nano_to_usd(u.cost_nano),
        cost_nano=u.cost_nano,
        cost_per_message_usd=round(u.cost_nano / u.ok / 1e9, 9) if u.ok else None,
        latency_p50_ms=percentile(u.latency, 0.50),
        latency_p95_ms=percentile(u.latency, 0.95),
        latency_mean_ms=round(u.latency_sum / u.ok, 3) if u.ok else None,
        failure_pct=round(100 * u.errors / u.attempts, 4) if u.attempts else 0.0,
        fallback_pct=round(100 * u.fallbacks / u.ok, 4) if u.ok else 0.0,
        output_tokens_mean=round(u.output_tokens / u.ok, 2) if u.ok else None,
    )
    if revenue is not None:
        figures.revenue_usd = nano_to_usd(revenue.revenue_nano)
        figures.conversions = revenue.conversions
        figures.revenue_per_message_usd = (
            round(revenue.revenue_nano / u.ok / 1e9, 9) if u.ok else None
        )
    return figures


def _samples(u: UsageRollup, revenue: ArmRevenue | None) -> dict[str, tuple[float, _Sample]]:
    """metric -> (point estimate, sample for the test)."""
    cost = _Sample.from_sums((u.cost_nano - u.error_cost_nano) / 1e9, u.cost_sq, u.ok)
    extra = {}
    if revenue is not None:
        # Fans with no outcome brought nothing: zeros in the sample.
        total = revenue.revenue_nano / 1e9
        extra["revenue_per_message_usd"] = (
            total / u.ok,
            _Sample.from_sums(total, revenue.revenue_sq, max(u.ok, revenue.outcomes)),
        )
    return extra | {
        "cost_per_message_usd": (u.cost_nano / u.ok / 1e9, cost),
        "latency_mean_ms": (
            u.latency_sum / u.ok,
            _Sample.from_sums(u.latency_sum, u.latency_sq, u.ok),
        ),
        "failure_pct": (100 * u.errors / u.attempts, _Sample.proportion(u.errors, u.attempts)),
        "fallback_pct": (100 * u.fallbacks / u.ok, _Sample.proportion(u.fallbacks, u.ok)),
    }


_SCALE = {"failure_pct": 100.0, "fallback_pct": 100.0}


def experiment_report(
    config: Config,
    ledger: Ledger,
    name: str,
    *,
    days: int = 30,
    revenue: Mapping[str, ArmRevenue] | None = None,
    now: datetime | None = None,
) -> ExperimentReport:
    """Per-arm figures of experiment ``name`` over the last ``days`` UTC days."""
    experiment = config.experiments.get(name)
    if experiment is None:
        known = ", ".join(sorted(config.experiments)) or "none configured"
        raise NotFoundError(
            f"experiment {name!r} not found; configured: {known}",
            hint="add [experiments.<name>] to the config",
        )
    now = (now or datetime.now(UTC)).astimezone(UTC)
    first = now.date() - timedelta(days=days - 1)
    rows = ledger.usage_groups(first, now.date() + timedelta(days=1), ["arm"], experiment=name)
    totals = {row.arm: row for row in rows if row.arm is not None}
    baseline = experiment.baseline_arm
    arms = [
        _figures(
            arm, experiment, totals.get(arm), revenue.get(arm, ArmRevenue()) if revenue else None
        )
        for arm in experiment.arms
    ]
    comparison: list[Comparison] = []
    base = totals.get(baseline)
    needs = {figures.arm: max(MIN_MESSAGES - figures.messages, 0) for figures in arms}
    if base is not None and base.ok >= MIN_MESSAGES:
        base_samples = _samples(base, revenue.get(baseline, ArmRevenue()) if revenue else None)
        for arm, usage in totals.items():
            if arm == baseline or arm not in experiment.arms or usage.ok < MIN_MESSAGES:
                continue
            arm_revenue = revenue.get(arm, ArmRevenue()) if revenue else None
            for metric, (point, sample) in _samples(usage, arm_revenue).items():
                base_point, base_sample = base_samples[metric]
                scale = _SCALE.get(metric, 1.0)
                difference = point - base_point
                low, high, p_value, significant = _welch(sample, base_sample, difference / scale)
                comparison.append(
                    Comparison(
                        metric=metric,
                        arm=arm,
                        baseline=baseline,
                        difference=round(difference, 9),
                        ci_low=None if low is None else round(low * scale, 9),
                        ci_high=None if high is None else round(high * scale, 9),
                        p_value=None if p_value is None else round(p_value, 6),
                        significant=significant,
                    )
                )
                if metric == "latency_mean_ms":
                    comparison.extend(_latency_quantiles(arm, usage, baseline, base))
                if metric == "cost_per_message_usd" and not significant:
                    wanted = _needed_per_arm(sample, base_sample)
                    if wanted is not None:
                        needs[arm] = max(needs[arm], wanted - usage.ok)
                        needs[baseline] = max(needs[baseline], wanted - base.ok)
    for figures in arms:
        figures.needs_more_messages = needs[figures.arm]
    return ExperimentReport(
        name=name,
        enabled=experiment.enabled,
        scope=experiment.scope.model_dump(exclude_none=True),
        baseline=baseline,
        since=datetime(first.year, first.month, first.day, tzinfo=UTC),
        until=datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1),
        arms=arms,
        comparison=comparison,
        verdict=_verdict(arms, comparison),
    )


def _latency_quantiles(
    arm: str, usage: UsageRollup, baseline: str, base: UsageRollup
) -> list[Comparison]:
    out = []
    for metric, q in (("latency_p50_ms", 0.50), ("latency_p95_ms", 0.95)):
        found = _quantile_difference(usage.latency, base.latency, q)
        if found is None:
            continue
        difference, low, high, p_value, significant = found
        out.append(
            Comparison(
                metric=metric,
                arm=arm,
                baseline=baseline,
                difference=round(difference, 3),
                ci_low=round(low, 3),
                ci_high=round(high, 3),
                p_value=round(p_value, 6),
                significant=significant,
            )
        )
    return out


def _verdict(arms: list[ArmFigures], comparison: list[Comparison]) -> str:
    waiting = [
        f"{a.arm} needs {a.needs_more_messages:,} more" for a in arms if a.needs_more_messages
    ]
    cost = [c for c in comparison if c.metric == "cost_per_message_usd"]
    found = [
        f"{c.arm} costs {'less' if c.difference < 0 else 'more'} per message than {c.baseline} "
        f"({c.difference:+.6f} USD, 95 % CI {c.ci_low:+.6f} .. {c.ci_high:+.6f})"
        for c in cost
        if c.significant and c.ci_low is not None and c.ci_high is not None
    ]
    parts = found + (["not enough messages yet: " + ", ".join(waiting)] if waiting else [])
    return "; ".join(parts) or "no significant cost difference"
