"""The Slack channel: a Block Kit message to an incoming webhook, through slack_sdk.

The webhook URL is itself the credential (``hooks.slack.com/services/T.../B.../secret``),
so it is read from the environment variable ``[alerts] slack_webhook_url_env`` names and
never appears in an error or a log line: failures name only "Slack webhook" and the
status Slack answered. slack_sdk is imported only when this channel sends.

Retries: one more try on a connection error or a 5xx, and one on 429 when Slack's
``Retry-After`` is short (``RETRY_AFTER_CAP_S``); a longer wait is not spent inside
`check-thresholds`: the send fails with the wait named, and the next run retries it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from huntaze_cli.alerts.notice import TOP_CONTRIBUTORS, Notice, scope_label
from huntaze_cli.config import secret_from_env
from huntaze_cli.errors import AlertError, ConfigError
from huntaze_cli.money import format_usd

if TYPE_CHECKING:
    from huntaze_cli.config import AlertsConfig

RETRY_AFTER_CAP_S = 5
# Slack shows at most 50 blocks; a storm of alerts is cut with a line saying so.
MAX_ALERT_SECTIONS = 20

# slack_sdk logs the webhook URL at debug level: keep its records out of every handler.
_silent = logging.getLogger("huntaze.alerts.slack.sdk")
_silent.propagate = False
_silent.addHandler(logging.NullHandler())
_silent.setLevel(logging.CRITICAL + 1)


def webhook_url(config: AlertsConfig) -> str:
    """The Slack incoming-webhook URL from the environment; ConfigError when unset."""
    if not config.slack_webhook_url_env:
        raise ConfigError(
            "alerts.slack_webhook_url_env: not set; the slack channel needs the name of an "
            "environment variable holding the incoming-webhook URL",
            hint='set slack_webhook_url_env = "HUNTAZE_SLACK_WEBHOOK_URL" under [alerts]',
        )
    url = secret_from_env(
        config.slack_webhook_url_env,
        what="Slack incoming-webhook URL",
        key="alerts.slack_webhook_url_env",
    )
    if not url.startswith(("https://", "http://")):
        raise ConfigError(
            f"alerts.slack_webhook_url_env: {config.slack_webhook_url_env} does not hold an "
            "http(s) URL"
        )
    return url


def send_slack(config: AlertsConfig, notice: Notice) -> None:
    """Post ``notice`` to the Slack incoming webhook; AlertError naming what failed."""
    try:
        url = webhook_url(config)
    except ConfigError as exc:
        raise AlertError(f"slack alert not sent: {exc.message}") from None
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )
    from slack_sdk.webhook import WebhookClient

    class _ShortRateLimit(RateLimitErrorRetryHandler):
        def _can_retry(
            self, *, state: Any, request: Any, response: Any = None, error: Any = None
        ) -> bool:
            if response is None or response.status_code != 429:
                return False
            return _retry_after(response.headers) <= RETRY_AFTER_CAP_S

    client = WebhookClient(
        url,
        timeout=max(1, round(config.http_timeout_s)),
        logger=_silent,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            ServerErrorRetryHandler(max_retry_count=1),
            _ShortRateLimit(max_retry_count=1),
        ],
    )
    try:
        response = client.send_dict(slack_payload(notice))
    except Exception as exc:  # urllib's URLError, socket timeouts, TLS errors
        raise AlertError(
            f"slack alert via Slack webhook failed: {type(exc).__name__}: {_reason(exc)}"
        ) from None
    if response.status_code == 200:
        return
    detail = " ".join(str(response.body or "").split())[:200]
    message = f"slack alert via Slack webhook failed: HTTP {response.status_code}"
    if detail:
        message += f" {detail}"
    if response.status_code == 429:
        wait = _retry_after({k: [v] for k, v in response.headers.items()})
        message += f"; Slack asks to wait {wait:g} s, the next run retries"
    raise AlertError(message)


def slack_payload(notice: Notice) -> dict[str, Any]:
    """The Block Kit message: a header, one section per alert, contributors, a link."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": notice.subject()[:150]}}
    ]
    if notice.test:
        blocks.append(_context("Test alert from `huntaze alerts test`: nothing is breached."))
    for alert in notice.alerts[:MAX_ALERT_SECTIONS]:
        fields = [
            f"*Rule*\n{_esc(alert.rule)} ({alert.kind})",
            f"*Scope*\n{_esc(scope_label(alert.scope))}",
            f"*Spent*\n{format_usd(alert.observed_nano, 2)} of {format_usd(alert.limit_nano, 2)}",
            f"*Level*\n{alert.level_pct}% ({alert.used_pct:.1f}% used), {alert.period_label}",
        ]
        blocks.append(
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]}
        )
        if alert.contributors:
            top = ", ".join(
                f"{_esc(name)} {format_usd(nano, 2)}"
                for name, nano in alert.contributors[:TOP_CONTRIBUTORS]
            )
            blocks.append(_context(f"Top contributors: {top}"))
        if alert.unpriced_requests:
            blocks.append(
                _context(f"{alert.unpriced_requests} unpriced requests are not in these figures")
            )
    hidden = len(notice.alerts) - MAX_ALERT_SECTIONS
    if hidden > 0:
        blocks.append(_context(f"... and {hidden} more alerts: `huntaze alerts list`"))
    if notice.suppressed:
        first = min(alert.created_at for alert in notice.suppressed)
        blocks.append(
            _context(
                f"{len(notice.suppressed)} more alert(s) held back by the repeat limit since "
                f"{first:%Y-%m-%d %H:%M} UTC"
            )
        )
    if notice.dashboard_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open dashboard"},
                        "url": notice.dashboard_url,
                    }
                ],
            }
        )
    # ``text`` is the notification and screen-reader fallback for the blocks.
    return {"text": notice.subject(), "blocks": blocks}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _esc(text: str) -> str:
    """Slack's three control characters, escaped so user data is shown literally."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _retry_after(headers: dict[str, Any]) -> float:
    """Seconds Slack asks to wait (``Retry-After``); unreadable means "too long"."""
    from huntaze_cli.sinks.webhook import parse_retry_after

    for name, values in headers.items():
        if name.lower() == "retry-after":
            value = values[0] if isinstance(values, list) else values
            seconds = parse_retry_after(str(value))
            return float("inf") if seconds is None else seconds
    return 1.0


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split())[:200]
