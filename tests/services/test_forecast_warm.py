"""Warming the day's forecast ahead of the first request: `serve` and `worker` fit it in
the background, so the first `costs forecast` of the day reads the cache instead of
importing statsmodels and fitting."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from huntaze_cli.config import load_config
from huntaze_cli.services import Services, costs
from tests.costs.history import hourly_events, record

# `costs forecast --json` in a fresh interpreter; says on stderr whether it fitted a model.
FORECAST_AND_SAY_IF_FITTED = """
import runpy, sys
sys.argv = ["huntaze", "costs", "forecast", "--json"]
try:
    runpy.run_module("huntaze_cli", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
print("fitted" if "statsmodels" in sys.modules else "cached", file=sys.stderr)
"""


def _forecast_in_a_new_process() -> str:
    done = subprocess.run(
        [sys.executable, "-c", FORECAST_AND_SAY_IF_FITTED],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr.strip().splitlines()[-1]


def test_a_warmed_forecast_is_read_without_fitting() -> None:
    record(hourly_events(30))  # weeks of history: the ETS model, fitted with statsmodels
    services = Services()
    try:
        day = costs.warm_forecast(services)
    finally:
        services.close()
    assert day == datetime.now(UTC).astimezone(load_config().thresholds.tz).date()
    assert _forecast_in_a_new_process() == "cached"
    # And without the warm-up the same call fits: the check above can fail.
    for path in load_config().forecast_cache_dir.glob("*.npz"):
        path.unlink()
    assert _forecast_in_a_new_process() == "fitted"


def test_a_running_worker_warms_the_forecast_and_still_stops_cleanly() -> None:
    record(hourly_events(30))
    cache = load_config().forecast_cache_dir
    worker = subprocess.Popen(
        [sys.executable, "-m", "huntaze_cli", "worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("*.npz")) and worker.poll() is None:
            assert time.monotonic() < deadline, "the worker never warmed the forecast"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert list(cache.glob("*.npz"))
    assert _forecast_in_a_new_process() == "cached"


# The daemon's own warm-up loop, one round, in a fresh interpreter: says whether the
# warming process itself imported statsmodels.
WARM_ONCE_AND_SAY_IF_IMPORTED = """
import asyncio, sys
from huntaze_cli.services import Services, costs

async def main():
    services = Services()
    rounds = []
    def stopping():
        rounds.append(1)
        return len(rounds) > 1
    costs.WARM_CHECK_S = 0
    try:
        await costs.keep_forecast_warm(services, stopping)
    finally:
        services.close()

asyncio.run(main())
print("imported" if "statsmodels" in sys.modules else "clean", file=sys.stderr)
"""


def test_the_daemon_warms_the_forecast_without_holding_statsmodels() -> None:
    """The fit runs in a child process: serve stays within its idle memory budget."""
    record(hourly_events(30))
    done = subprocess.run(
        [sys.executable, "-c", WARM_ONCE_AND_SAY_IF_IMPORTED],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr.strip().splitlines()[-1] == "clean"
    assert list(load_config().forecast_cache_dir.glob("*.npz"))
    assert _forecast_in_a_new_process() == "cached"
