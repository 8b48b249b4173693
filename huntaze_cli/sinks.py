"""Delivery sinks: where a generated message goes once its rate-limit slot is granted.

Each sink takes the CONTRACT.md payload (idempotency_key, campaign_id, account,
recipient_id, text, sent_at) and either delivers it, raises ``RetryableDelivery``
(try again later: 429, 5xx, timeout, connection), or raises ``PermanentDelivery``
(dead letter: any other refusal). Delivery is at-least-once; the idempotency key lets
the receiver (and the outbox itself) drop replays.
"""

from __future__ import annotations

from typing import Any, Protocol

from huntaze_cli.errors import DeliveryError


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
