"""Alert channels: every way an alert leaves huntaze, behind one signature.

A channel is a function ``(AlertsConfig, Notice) -> None`` that delivers the notice or
raises ``AlertError`` with one line naming the channel and what failed, never a secret.
Each lives in its own module and imports its client library (smtplib, boto3, slack_sdk,
httpx) only when it sends:

    email     channels.email    SMTP relay (STARTTLS, login)
    ses       channels.email    Amazon SES SendEmail
    slack     channels.slack    Slack incoming webhook, Block Kit (slack_sdk)
    sns       channels.sns      Amazon SNS Publish, subject + JSON
    webhook   channels.webhook  HMAC-signed JSON POST per alert

In-app is not a channel: every alert is stored in the history whatever its channels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huntaze_cli.alerts.notice import Notice
    from huntaze_cli.config import AlertsConfig

Channel = Callable[["AlertsConfig", "Notice"], None]


def _email(config: AlertsConfig, notice: Notice) -> None:
    from huntaze_cli.alerts.channels.email import send_email_smtp

    send_email_smtp(config, notice.subject(), notice.text())


def _ses(config: AlertsConfig, notice: Notice) -> None:
    from huntaze_cli.alerts.channels.email import send_email_ses

    send_email_ses(config, notice.subject(), notice.text())


def _slack(config: AlertsConfig, notice: Notice) -> None:
    from huntaze_cli.alerts.channels.slack import send_slack

    send_slack(config, notice)


def _sns(config: AlertsConfig, notice: Notice) -> None:
    from huntaze_cli.alerts.channels.sns import send_sns

    send_sns(config, notice)


def _webhook(config: AlertsConfig, notice: Notice) -> None:
    from huntaze_cli.alerts.channels.webhook import send_webhook

    send_webhook(config, notice)


SENDERS: Mapping[str, Channel] = {
    "email": _email,
    "ses": _ses,
    "slack": _slack,
    "sns": _sns,
    "webhook": _webhook,
}
