"""Delivery sinks: where a generated message goes once its rate-limit slot is granted.

The protocol and the shared payload encoding live in ``huntaze_cli.sinks.base``; each
implementation has its own module, imported by ``open_sink`` only when the config selects
it, so importing this package never pulls in httpx or boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from huntaze_cli.sinks.base import (
    PAYLOAD_FIELDS,
    PermanentDelivery,
    RetryableDelivery,
    Sink,
    encode_payload,
)

if TYPE_CHECKING:
    from huntaze_cli.config import Config

__all__ = [
    "PAYLOAD_FIELDS",
    "PermanentDelivery",
    "RetryableDelivery",
    "Sink",
    "encode_payload",
    "open_sink",
]


def open_sink(config: Config) -> Sink:
    """The sink ``[delivery] sink`` selects, ready to deliver; ConfigError if misconfigured."""
    kind = config.delivery.sink
    if kind == "webhook":
        from huntaze_cli.sinks.webhook import WebhookSink

        return WebhookSink.from_config(config)
    if kind == "sqs":
        from huntaze_cli.sinks.sqs import SQSSink

        return SQSSink.from_config(config)
    from huntaze_cli.sinks.outbox import OutboxSink

    return OutboxSink.from_config(config)
