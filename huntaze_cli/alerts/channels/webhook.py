"""The alert webhook channel: each alert as an HMAC-signed JSON POST.

Signed exactly like the delivery webhook (``X-Huntaze-Signature: sha256=<hex HMAC-SHA256
of the raw body>``, secret from ``[alerts] alert_webhook_secret_env``), with
``Idempotency-Key: <alert id>`` so a receiver can drop the replay of a retried run. One
POST per alert, not a digest: a program receiving alerts wants one record per alert. The
held-back (suppressed) alerts ride along in the first alert's body under ``suppressed``.

Any 2xx is sent; anything else, a timeout or a refused connection fails the channel for
this run, naming the status (and ``Retry-After`` when given); the next run retries. The
URL in messages is cut to scheme, host and port: alert webhook URLs often carry a token.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from huntaze_cli.alerts.notice import Notice
from huntaze_cli.config import secret_from_env
from huntaze_cli.errors import AlertError, ConfigError

if TYPE_CHECKING:
    from huntaze_cli.config import AlertsConfig


def send_webhook(config: AlertsConfig, notice: Notice) -> None:
    """POST every alert of ``notice``; AlertError naming the first that failed."""
    url = config.alert_webhook_url
    if not url:
        raise AlertError(
            "webhook alert not sent: alerts.alert_webhook_url is not set",
            hint="set alert_webhook_url under [alerts] to the receiver's URL",
        )
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    try:
        secret = secret_from_env(
            config.alert_webhook_secret_env,
            what="alert webhook signing secret",
            key="alerts.alert_webhook_secret_env",
        )
    except ConfigError as exc:
        raise AlertError(f"webhook alert via {where} not sent: {exc.message}") from None
    import httpx

    from huntaze_cli.sinks.webhook import parse_retry_after, signed_headers

    key = secret.encode("utf-8")
    with httpx.Client(timeout=config.http_timeout_s, follow_redirects=False) as client:
        for index, alert in enumerate(notice.alerts):
            document = {"test": notice.test, **alert.to_json()}
            if index == 0 and notice.suppressed:
                document["suppressed"] = [held.to_json() for held in notice.suppressed]
            if notice.dashboard_url:
                document["dashboard_url"] = notice.dashboard_url
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            try:
                response = client.post(
                    url, content=body, headers=signed_headers(key, alert.alert_id, body)
                )
            except httpx.HTTPError as exc:
                detail = " ".join(str(exc).replace(secret, "********").split())[:200]
                raise AlertError(
                    f"webhook alert via {where} failed: {type(exc).__name__}: {detail}"
                ) from None
            if not 200 <= response.status_code < 300:
                message = f"webhook alert via {where} failed: HTTP {response.status_code}"
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if wait is not None:
                    message += f"; the receiver asks to wait {wait:g} s, the next run retries"
                raise AlertError(message)
