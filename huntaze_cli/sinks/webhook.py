"""The webhook sink: an HMAC-signed JSON POST per message.

The receiver gets the payload JSON (``encode_payload``: compact UTF-8, the exact bytes
that were signed) with three headers:

* ``Content-Type: application/json``
* ``Idempotency-Key: <campaign_id>:<recipient_id>``: the receiver drops replays on it
  (the queue delivers at least once). Keys with characters outside printable ASCII, or
  with ``%``, are percent-encoded (UTF-8) so the header stays valid; the body always
  holds the exact key.
* ``X-Huntaze-Signature: sha256=<hex>``: HMAC-SHA256 of the raw body with the secret in
  the environment variable named by ``[delivery] webhook_secret_env``.

Outcomes, as CONTRACT.md sets them: any 2xx is delivered. 429, 408 (the receiver's own
timeout), 5xx, timeouts and connection failures are retried, honouring ``Retry-After``
(seconds or an HTTP date). Every other status, 409 included, is a dead letter: a
receiver that already has the key should answer 2xx, since only it knows the replay was
harmless. Redirects are not followed (a 3xx is dead too): a signed body should only go
to the configured URL.

The secret is only ever used to sign; it is never part of an error message or log
line, and the URL in messages is cut to scheme, host and port, since webhook URLs often
carry a token in their path.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx

from huntaze_cli import __version__
from huntaze_cli.config import secret_from_env
from huntaze_cli.errors import ConfigError, DeliveryError
from huntaze_cli.retry import parse_retry_after
from huntaze_cli.sinks.base import PermanentDelivery, RetryableDelivery, encode_payload
from huntaze_cli.text import scrub

if TYPE_CHECKING:
    from huntaze_cli.config import Config

# Header-safe characters kept as they are; "%" is not among them so the encoding can be
# undone unambiguously.
_HEADER_SAFE = "".join(c for c in string.printable if c not in "%\t\n\r\x0b\x0c")
_DETAIL_CHARS = 200  # of a refusal's response body, quoted in the error


class WebhookSink:
    """POSTs each message to one URL, signed, over one pooled HTTP client."""

    name = "webhook"

    def __init__(self, url: str, secret: str, *, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "delivery.webhook_url: must be an http:// or https:// URL with a host",
                hint="set [delivery] webhook_url to the receiver's full URL",
            )
        if not secret:
            raise ConfigError("webhook signing secret is empty")
        self.url = url
        self.timeout_s = timeout_s
        # What error messages show of the URL: never a path or query that may hold a token.
        self.where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._secret = secret
        self._key = secret.encode("utf-8")
        # One client for every delivery: its pool keeps the connection to the receiver
        # open across messages. httpx clients may be shared by the worker's threads.
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            headers={"User-Agent": f"huntaze/{__version__}"},
        )

    @classmethod
    def from_config(cls, config: Config) -> WebhookSink:
        """The webhook ``[delivery]`` describes; ConfigError naming what is missing."""
        delivery = config.delivery
        if not delivery.webhook_url:
            raise ConfigError(
                "delivery.webhook_url: not set; the webhook sink needs the URL to POST to",
                hint="set webhook_url under [delivery] or HUNTAZE_DELIVERY__WEBHOOK_URL",
            )
        secret = secret_from_env(
            delivery.webhook_secret_env,
            what="webhook signing secret",
            key="delivery.webhook_secret_env",
        )
        return cls(delivery.webhook_url, secret, timeout_s=delivery.webhook_timeout_s)

    # --- Sink protocol ---------------------------------------------------------------

    def deliver(self, payload: Mapping[str, Any]) -> bool:
        """POST the message; True on 2xx, else RetryableDelivery or PermanentDelivery."""
        key, body = encode_payload(payload)
        headers = signed_headers(self._key, key, body)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryableDelivery(
                f"webhook {self.where}: no answer within {self.timeout_s:g} s "
                f"({type(exc).__name__})"
            ) from None
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
            # The request itself cannot be sent; sending it again would fail the same way.
            raise PermanentDelivery(
                f"webhook {self.where}: request not sendable: {self._detail(str(exc))}"
            ) from None
        except httpx.HTTPError as exc:
            # Connection refused/reset, TLS or proxy failures, a broken response: the
            # receiver may be back soon, and a replay is safe (Idempotency-Key).
            raise RetryableDelivery(
                f"webhook {self.where}: {type(exc).__name__}: {self._detail(str(exc))}"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return True
        message = f"webhook {self.where} answered {status} {response.reason_phrase}".rstrip()
        detail = self._detail(response.text)
        if detail:
            message += f": {detail}"
        if status in (408, 429) or status >= 500:
            raise RetryableDelivery(
                message, retry_after_s=parse_retry_after(response.headers.get("Retry-After"))
            )
        raise PermanentDelivery(message)

    def check(self) -> None:
        """Raise DeliveryError unless the sink has a URL and a signing secret.

        Both were checked when the sink was built; no request is made, since a probe
        would count as a delivery at many receivers.
        """
        if not self.url or not self._key:
            raise DeliveryError("webhook sink: delivery.webhook_url or its secret is not set")

    def close(self) -> None:
        self._client.close()

    # --- helpers ---------------------------------------------------------------------

    def _detail(self, text: str) -> str:
        """One line of at most _DETAIL_CHARS characters, the secret masked if echoed."""
        return scrub(text, (self._secret,), limit=_DETAIL_CHARS)


def signed_headers(key: bytes, idempotency_key: str, body: bytes) -> dict[str, str]:
    """The headers of a signed JSON POST: content type, idempotency key, HMAC signature.

    Shared by the delivery webhook and the alert webhook, so receivers verify both the
    same way. Keys outside printable ASCII (or with ``%``) are percent-encoded (UTF-8).
    """
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": quote(idempotency_key, safe=_HEADER_SAFE),
        "X-Huntaze-Signature": "sha256=" + sign(key, body),
    }


def sign(key: bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body``: the ``X-Huntaze-Signature`` value after ``sha256=``."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()
