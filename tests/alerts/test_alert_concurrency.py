"""Overlapping crons: 8 `check-thresholds` processes at once send each alert exactly once.

Each round starts from a fresh ledger (a SQLite file here; a DynamoDB table on one moto
server in test_alert_concurrency_dynamodb.py, a file of its own so the two run in
parallel) holding one event that breaches both the daily and the monthly threshold,
runs 8 real `huntaze check-thresholds` processes at the same moment against a real
SMTP server (aiosmtpd), and counts what arrived: one alert per threshold, never two.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from huntaze_cli.models import CostEvent
from huntaze_cli.money import usd_to_nano
from tests.alerts.test_thresholds import SMTPServer, free_port

pytestmark = pytest.mark.slow

PROCESSES = 8
ROUNDS = int(os.environ.get("HUNTAZE_ALERT_DRILL_ROUNDS", "20"))


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(free_port())
    server.start(auth_require_tls=False)
    yield server
    server.stop()


def _event() -> CostEvent:
    return CostEvent(
        attempt_id=uuid4().hex,
        request_id=uuid4().hex,
        ts=datetime.now(UTC),
        provider="openai",
        model="gpt-4o-mini",
        cost_nano=usd_to_nano("90"),
    )


def _env(tmp: Path, smtp_port: int, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTAZE_")}
    env.update(
        {
            "XDG_DATA_HOME": str(tmp / "data"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "HUNTAZE_THRESHOLDS__DAILY_USD": "50",
            "HUNTAZE_THRESHOLDS__MONTHLY_USD": "60",
            "HUNTAZE_ALERTS__CHANNELS": '["email"]',
            "HUNTAZE_ALERTS__EMAIL_TO": '["ops@example.com"]',
            "HUNTAZE_ALERTS__SMTP_HOST": "127.0.0.1",
            "HUNTAZE_ALERTS__SMTP_PORT": str(smtp_port),
            **extra,
        }
    )
    return env


def _round(env: dict[str, str]) -> list[int]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "huntaze_cli", "check-thresholds", "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    codes = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, err.decode()
        codes.append(proc.returncode)
    return codes


def _alerts_per_threshold(smtp: SMTPServer, since: int) -> dict[str, int]:
    counts = {"daily": 0, "monthly": 0}
    for message in smtp.messages[since:]:
        body = message.get_payload()
        assert isinstance(body, str)
        counts["daily"] += body.count("global-daily (all) reached 100%")
        counts["monthly"] += body.count("global-monthly (all) reached 100%")
    return counts


def _wait_for_mail(smtp: SMTPServer, since: int) -> None:
    # aiosmtpd hands a message over just after the client saw "250"; give it a moment.
    deadline = time.monotonic() + 5
    while len(smtp.messages) <= since and time.monotonic() < deadline:
        time.sleep(0.02)


def test_overlapping_runs_on_sqlite_alert_once(tmp_path: Path, smtp: SMTPServer) -> None:
    from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

    for n in range(ROUNDS):
        round_dir = tmp_path / f"round-{n}"
        env = _env(round_dir, smtp.port, {})
        with SQLiteLedger(round_dir / "data" / "huntaze" / "ledger.db") as ledger:
            ledger.record([_event()])
        before = len(smtp.messages)
        _round(env)
        _wait_for_mail(smtp, before)
        assert _alerts_per_threshold(smtp, before) == {"daily": 1, "monthly": 1}, f"round {n}"
