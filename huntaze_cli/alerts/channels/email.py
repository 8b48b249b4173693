"""The email channels: one alert email through an SMTP relay or Amazon SES.

``send_email_smtp`` and ``send_email_ses`` take ``(AlertsConfig, subject, body)`` and
either deliver the message or raise ``AlertError`` with one line naming the channel and
the host or region it tried. The library's own exceptions never escape, and a password never appears
in what is raised or logged. boto3 is imported only when the SES channel is used.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from huntaze_cli.config import AlertsConfig, secret_from_env
from huntaze_cli.errors import AlertError, ConfigError
from huntaze_cli.text import one_line, scrub

log = logging.getLogger(__name__)

_MASK = "********"


def send_email_smtp(config: AlertsConfig, subject: str, body: str) -> None:
    """Send the alert through the configured SMTP relay (STARTTLS and login if configured).

    STARTTLS verifies the relay's certificate against the system trust store; a relay
    with a private CA is trusted by pointing ``SSL_CERT_FILE`` at that CA.
    """
    where = f"SMTP {config.smtp_host}:{config.smtp_port}"
    _require_recipients(config, f"email alert via {where}")
    password: str | None = None
    if config.smtp_username:
        try:
            password = secret_from_env(
                config.smtp_password_env, what="SMTP password", key="alerts.smtp_password_env"
            )
        except ConfigError as exc:
            raise AlertError(f"email alert via {where} not sent: {exc.message}") from None
    message = _email(config, subject, body)
    try:
        with smtplib.SMTP(
            config.smtp_host, config.smtp_port, timeout=config.smtp_timeout_s
        ) as smtp:
            if config.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.smtp_username and password is not None:
                smtp.login(config.smtp_username, password)
            refused = smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        detail = scrub(_describe_smtp(exc), (password,))
        raise AlertError(f"email alert via {where} failed: {detail}") from None
    if refused:
        # Some recipients got it: resending would duplicate theirs, so this counts as sent.
        log.warning("email alert via %s: relay refused %s", where, ", ".join(sorted(refused)))


def send_email_ses(config: AlertsConfig, subject: str, body: str) -> None:
    """Send the alert through Amazon SES ``SendEmail`` from the verified ``email_from``."""
    _require_recipients(config, "email alert via SES")
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

    region = config.ses_region or "the default region"
    try:
        client = boto3.client(
            "ses",
            region_name=config.ses_region,
            config=BotoConfig(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3}),
        )
        region = client.meta.region_name or region
        client.send_email(
            Source=config.email_from,
            Destination={"ToAddresses": list(config.email_to)},
            Message={
                "Subject": {"Data": subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
            },
        )
    except ClientError as exc:
        error: Mapping[str, Any] = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        raise AlertError(f"email alert via SES in {region} failed: {one_line(detail)}") from None
    except NoRegionError:
        raise AlertError(
            "email alert via SES not sent: no AWS region; "
            "set [alerts] ses_region or AWS_DEFAULT_REGION"
        ) from None
    except BotoCoreError as exc:
        raise AlertError(f"email alert via SES in {region} failed: {one_line(exc)}") from None


def _require_recipients(config: AlertsConfig, what: str) -> None:
    if not config.email_to:
        raise AlertError(
            f"{what} not sent: no recipients; set [alerts] email_to",
            hint='add email_to = ["ops@example.com"] under [alerts]',
        )


def _email(config: AlertsConfig, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = config.email_from
    message["To"] = ", ".join(config.email_to)
    message["Date"] = formatdate(usegmt=True)
    # make_msgid() without a domain asks DNS for this host's FQDN, which can stall.
    domain = config.email_from.rpartition("@")[2].strip("> ") or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body)
    return message


def _describe_smtp(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        return f"{exc.smtp_code} {text}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "every recipient refused: " + ", ".join(sorted(exc.recipients))
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
