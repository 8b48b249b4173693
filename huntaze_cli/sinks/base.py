"""Delivery sinks: where a generated message goes once its rate-limit slot is granted.

Each sink takes the CONTRACT.md payload (idempotency_key, campaign_id, account,
recipient_id, text, sent_at) and either delivers it, raises ``RetryableDelivery``
(try again later: 429, 5xx, timeout, connection), or raises ``PermanentDelivery``
(dead letter: any other refusal). Delivery is at-least-once; the idempotency key lets
the receiver (and the outbox itself) drop replays.

The implementations live in their own modules (``huntaze_cli.sinks.outbox``, ``.webhook``,
``.sqs``) and import this one; ``huntaze_cli.sinks.open_sink`` imports them only when the
config selects them, so importing the package never pulls in httpx or boto3:

    outbox   huntaze_cli.sinks.outbox    JSON lines in a local file, deduped on the key
    webhook  huntaze_cli.sinks.webhook   HMAC-signed POST (httpx)
    sqs      huntaze_cli.sinks.sqs       SendMessage to an SQS queue (boto3)

Every sink sends the same bytes: ``encode_payload`` below.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from huntaze_cli.errors import DeliveryError

# The payload fields in the order they are written (CONTRACT.md, "Delivery sinks").
# idempotency_key comes first: the outbox reads it back from the start of each line.
PAYLOAD_FIELDS = ("idempotency_key", "campaign_id", "account", "recipient_id", "text", "sent_at")


class RetryableDelivery(DeliveryError):
    """The sink may accept the message later (429, 5xx, timeout, connection failure)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentDelivery(DeliveryError):
    """The sink refused the message for good; it goes to dead letters."""


class Sink(Protocol):
    name: str

    def deliver(self, payload: dict[str, Any]) -> bool:
        """Deliver one message; False when the sink already had this idempotency key."""
        ...

    def check(self) -> None:
        """Raise DeliveryError unless the sink looks usable (for `health`)."""
        ...

    def close(self) -> None: ...


def encode_payload(payload: Mapping[str, Any]) -> tuple[str, bytes]:
    """The idempotency key and the one JSON document every sink sends for ``payload``.

    Exactly the contract's fields in a fixed order, compact, UTF-8 (no ``\\u`` escapes of
    non-ASCII text) and on one line (JSON escapes every newline inside strings). The
    webhook signs these bytes and sends them unchanged; the outbox appends them plus a
    newline. A payload that cannot be encoded can never be delivered: PermanentDelivery.
    """
    try:
        fields = {name: payload[name] for name in PAYLOAD_FIELDS}
    except KeyError as exc:
        raise PermanentDelivery(f"message payload lacks the field {exc.args[0]!r}") from None
    key = fields["idempotency_key"]
    if not isinstance(key, str) or not key:
        raise PermanentDelivery("message payload has no idempotency_key string")
    try:
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        # TypeError: a value JSON cannot hold; UnicodeEncodeError (a ValueError): a lone
        # surrogate in the text, which no UTF-8 receiver could read.
        raise PermanentDelivery(f"message {key}: payload is not valid JSON text: {exc}") from None
    return key, body
