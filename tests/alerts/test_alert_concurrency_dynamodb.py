"""Overlapping crons on DynamoDB (moto server): see test_alert_concurrency.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.alerts.test_alert_concurrency import (
    ROUNDS,
    _alerts_per_threshold,
    _env,
    _event,
    _round,
    _wait_for_mail,
    smtp,
)
from tests.alerts.test_thresholds import SMTPServer

pytestmark = pytest.mark.slow
__all__ = ["smtp"]  # the fixture, shared


def test_overlapping_runs_on_dynamodb_alert_once(
    tmp_path: Path, smtp: SMTPServer, moto_server: str
) -> None:
    from huntaze_cli.storage.aws.dynamodb_ledger import DynamoDBLedger

    for n in range(ROUNDS):
        table = f"alerts-{n}-{time.time_ns()}"
        ledger = DynamoDBLedger(
            table, region="us-east-1", endpoint_url=moto_server, create_tables=True
        )
        ledger.record([_event()])
        ledger.close()
        env = _env(
            tmp_path / f"round-{n}",
            smtp.port,
            {
                "HUNTAZE_LEDGER__BACKEND": "dynamodb",
                "HUNTAZE_LEDGER__TABLE": table,
                "HUNTAZE_LEDGER__ENDPOINT_URL": moto_server,
                "HUNTAZE_LEDGER__REGION": "us-east-1",
            },
        )
        before = len(smtp.messages)
        _round(env)
        _wait_for_mail(smtp, before)
        assert _alerts_per_threshold(smtp, before) == {"daily": 1, "monthly": 1}, f"round {n}"
