"""Forecast and anomaly benchmark, printed against the targets of issue 13 / DESIGN.md.

    python bench/forecast.py                 # everything (the 1M-event ledger is cached)
    python bench/forecast.py --months 12 --parts accuracy,spikes

1. Month-end accuracy. Generated hourly cost series of six shapes (flat, growing, weekly
   seasonality, a campaign burst on the 3rd, a +60 % level change on the 15th, noisy),
   8 weeks of history before each month, months of 28-31 days starting on any weekday.
   Noisy: day-to-day volume varies by 25 % (lognormal) and hours by 20 %.
   Forecasts are made at the start of days 7, 14 and 21 (6, 13 and 20 complete days
   spent), by `costs.forecast` (what `costs forecast` runs) and by the naive run rate
   (spent / days elapsed x days in the month). Reported: MAPE of the month-end total for
   both, the reduction, and the share of months whose actual total falls inside the 80 %
   interval. Targets: MAPE >= 30 % lower than the run rate on the weekly and burst shapes,
   no worse on the flat one; coverage between 70 % and 90 %.
2. Spikes. 3x one-hour spikes injected into 30 days of each hourly series (after 28 days
   of history), found by `costs.anomalies` as `costs anomalies` runs it. Targets: recall
   >= 0.9, at most one false alarm per 30 days per series. The spike series' level change
   is +40 % (a change the detector should stay quiet about: a spike is >= 1.8 x the usual).
3. Latency: `huntaze costs forecast --json` whole process on a 1M-event ledger, cold (the
   first of the day with no `serve` or `worker` running: imports statsmodels and fits)
   and warm (later ones, or the first with `serve`/`worker` running: the cache), on a
   ledger of 30 days (the backtest's windows are too young for the model) and one of 90
   (every window but the first replays the model), where `--by account` (12 accounts
   modelled) is timed too. Importing statsmodels alone is about 1.1 s of CPU, printed
   for scale. Target <= 1.5 s.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from ledger import _env, build_ledger  # noqa: E402  (bench/ledger.py)

from huntaze_cli.costs import anomalies as an  # noqa: E402
from huntaze_cli.costs import forecast as fc  # noqa: E402

SHAPES = ("flat", "growing", "weekly", "burst", "level_change", "noisy")
FORECAST_DAYS = (7, 14, 21)
HISTORY_DAYS = 56
HOUR_SHAPE = np.array([0.25] * 7 + [1.2] * 11 + [0.9] * 6)  # quiet nights
HOUR_SHAPE = HOUR_SHAPE / HOUR_SHAPE.mean()
WEEKDAY = np.array([1.15, 1.2, 1.2, 1.15, 1.1, 0.6, 0.6])  # quiet weekends
TARGET_LATENCY_S = 1.5


def hourly_series(
    shape: str, days: int, *, month_start: int, rng: np.random.Generator, level_change: float
) -> tuple[np.ndarray, np.ndarray]:
    """Hourly spend (dollars) for ``days`` days, where day ``month_start`` is the 1st, and
    the mask of hours that belong to a campaign burst."""
    t = np.arange(days)
    weekday = (t + rng.integers(0, 7)) % 7
    base = 100.0 * rng.uniform(0.5, 2.0)
    daily = np.full(days, base)
    noise = 0.12
    if shape == "growing":
        daily = base * (1 + 0.012 * (t - month_start))
    elif shape in ("weekly", "burst"):
        daily = base * WEEKDAY[weekday]
    elif shape == "level_change":
        daily = np.where(t >= month_start + 14, base * level_change, base)
    elif shape == "noisy":
        # Volume that varies a lot from day to day, and noisier hours.
        daily = base * rng.lognormal(-(0.25**2) / 2, 0.25, days)
        noise = 0.2
    if shape == "flat":
        noise = 0.06
    hours = np.repeat(daily / 24.0, 24) * np.tile(HOUR_SHAPE, days)
    hours *= rng.lognormal(-(noise**2) / 2, noise, len(hours))
    burst = np.zeros(len(hours), dtype=bool)
    if shape == "burst":
        # Campaigns: one on the 3rd of the month, one now and then in the history.
        for day in (month_start + 2, int(rng.integers(3, month_start - 3))):
            span = slice(day * 24 + 9, day * 24 + 15)
            hours[span] += daily[day] * rng.uniform(1.0, 2.0) / 6 * 5
            burst[span] = True
    return hours, burst


def accuracy(months: int) -> dict[str, dict[int, list[tuple[float, float, bool]]]]:
    """Per shape and forecast day: (our APE, run-rate APE, inside the 80 % interval)."""
    out: dict[str, dict[int, list[tuple[float, float, bool]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for shape in SHAPES:
        for month in range(months):
            rng = np.random.default_rng(1000 * SHAPES.index(shape) + month)
            length = int(rng.choice([28, 30, 31, 31, 30, 31]))
            hours, _ = hourly_series(
                shape, HISTORY_DAYS + length, month_start=HISTORY_DAYS, rng=rng, level_change=1.6
            )
            days = hours.reshape(-1, 24).sum(axis=1)
            actual = float(days[HISTORY_DAYS:].sum())
            for day in FORECAST_DAYS:
                elapsed = day - 1
                known = days[: HISTORY_DAYS + elapsed]
                spent = float(days[HISTORY_DAYS : HISTORY_DAYS + elapsed].sum())
                # As `costs forecast` does: one fit, whose backtest calibrates the spread.
                paths, windows = fc.forecast(
                    known, elapsed=elapsed, horizon=length - elapsed, seed=month
                )
                spread = fc.spread_factor(windows, 80)
                end = fc.month_end(paths, spent=spent, today_left=1.0, level_pct=80, spread=spread)
                assert end is not None
                run_rate = spent / elapsed * length
                out[shape][day].append(
                    (
                        abs(end.forecast - actual) / actual,
                        abs(run_rate - actual) / actual,
                        end.lower <= actual <= end.upper,
                    )
                )
    return out


def spikes(series_per_shape: int) -> dict[str, tuple[int, int, int, float]]:
    """Per shape: (injected, found, false alarms, days judged)."""
    out = {}
    judged_days = 30
    for shape in SHAPES:
        injected = found = false = 0
        for n in range(series_per_shape):
            rng = np.random.default_rng(50_000 + 100 * SHAPES.index(shape) + n)
            total_days = 28 + judged_days
            hours, burst = hourly_series(
                shape, total_days, month_start=34, rng=rng, level_change=1.4
            )
            usual = hours.copy()
            # The campaigns are real spikes, not false alarms.
            burst_hours = {int(i) for i in np.flatnonzero(burst)}
            start = 28 * 24
            at = sorted(int(i) for i in rng.choice(np.arange(start, len(hours)), 10, replace=False))
            for i in at:
                hours[i] = usual[i] * 3
            hit = {s.index for s in an.hourly_spikes(hours, start=start)}
            injected += len(at)
            found += len(hit & set(at))
            false += len(hit - set(at) - burst_hours)
        out[shape] = (injected, found, false, series_per_shape * judged_days)
    return out


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall_s, cpu


def latency(runs: int, days: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) of `costs forecast --json` cold and warm (and `--by account` on
    the long ledger), and `costs stats --json` for scale (the machine is shared: CPU time
    moves less than wall time)."""
    data_dir = HERE / ".data" / ("ledger" if days == 30 else f"ledger-{days}d")
    build_ledger(1_000_000, data_dir, days=days)
    env = _env(data_dir)
    cache = data_dir / "huntaze" / "forecast-cache"
    exe = shutil.which("huntaze") or str(Path(sys.executable).parent / "huntaze")
    forecast = [exe, "costs", "forecast", "--json"]
    commands = {"cold": forecast, "warm": forecast}
    if days > 30:
        commands["cold_by"] = [*forecast, "--by", "account"]
        commands["warm_by"] = commands["cold_by"]
    commands["stats"] = [exe, "costs", "stats", "--json"]
    commands["import"] = [sys.executable, "-c", IMPORT_STATSMODELS]
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    _timed(forecast, env)  # page cache
    for _ in range(runs):
        for name, cmd in commands.items():
            if name.startswith("cold"):
                shutil.rmtree(cache, ignore_errors=True)
            out[name].append(_timed(cmd, env))
    return {
        name: (statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows))
        for name, rows in out.items()
    }


IMPORT_STATSMODELS = "from statsmodels.tsa.exponential_smoothing.ets import ETSModel"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=16, help="months per shape")
    parser.add_argument("--spike-series", type=int, default=8, help="hourly series per shape")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--parts",
        default="accuracy,spikes,latency,latency90",
        help="comma-separated parts to run (latency: 30-day ledger, latency90: 90 days)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "accuracy" in parts:
        bench_accuracy(args.months)
    if "spikes" in parts:
        bench_spikes(args.spike_series)
    if "latency" in parts:
        bench_latency(args.runs, 30)
    if "latency90" in parts:
        bench_latency(args.runs, 90)


def bench_accuracy(months: int) -> None:
    started = time.perf_counter()
    results = accuracy(months)
    print(f"month-end forecasts: {months} months per shape, made on days 7, 14, 21")
    print(f"{'shape':<13} {'day':>4} {'MAPE ours':>10} {'run rate':>9} {'reduction':>10} "
          f"{'80% cover':>10}")  # fmt: skip
    inside_all: list[bool] = []
    for shape in SHAPES:
        ours_all, naive_all, inside_shape = [], [], []
        for day in FORECAST_DAYS:
            rows = results[shape][day]
            ours = 100 * float(np.mean([r[0] for r in rows]))
            naive = 100 * float(np.mean([r[1] for r in rows]))
            cover = 100 * float(np.mean([r[2] for r in rows]))
            ours_all += [r[0] for r in rows]
            naive_all += [r[1] for r in rows]
            inside_shape += [r[2] for r in rows]
            print(f"{shape:<13} {day:>4} {ours:>9.2f}% {naive:>8.2f}% "
                  f"{100 * (1 - ours / naive):>9.1f}% {cover:>9.1f}%")  # fmt: skip
        ours = 100 * float(np.mean(ours_all))
        naive = 100 * float(np.mean(naive_all))
        reduction = 100 * (1 - ours / naive)
        cover = 100 * float(np.mean(inside_shape))
        inside_all += inside_shape
        target = {"weekly": reduction >= 30, "burst": reduction >= 30, "flat": ours <= naive}
        verdict = "" if shape not in target else ("  meets" if target[shape] else "  MISSES")
        print(f"{shape:<13} {'all':>4} {ours:>9.2f}% {naive:>8.2f}% {reduction:>9.1f}% "
              f"{cover:>9.1f}%{verdict}")  # fmt: skip
    coverage = 100 * float(np.mean(inside_all))
    ok = "meets" if 70 <= coverage <= 90 else "MISSES"
    print(f"80 % interval coverage, all shapes and days: {coverage:.1f}%  target 70-90 %  {ok}")
    print(f"  ({time.perf_counter() - started:.0f} s)")
    print()


def bench_spikes(series: int) -> None:
    print(f"3x one-hour spikes: {series} hourly series per shape, 10 spikes each, "
          "30 days judged")  # fmt: skip
    total_found = total_injected = 0
    worst_rate = 0.0
    for shape, (injected, found, false, days) in spikes(series).items():
        rate = false / (days / 30) / 1  # per 30 days per series
        worst_rate = max(worst_rate, rate)
        total_found += found
        total_injected += injected
        print(f"{shape:<13} recall {found / injected:.3f} ({found}/{injected})  "
              f"false alarms {false} = {rate:.2f} per 30 days per series")  # fmt: skip
    recall = total_found / total_injected
    print(f"recall {recall:.3f}  target >= 0.9  {'meets' if recall >= 0.9 else 'MISSES'}; "
          f"worst false-alarm rate {worst_rate:.2f} per 30 days per series  target <= 1  "
          f"{'meets' if worst_rate <= 1 else 'MISSES'}")  # fmt: skip
    print()


def bench_latency(runs: int, days: int) -> None:
    results = latency(runs, days)
    names = {
        "cold": "costs forecast, cold (first of the day: fits)",
        "warm": "costs forecast, warm (cached fit)",
        "cold_by": "costs forecast --by account, cold",
        "warm_by": "costs forecast --by account, warm",
        "stats": "costs stats (for scale: target 250 ms)",
        "import": "importing statsmodels' ETS alone (for scale)",
    }
    print(f"1M events over {days} days:")
    for key, (wall_s, cpu) in results.items():
        ratio = wall_s / TARGET_LATENCY_S
        verdict = "" if key in ("stats", "import") else ("  meets" if ratio <= 1 else "  MISSES")
        target = f"(target <= {TARGET_LATENCY_S * 1000:.0f} ms wall, x{ratio:.2f}){verdict}"
        print(
            f"  {names[key]:<46} wall {wall_s * 1000:>6.0f} ms, CPU {cpu * 1000:>5.0f} ms  {target}"
        )
    print()


if __name__ == "__main__":
    main()
