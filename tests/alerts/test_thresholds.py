"""Threshold evaluation and email alerts against a real SQLite ledger and SMTP server.

Events are placed a few days before the real today so that the ledger's retention
(counted from the real clock) keeps them; each test passes its own ``now``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from huntaze_cli.alerts.channels.email import send_email_smtp
from huntaze_cli.alerts.thresholds import evaluate_thresholds
from huntaze_cli.config import Config
from huntaze_cli.errors import AlertError
from huntaze_cli.models import CostEvent
from huntaze_cli.money import usd_to_nano
from huntaze_cli.storage.sqlite.alerts import SQLiteAlertStore
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

# Two days back: old enough to be in the past whatever the hour, young enough to be kept.
DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
PASSWORD = "s3cr3t-Pa55word-for-smtp"
PASSWORD_ENV = "HUNTAZE_TEST_SMTP_PASSWORD"


# --- a real SMTP server ----------------------------------------------------------------


@dataclass
class Recorder:
    """aiosmtpd handler that keeps every message it accepts."""

    messages: list[Message] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        self.raw.append(content)
        self.messages.append(message_from_bytes(content))
        self.tls.append(session.ssl is not None)
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"alerts" and auth_data.password == PASSWORD.encode()
        # handled=False: aiosmtpd itself answers 235/535 (handled=True would mean we did).
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SMTPServer:
    """Starts and stops an aiosmtpd server on one loopback port."""

    port: int
    recorder: Recorder = field(default_factory=Recorder)
    controller: Controller | None = None

    def start(self, **smtp_options: Any) -> None:
        self.controller = Controller(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="smtp.test",
            authenticator=self.recorder.authenticate,
            **smtp_options,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[Message]:
        return self.recorder.messages


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(free_port())
    server.start(auth_require_tls=False)
    yield server
    server.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SQLiteLedger]:
    with SQLiteLedger(tmp_path / "ledger.db") as opened:
        yield opened


@pytest.fixture
def alerts(tmp_path: Path) -> Iterator[SQLiteAlertStore]:
    store = SQLiteAlertStore(tmp_path / "ledger.db")
    yield store
    store.close()


def sent(alerts: SQLiteAlertStore, rule: str, period: str) -> list[str]:
    """Channels whose alert of ``rule`` in ``period`` went out."""
    return [c.key.channel for c in alerts.claims(rule, "", period) if c.status == "sent"]


# --- helpers -----------------------------------------------------------------------------


def make_config(port: int, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "thresholds": {"daily_usd": "50", "monthly_usd": "1000", "timezone": "UTC"},
        "alerts": {
            "channels": ["email"],
            "email_to": ["ops@example.com"],
            "email_from": "huntaze@example.com",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_timeout_s": 5,
        },
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Config.model_validate(data)


def spend(ledger: SQLiteLedger, ts: datetime, cost_usd: str, provider: str = "openai") -> CostEvent:
    event = CostEvent(
        attempt_id=uuid4().hex,
        request_id=uuid4().hex,
        ts=ts,
        provider=provider,
        model="gpt-4o-mini",
        cost_nano=usd_to_nano(cost_usd),
    )
    assert ledger.record([event]).stored == 1
    return event


def by_name(report: Any) -> dict[str, Any]:
    return {result.name: result for result in report.thresholds}


def at(hour: int, minute: int = 0, *, days: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour, minutes=minute)


# --- evaluation ---------------------------------------------------------------------------


def test_under_both_limits_reports_use_and_sends_nothing(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(9), "7.25", "openai")
    spend(ledger, at(10), "2.75", "azure")
    report = evaluate_thresholds(make_config(smtp.port), ledger, alerts, now=at(12))
    daily, monthly = by_name(report)["global-daily"], by_name(report)["global-monthly"]
    assert not report.breached
    assert (daily.period, daily.limit_usd, daily.spent_usd, daily.used_pct) == (
        DAY.date().isoformat(),
        50.0,
        10.0,
        20.0,
    )
    assert (monthly.period, monthly.limit_usd, monthly.spent_usd, monthly.used_pct) == (
        DAY.strftime("%Y-%m"),
        1000.0,
        10.0,
        1.0,
    )
    assert not daily.alerted and daily.alert_channels == [] and daily.alert_errors == []
    assert smtp.messages == []
    assert alerts.claims("global-daily", "", daily.period) == []


def test_daily_breach_sends_one_email_and_records_it(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(9), "40.123456789", "openai")
    spend(ledger, at(10), "20", "azure")
    report = evaluate_thresholds(make_config(smtp.port), ledger, alerts, now=at(12))
    daily, monthly = by_name(report)["global-daily"], by_name(report)["global-monthly"]
    assert report.breached
    assert daily.breached and not monthly.breached
    assert daily.spent_usd == 60.123457 and daily.used_pct == 120.25
    assert daily.alerted and daily.alert_channels == ["email"]
    assert not monthly.alerted
    [message] = smtp.messages
    assert message["To"] == "ops@example.com" and message["From"] == "huntaze@example.com"
    subject = " ".join(message["Subject"].split())
    assert subject == (
        f"[huntaze] global-daily (all) reached 100% of $50.00 for {DAY.date().isoformat()}:"
        " $60.12 (120.25%)"
    )
    body = message.get_payload()
    assert isinstance(body, str)
    for expected in (
        f"period {DAY.date().isoformat()} (UTC)",
        "limit:    $50.000000",
        "observed: $60.123457",
        "model gpt-4o-mini",
        "alert id: alr_",
    ):
        assert expected in body
    [claim] = alerts.claims("global-daily", "", DAY.date().isoformat())
    assert (claim.key.channel, claim.status, claim.error, claim.updated_at) == (
        "email",
        "sent",
        None,
        at(12),
    )


def test_exactly_at_the_limit_is_a_breach(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(1), "49.999999999")
    below = by_name(evaluate_thresholds(make_config(smtp.port), ledger, alerts, now=at(2)))[
        "global-daily"
    ]
    assert not below.breached and below.used_pct == 100.0
    spend(ledger, at(1), "0.000000001")
    reached = by_name(evaluate_thresholds(make_config(smtp.port), ledger, alerts, now=at(2)))[
        "global-daily"
    ]
    assert reached.breached and reached.spent_usd == 50.0 and reached.used_pct == 100.0


def test_limit_zero_disables_the_threshold(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(1), "75")
    config = make_config(smtp.port, thresholds={"daily_usd": "0"})
    report = evaluate_thresholds(config, ledger, alerts, now=at(2))
    daily = by_name(report)["global-daily"]
    assert (daily.limit_usd, daily.spent_usd, daily.used_pct) == (0.0, 75.0, 0.0)
    assert not daily.breached and not report.breached
    assert smtp.messages == []


def test_monthly_breach_sums_every_day_of_the_month(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    # Two days of one month, both in the past.
    first = DAY if DAY.day > 1 else DAY + timedelta(days=1)
    second = first - timedelta(days=1)
    spend(ledger, second + timedelta(hours=8), "30")
    spend(ledger, first + timedelta(hours=8), "30")
    config = make_config(smtp.port, thresholds={"daily_usd": "100", "monthly_usd": "55"})
    report = evaluate_thresholds(config, ledger, alerts, now=first + timedelta(hours=9))
    daily, monthly = by_name(report)["global-daily"], by_name(report)["global-monthly"]
    assert not daily.breached and daily.spent_usd == 30.0
    assert monthly.breached and monthly.spent_usd == 60.0 and monthly.used_pct == 109.09
    assert monthly.alerted and monthly.alert_channels == ["email"]
    [message] = smtp.messages
    assert "global-monthly (all) reached 100%" in " ".join(message["Subject"].split())
    assert "period " + first.strftime("%Y-%m") + " (UTC)" in str(message)


def test_both_breaches_go_in_one_message_and_are_recorded_separately(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(3), "80")
    config = make_config(smtp.port, thresholds={"daily_usd": "50", "monthly_usd": "60"})
    report = evaluate_thresholds(config, ledger, alerts, now=at(4))
    assert all(result.alerted for result in report.thresholds)
    [message] = smtp.messages
    # The worst news heads the one message: the monthly limit is the more overrun.
    subject = " ".join(message["Subject"].split())
    assert subject.startswith("[huntaze] global-daily (all) reached 100%")
    assert subject.endswith("(+1 more)")
    assert "global-monthly (all) reached 100%" in str(message.get_payload())
    assert sent(alerts, "global-daily", DAY.date().isoformat()) == ["email"]
    assert sent(alerts, "global-monthly", DAY.strftime("%Y-%m")) == ["email"]


# --- time zones -----------------------------------------------------------------------------


def test_an_event_late_in_the_utc_day_counts_in_the_next_tokyo_day(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(23, 30, days=-1), "60")  # 08:30 in Tokyo, on DAY
    tokyo = make_config(smtp.port, thresholds={"timezone": "Asia/Tokyo"})
    report = evaluate_thresholds(tokyo, ledger, alerts, now=at(3), send_alerts=False)  # 12:00 JST
    daily = by_name(report)["global-daily"]
    assert report.timezone == "Asia/Tokyo"
    assert daily.period == DAY.date().isoformat()
    assert daily.spent_usd == 60.0 and daily.breached
    # The same instant in UTC belongs to the previous day.
    utc = evaluate_thresholds(make_config(smtp.port), ledger, alerts, now=at(3), send_alerts=False)
    assert by_name(utc)["global-daily"].spent_usd == 0.0


def test_a_quarter_hour_offset_zone_splits_days_on_the_quarter(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    # Asia/Kathmandu is UTC+05:45: its midnight is 18:15 UTC.
    kathmandu = ZoneInfo("Asia/Kathmandu")
    midnight = datetime.combine(DAY.date() + timedelta(days=1), dt.time(), kathmandu)
    assert midnight.astimezone(UTC) == at(18, 15)
    spend(ledger, midnight - timedelta(seconds=1), "1.5", "azure")
    spend(ledger, midnight, "2.25", "openai")
    config = make_config(smtp.port, thresholds={"timezone": "Asia/Kathmandu"})
    before = evaluate_thresholds(config, ledger, alerts, now=midnight - timedelta(hours=1))
    after = evaluate_thresholds(config, ledger, alerts, now=midnight + timedelta(hours=1))
    assert by_name(before)["global-daily"].period == DAY.date().isoformat()
    assert by_name(before)["global-daily"].spent_usd == 1.5
    assert by_name(after)["global-daily"].period == (DAY.date() + timedelta(days=1)).isoformat()
    assert by_name(after)["global-daily"].spent_usd == 2.25


# --- alert once per period ------------------------------------------------------------------


def test_a_second_run_in_the_same_period_sends_nothing(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(8), "70")
    config = make_config(smtp.port, alerts={"min_interval_minutes": 0})
    first = by_name(evaluate_thresholds(config, ledger, alerts, now=at(9)))["global-daily"]
    spend(ledger, at(10), "5")
    second = by_name(evaluate_thresholds(config, ledger, alerts, now=at(11)))["global-daily"]
    assert len(smtp.messages) == 1
    assert first.alerted and second.alerted
    assert second.alert_channels == ["email"] and second.spent_usd == 75.0
    [claim] = alerts.claims("global-daily", "", DAY.date().isoformat())
    assert claim.status == "sent" and claim.attempts == 1


def test_a_new_period_alerts_again_but_not_within_min_interval(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    config = make_config(smtp.port, alerts={"min_interval_minutes": 30})
    spend(ledger, at(23), "60")
    assert by_name(evaluate_thresholds(config, ledger, alerts, now=at(23, 50)))[
        "global-daily"
    ].alerted
    spend(ledger, at(0, 1, days=1), "60")

    # 15 minutes after the last alert, in a new day: breached, held back as suppressed.
    held = by_name(evaluate_thresholds(config, ledger, alerts, now=at(0, 5, days=1)))[
        "global-daily"
    ]
    next_day = (DAY.date() + timedelta(days=1)).isoformat()
    assert held.period == next_day
    assert held.breached and not held.alerted and held.alert_errors == []
    assert len(smtp.messages) == 1
    assert [c.status for c in alerts.claims("global-daily", "", next_day)] == ["suppressed"]

    # Once the interval has passed the next run sends it.
    sent = by_name(evaluate_thresholds(config, ledger, alerts, now=at(0, 20, days=1)))[
        "global-daily"
    ]
    assert sent.alerted and sent.alert_channels == ["email"]
    assert len(smtp.messages) == 2
    assert next_day in smtp.messages[1].get_payload()


def test_a_failed_send_is_recorded_and_retried_once_the_server_is_back(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(8), "90")
    config = make_config(smtp.port)
    smtp.stop()
    failed = by_name(evaluate_thresholds(config, ledger, alerts, now=at(9)))["global-daily"]
    assert failed.breached and not failed.alerted and failed.alert_channels == []
    [line] = failed.alert_errors
    assert line.startswith(f"email: email alert via SMTP 127.0.0.1:{smtp.port} failed")
    assert "\n" not in line
    [claim] = alerts.claims("global-daily", "", DAY.date().isoformat())
    assert claim.status == "failed" and claim.error and f"127.0.0.1:{smtp.port}" in claim.error

    smtp.start(auth_require_tls=False)
    retried = by_name(evaluate_thresholds(config, ledger, alerts, now=at(9, 5)))["global-daily"]
    assert retried.alerted and retried.alert_channels == ["email"]
    assert retried.alert_errors == []
    assert len(smtp.messages) == 1
    [claim] = alerts.claims("global-daily", "", DAY.date().isoformat())
    assert (claim.status, claim.attempts, claim.error) == ("sent", 2, None)

    evaluate_thresholds(config, ledger, alerts, now=at(9, 10))
    assert len(smtp.messages) == 1


def test_no_alert_mode_only_evaluates(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(8), "90")
    report = evaluate_thresholds(
        make_config(smtp.port), ledger, alerts, now=at(9), send_alerts=False
    )
    daily = by_name(report)["global-daily"]
    assert report.breached and daily.breached and not daily.alerted
    assert smtp.messages == []
    assert alerts.claims("global-daily", "", DAY.date().isoformat()) == []
    assert alerts.last_sent("global-daily", "") is None


def test_no_channels_configured_means_breach_without_alert(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(8), "90")
    config = make_config(smtp.port, alerts={"channels": []})
    daily = by_name(evaluate_thresholds(config, ledger, alerts, now=at(9)))["global-daily"]
    assert daily.breached and not daily.alerted and daily.alert_errors == []
    assert smtp.messages == []


# --- secrets and TLS --------------------------------------------------------------------------


def test_the_password_logs_in_but_appears_nowhere(
    ledger: SQLiteLedger,
    alerts: SQLiteAlertStore,
    smtp: SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    spend(ledger, at(8), "90")
    config = make_config(
        smtp.port, alerts={"smtp_username": "alerts", "smtp_password_env": PASSWORD_ENV}
    )
    report = evaluate_thresholds(config, ledger, alerts, now=at(9))
    assert by_name(report)["global-daily"].alerted
    assert smtp.recorder.logins == [(b"alerts", PASSWORD.encode())]
    [raw] = smtp.recorder.raw
    assert PASSWORD.encode() not in raw
    assert PASSWORD not in report.model_dump_json()


def test_a_rejected_login_is_reported_without_the_password(
    ledger: SQLiteLedger,
    alerts: SQLiteAlertStore,
    smtp: SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong-" + PASSWORD)
    spend(ledger, at(8), "90")
    config = make_config(
        smtp.port, alerts={"smtp_username": "alerts", "smtp_password_env": PASSWORD_ENV}
    )
    report = evaluate_thresholds(config, ledger, alerts, now=at(9))
    [line] = by_name(report)["global-daily"].alert_errors
    assert "535" in line and PASSWORD not in line
    assert PASSWORD not in report.model_dump_json()
    [claim] = alerts.claims("global-daily", "", DAY.date().isoformat())
    assert claim.error and PASSWORD not in claim.error
    assert smtp.messages == []


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SMTPServer]:
    """A relay that requires STARTTLS (and TLS before AUTH), trusted via SSL_CERT_FILE."""
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    server = SMTPServer(free_port())
    server.start(tls_context=context, require_starttls=True, auth_required=True)
    yield server
    server.stop()


def test_starttls_with_login_delivers_over_tls(
    ledger: SQLiteLedger,
    alerts: SQLiteAlertStore,
    tls_smtp: SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    spend(ledger, at(8), "90")
    config = make_config(
        tls_smtp.port,
        alerts={
            "smtp_starttls": True,
            "smtp_username": "alerts",
            "smtp_password_env": PASSWORD_ENV,
        },
    )
    daily = by_name(evaluate_thresholds(config, ledger, alerts, now=at(9)))["global-daily"]
    assert daily.alerted, daily.alert_errors
    assert tls_smtp.recorder.tls == [True]
    assert PASSWORD.encode() not in tls_smtp.recorder.raw[0]


def test_a_relay_requiring_starttls_refuses_a_plain_session(tls_smtp: SMTPServer) -> None:
    config = make_config(tls_smtp.port)
    with pytest.raises(AlertError) as caught:
        send_email_smtp(config.alerts, "subject", "body")
    assert f"SMTP 127.0.0.1:{tls_smtp.port}" in str(caught.value)
    assert "530" in str(caught.value)


def test_starttls_against_a_relay_without_it_fails_clearly(smtp: SMTPServer) -> None:
    config = make_config(smtp.port, alerts={"smtp_starttls": True})
    with pytest.raises(AlertError) as caught:
        send_email_smtp(config.alerts, "subject", "body")
    message = str(caught.value)
    assert message.startswith(f"email alert via SMTP 127.0.0.1:{smtp.port} failed")
    assert "STARTTLS" in message
    assert smtp.messages == []


def test_starttls_rejects_an_untrusted_certificate(
    tls_smtp: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    config = make_config(tls_smtp.port, alerts={"smtp_starttls": True})
    with pytest.raises(AlertError) as caught:
        send_email_smtp(config.alerts, "subject", "body")
    assert "certificate" in str(caught.value).lower()
    assert tls_smtp.messages == []


# --- several channels -------------------------------------------------------------------------


def test_each_channel_alerts_once_and_only_the_failed_one_is_retried(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    import boto3
    from moto import mock_aws
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    spend(ledger, at(8), "90")
    config = make_config(
        smtp.port, alerts={"channels": ["email", "ses"], "ses_region": "us-east-1"}
    )
    with mock_aws():
        # The SES sender is not verified yet: SES refuses, SMTP delivers.
        first = by_name(evaluate_thresholds(config, ledger, alerts, now=at(9)))["global-daily"]
        assert first.alerted and first.alert_channels == ["email"]
        [error] = first.alert_errors
        assert error.startswith("ses: email alert via SES in us-east-1 failed: MessageRejected")

        boto3.client("ses", region_name="us-east-1").verify_email_identity(
            EmailAddress="huntaze@example.com"
        )
        # Five minutes later, inside min_interval: a retry of this period is not held back.
        second = by_name(evaluate_thresholds(config, ledger, alerts, now=at(9, 5)))["global-daily"]
        assert second.alert_channels == ["email", "ses"] and second.alert_errors == []
        assert len(smtp.messages) == 1
        assert len(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages) == 1
    claims = alerts.claims("global-daily", "", DAY.date().isoformat())
    assert [(c.key.channel, c.status, c.attempts) for c in claims] == [
        ("email", "sent", 1),
        ("ses", "sent", 2),
    ]


def test_unpriced_requests_are_counted_and_named_in_the_email(
    ledger: SQLiteLedger, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    spend(ledger, at(8), "90")
    unpriced = CostEvent(
        attempt_id=uuid4().hex,
        request_id=uuid4().hex,
        ts=at(8, 30),
        provider="azure",
        model="house-model-v2",
        priced=False,
    )
    ledger.record([unpriced])
    report = evaluate_thresholds(make_config(smtp.port), ledger, alerts, now=at(9))
    daily = by_name(report)["global-daily"]
    assert report.unpriced_requests == 1 and daily.unpriced_requests == 1
    [message] = smtp.messages
    assert "1 unpriced requests are not in these figures" in str(message.get_payload())


# --- forecast and anomaly rules, through the email channel ---------------------------------


def test_forecast_and_anomaly_rules_alert_by_email(
    tmp_path: Path, alerts: SQLiteAlertStore, smtp: SMTPServer
) -> None:
    today = datetime.now(UTC)
    # Mid-month, so the month-end lies well ahead: the 15th of this month or the last.
    month = today if today.day > 15 else today.replace(day=1) - timedelta(days=1)
    now = month.replace(day=15, hour=12, minute=40, second=0, microsecond=0)
    events = [
        CostEvent(
            attempt_id=uuid4().hex,
            request_id="r",
            ts=now.replace(minute=7) - timedelta(hours=h),
            provider="azure",
            model="gpt-4o",
            account="creator_1",
            cost_nano=usd_to_nano("1"),
        )
        for h in range(20 * 24)
    ]
    # A runaway campaign on creator_1 in the running hour: $4 where $1 is usual.
    events += [
        CostEvent(
            attempt_id=uuid4().hex,
            request_id="r",
            ts=now.replace(minute=20 + n),
            provider="azure",
            model="gpt-4o",
            account="creator_1",
            cost_nano=usd_to_nano("1"),
        )
        for n in range(3)
    ]
    spent = usd_to_nano("24") * (now.day - 1) + usd_to_nano("16")  # this month so far
    rules = [
        {"name": "will-cross", "kind": "forecast", "period": "month",
         "limit_usd": str(Decimal(spent) / 10**9 + 48), "channels": ["email"]},
        {"name": "far-off", "kind": "forecast", "period": "month",
         "limit_usd": "100000", "channels": ["email"]},
        {"name": "runaway", "kind": "anomaly", "scope": {"account": "creator_1"},
         "limit_usd": "2", "channels": ["email"]},
        {"name": "other-account", "kind": "anomaly", "scope": {"account": "creator_2"},
         "limit_usd": "0.01", "channels": ["email"]},
    ]  # fmt: skip
    config = make_config(
        smtp.port, thresholds={"daily_usd": "0", "monthly_usd": "0", "rules": rules}
    )
    # Past the raw events' 30-day retention if need be: these days may be a month back.
    with SQLiteLedger(tmp_path / "ledger.db", retention_days=400) as ledger:
        assert ledger.record(events).stored == len(events)
        report = by_name(evaluate_thresholds(config, ledger, alerts, now=now))
    crossing, runaway = report["will-cross"], report["runaway"]
    assert crossing.spent_nano == spent and crossing.forecast_usd is not None
    assert crossing.breached and crossing.alerted and crossing.alert_channels == ["email"]
    assert runaway.breached and runaway.alerted and runaway.alert_channels == ["email"]
    assert not report["far-off"].breached and not report["far-off"].alerted
    assert not report["other-account"].breached and not report["other-account"].alerted
    [message] = smtp.messages  # both alerts of the run, in one email
    subject = " ".join(message["Subject"].split())
    hour = now.replace(minute=0).isoformat()
    assert subject.startswith(
        f"[huntaze] runaway (account=creator_1) spend anomaly at 100% of $2.00 for hour:{hour}:"
        " $4.00"
    )
    assert subject.endswith("(+1 more)")
    body = str(message.get_payload())
    assert "will-cross (all) is forecast to reach" in body
    kinds = {e.rule: e.kind for e in alerts.history(since=now - timedelta(days=1))}
    assert kinds == {"will-cross": "forecast", "runaway": "anomaly"}
