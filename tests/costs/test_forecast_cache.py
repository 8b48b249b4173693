"""The forecast cache ages by the report's clock: a ManualClock moves it days on."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from huntaze_cli.clock import ManualClock
from huntaze_cli.config import load_config
from huntaze_cli.costs.forecast_report import CACHE_KEEP_S, forecast_report
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from tests.costs.history import hourly_events, record


def test_fits_older_than_the_keep_are_pruned_by_the_clock() -> None:
    now = datetime.now(UTC)
    record(hourly_events(10, now=now))
    config = load_config()
    directory = config.forecast_cache_dir
    directory.mkdir(parents=True, exist_ok=True)
    stale, fresh = directory / "stale.npz", directory / "fresh.npz"
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    later = time.time() + CACHE_KEEP_S + 600  # the clock, ten minutes past the keep
    os.utime(fresh, (later - 60, later - 60))  # written a minute before that
    with SQLiteLedger(config.ledger_path) as ledger:
        report = forecast_report(config, ledger, now=now, clock=ManualClock(later))
    assert report.forecast_usd is not None  # a fit was made, and cached
    assert not stale.exists()
    assert fresh.exists()
    assert len(list(directory.glob("*.npz"))) == 2  # fresh.npz and the new fit
