"""The SQS sink: each message as one SendMessage to ``[delivery] sqs_queue_url``.

The message body is the payload JSON every sink sends (``encode_payload``). The
idempotency key travels as the String message attribute ``idempotency_key``; on a FIFO
queue (URL ending in ``.fifo``) it is also the ``MessageDeduplicationId`` and the
account is the ``MessageGroupId``, so one account's messages stay in order. Both ids
allow at most 128 ASCII letters, digits and punctuation: a value outside that is sent
as its SHA-256 hex digest instead (stable, so replays still collapse). SQS drops a
FIFO duplicate only within its 5-minute deduplication interval and never says whether
it did, so ``deliver`` always returns True; consumers dedupe on the key beyond that.

Errors are sorted by who can fix them:

* throttling, 5xx, timeouts and connection failures: ``RetryableDelivery``;
* the queue does not exist, access or the queue's KMS key is refused, no credentials
  or region: ``ConfigError`` naming what to fix. Every message would fail the same way
  until an operator acts; the worker dead-letters them at once (no retry storm) and
  ``huntaze requeue`` sends them again once the configuration is fixed;
* anything else SQS refuses (an invalid body, say) is about this message:
  ``PermanentDelivery``.

Region: the one in the queue URL's host (``sqs.<region>.amazonaws.com``, or a local server
that names hosts the same way), else boto3's default.
A queue URL on another host (a local SQS-compatible server) is also the endpoint,
unless ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_SQS`` names one.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from huntaze_cli.errors import ConfigError, DeliveryError, HuntazeError
from huntaze_cli.sinks.base import PermanentDelivery, RetryableDelivery, encode_payload
from huntaze_cli.storage.aws.client import AUTH_CODES, make_client, region_from_queue_url
from huntaze_cli.text import one_line

if TYPE_CHECKING:
    from huntaze_cli.config import Config

_URL_KEY = "delivery.sqs_queue_url"
_FIFO_ID_CHARS = frozenset(string.ascii_letters + string.digits + string.punctuation)
_FIFO_ID_MAX = 128
_AWS_HOST = re.compile(r"(?:^|\.)amazonaws\.com(?:\.cn)?$")
_DETAIL_MAX = 300  # characters of an SQS or botocore message kept in ours

_MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_REFUSED = AUTH_CODES | frozenset(
    {
        "KmsAccessDenied",
        "KmsDisabled",
        "KmsInvalidKeyUsage",
        "KmsInvalidState",
        "KmsNotFound",
        "KmsOptInRequired",
    }
)
_RETRYABLE = frozenset(
    {
        "RequestThrottled",
        "ThrottlingException",
        "Throttling",
        "KmsThrottled",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
    }
)


class SQSSink:
    """Sends each message to one SQS queue (standard or FIFO)."""

    name = "sqs"

    def __init__(
        self, queue_url: str, *, region: str | None = None, endpoint_url: str | None = None
    ) -> None:
        self.queue_url = queue_url
        self.fifo = urlsplit(queue_url).path.endswith(".fifo")
        # Short timeouts so a dead endpoint costs seconds, not minutes; one quick retry in
        # botocore rides out a blip without spending another rate-limit slot, and the
        # worker's backoff handles anything longer.
        try:
            self._client: Any = make_client(
                "sqs",
                region=region or region_from_queue_url(queue_url),
                endpoint_url=endpoint_url or _endpoint_for(queue_url),
                connect_timeout=3,
                read_timeout=10,
            )
        except NoRegionError:
            raise ConfigError(
                f"{_URL_KEY}: no AWS region for {queue_url}",
                hint="set AWS_DEFAULT_REGION or use the queue's regional URL",
            ) from None
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError(f"{_URL_KEY}: cannot use {queue_url}: {exc}") from None

    @classmethod
    def from_config(cls, config: Config) -> SQSSink:
        """The queue at ``[delivery] sqs_queue_url``; ConfigError when it is not set."""
        url = config.delivery.sqs_queue_url
        if not url:
            raise ConfigError(
                f"{_URL_KEY}: not set; the sqs sink needs the URL of the queue to send to",
                hint="set sqs_queue_url under [delivery] or HUNTAZE_DELIVERY__SQS_QUEUE_URL",
            )
        return cls(url)

    # --- Sink protocol ---------------------------------------------------------------

    def deliver(self, payload: Mapping[str, Any]) -> bool:
        """Send the message; always True (SQS does not report FIFO duplicates)."""
        key, body = encode_payload(payload)
        params: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MessageBody": body.decode("utf-8"),
            "MessageAttributes": {"idempotency_key": {"DataType": "String", "StringValue": key}},
        }
        if self.fifo:
            params["MessageDeduplicationId"] = fifo_id(key)
            params["MessageGroupId"] = fifo_id(str(payload["account"]))
        try:
            self._client.send_message(**params)
        except ClientError as exc:
            raise self._classify(exc, f"message {key}") from None
        except (NoCredentialsError, PartialCredentialsError):
            raise ConfigError(
                "sqs sink: no AWS credentials",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role",
            ) from None
        except ParamValidationError as exc:
            raise PermanentDelivery(
                f"SQS refused message {key}: {one_line(exc, _DETAIL_MAX)}"
            ) from None
        except BotoCoreError as exc:
            # Connection refused/reset, endpoint unreachable, timeouts, credential fetches.
            raise RetryableDelivery(self._unreachable(exc)) from None
        return True

    def check(self) -> None:
        """Raise DeliveryError unless the queue exists and answers (one GetQueueAttributes)."""
        try:
            self._client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        except ClientError as exc:
            error = self._classify(exc, "check")
            raise DeliveryError(error.message, hint=error.hint) from None
        except BotoCoreError as exc:
            raise DeliveryError(self._unreachable(exc)) from None

    def close(self) -> None:
        self._client.close()

    def _unreachable(self, exc: BotoCoreError) -> str:
        return (
            f"SQS {self.queue_url} unreachable: {type(exc).__name__}: {one_line(exc, _DETAIL_MAX)}"
        )

    def _classify(self, exc: ClientError, what: str) -> HuntazeError:
        error: Mapping[str, Any] = exc.response.get("Error", {})
        codes = {str(error.get("Code", "")), str(error.get("QueryErrorCode", ""))} - {""}
        code = str(error.get("Code", "")) or "error"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        detail = f"{code}: {one_line(error.get('Message', ''), _DETAIL_MAX)}".rstrip(": ")
        if codes & _MISSING_QUEUE:
            return ConfigError(
                f"{_URL_KEY}: queue {self.queue_url} does not exist",
                hint="create the queue or fix sqs_queue_url under [delivery]",
            )
        if codes & _REFUSED:
            return ConfigError(
                f"sqs sink: sending to {self.queue_url} was refused ({detail})",
                hint="grant sqs:SendMessage (and the queue's KMS key) to these credentials",
            )
        if codes & _RETRYABLE or status == 429 or status >= 500:
            return RetryableDelivery(f"SQS {self.queue_url}: {detail}")
        return PermanentDelivery(f"SQS refused {what}: {detail}")


def fifo_id(value: str) -> str:
    """``value`` as a FIFO deduplication or group id: itself if allowed, else its digest."""
    if 0 < len(value) <= _FIFO_ID_MAX and all(c in _FIFO_ID_CHARS for c in value):
        return value
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _endpoint_for(url: str) -> str | None:
    """Scheme, host and port of a non-AWS queue URL, unless the environment names one."""
    if os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    parts = urlsplit(url)
    if not parts.hostname or _AWS_HOST.search(parts.hostname):
        return None
    return f"{parts.scheme}://{parts.netloc}"
