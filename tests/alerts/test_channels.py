"""Alert channels: SES through moto, and the SMTP failures that need no server."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args
from uuid import uuid4

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from pydantic import ValidationError

from huntaze_cli.alerts.channels import SENDERS
from huntaze_cli.alerts.channels.email import send_email_ses, send_email_smtp
from huntaze_cli.alerts.thresholds import evaluate_thresholds
from huntaze_cli.config import AlertsConfig, Config
from huntaze_cli.errors import AlertError
from huntaze_cli.models import CostEvent
from huntaze_cli.money import usd_to_nano
from huntaze_cli.storage.sqlite.alerts import SQLiteAlertStore
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

REGION = "eu-west-1"
SENDER = "alerts@huntaze.example"


@pytest.fixture
def ses() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ses", region_name=REGION)


def sent_messages() -> list[Any]:
    # moto keeps what SES "sent" in its backend; there is no public API to read it back.
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def ses_config(**values: Any) -> AlertsConfig:
    base: dict[str, Any] = {
        "channels": ["ses"],
        "email_to": ["ops@example.com", "finance@example.com"],
        "email_from": SENDER,
        "ses_region": REGION,
    }
    return AlertsConfig.model_validate(base | values)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_channel_the_config_accepts_has_a_sender() -> None:

    from huntaze_cli.config import AlertChannel

    assert set(get_args(AlertChannel)) == set(SENDERS)
    assert all(callable(sender) for sender in SENDERS.values())
    with pytest.raises(ValidationError, match="channels"):
        AlertsConfig.model_validate({"channels": ["pager"], "email_to": ["ops@example.com"]})


def test_ses_sends_from_a_verified_sender(ses: Any) -> None:
    ses.verify_email_identity(EmailAddress=SENDER)
    send_email_ses(ses_config(), "[huntaze] daily spend threshold breached", "spent: $60.00\n")
    [message] = sent_messages()
    assert message.source == SENDER
    assert message.subject == "[huntaze] daily spend threshold breached"
    assert message.body == "spent: $60.00\n"
    assert message.destinations["ToAddresses"] == ["ops@example.com", "finance@example.com"]


def test_ses_refusal_is_one_line_naming_the_region(ses: Any) -> None:
    with pytest.raises(AlertError) as caught:
        send_email_ses(ses_config(), "subject", "body")
    message = str(caught.value)
    assert message.startswith(f"email alert via SES in {REGION} failed: MessageRejected")
    assert "\n" not in message
    assert sent_messages() == []


def test_ses_without_a_region_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    with mock_aws(), pytest.raises(AlertError, match="set \\[alerts\\] ses_region"):
        send_email_ses(ses_config(ses_region=None), "subject", "body")


@pytest.mark.parametrize("channel", ["email", "ses"])
def test_no_recipients_is_an_alert_error(channel: str) -> None:
    # Config validation refuses channels without recipients; the senders still check.
    config = ses_config(channels=[], email_to=[], smtp_host="127.0.0.1", smtp_port=closed_port())
    with pytest.raises(AlertError, match="no recipients; set \\[alerts\\] email_to"):
        {"email": send_email_smtp, "ses": send_email_ses}[channel](config, "subject", "body")


def test_smtp_to_a_closed_port_names_host_and_port() -> None:
    port = closed_port()
    config = AlertsConfig(email_to=["ops@example.com"], smtp_host="127.0.0.1", smtp_port=port)
    with pytest.raises(AlertError) as caught:
        send_email_smtp(config, "subject", "body")
    assert str(caught.value) == f"email alert via SMTP 127.0.0.1:{port} failed: Connection refused"


def test_smtp_password_variable_unset_is_an_alert_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUNTAZE_TEST_UNSET_PASSWORD", raising=False)
    config = AlertsConfig(
        email_to=["ops@example.com"],
        smtp_host="127.0.0.1",
        smtp_port=closed_port(),
        smtp_username="alerts",
        smtp_password_env="HUNTAZE_TEST_UNSET_PASSWORD",
    )
    with pytest.raises(AlertError, match="HUNTAZE_TEST_UNSET_PASSWORD is not set"):
        send_email_smtp(config, "subject", "body")


def test_check_thresholds_alerts_through_ses(ses: Any, tmp_path: Path) -> None:
    ses.verify_email_identity(EmailAddress=SENDER)
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=6, minute=0, second=0)
    config = Config.model_validate(
        {"thresholds": {"daily_usd": "5"}, "alerts": ses_config().model_dump()}
    )
    with SQLiteLedger(tmp_path / "ledger.db") as ledger:
        ledger.record(
            [
                CostEvent(
                    attempt_id=uuid4().hex,
                    request_id=uuid4().hex,
                    ts=day,
                    provider="azure",
                    model="gpt-4o",
                    cost_nano=usd_to_nano("5.5"),
                )
            ]
        )
        alerts = SQLiteAlertStore(tmp_path / "ledger.db")
        report = evaluate_thresholds(config, ledger, alerts, now=day + timedelta(minutes=30))
        again = evaluate_thresholds(config, ledger, alerts, now=day + timedelta(minutes=45))
        alerts.close()
    daily = {r.name: r for r in report.thresholds}["global-daily"]
    assert daily.breached and daily.alerted and daily.alert_channels == ["ses"]
    assert {r.name: r for r in again.thresholds}["global-daily"].alert_channels == ["ses"]
    [message] = sent_messages()
    assert "period " + day.date().isoformat() + " (UTC)" in message.body
    assert "model gpt-4o" in message.body and "$5.500000" in message.body


def test_importing_the_alerting_core_does_not_import_boto3() -> None:
    code = (
        "import sys\n"
        "import huntaze_cli.alerts.channels.email, huntaze_cli.alerts.thresholds\n"
        "import huntaze_cli.observability.cloudwatch\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
