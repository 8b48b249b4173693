"""The delivery queue on Amazon SQS, shared by every host that runs a worker.

How the ``DeliveryQueue`` protocol maps onto SQS:

* **Messages.** The body is JSON of the ``QueueItem`` fields plus ``attempts`` (failed
  deliveries so far), ``due_at`` (epoch seconds before which it must not be delivered)
  and, once it failed, ``last_error``; dead letters also carry ``died_at``. The body is
  the only place SQS lets us keep state, so the attempt count is exact: every counted
  attempt re-sends the message with the new count (see retry) instead of relying on
  ``ApproximateReceiveCount``, which also counts releases and expired leases.
* **enqueue** is ``SendMessageBatch`` (10 per call). On a FIFO queue (the URL ends in
  ``.fifo``) ``MessageGroupId`` is the account, so one account's backlog never holds up
  another's, and ``MessageDeduplicationId`` is the idempotency key; SQS drops a repeat of
  a key only within its 5-minute deduplication interval. A standard queue cannot drop
  repeats at all, and SQS never says whether a send was a duplicate, so ``enqueue``
  returns how many distinct keys it sent. Either way delivery is at-least-once and the
  sinks dedupe on the idempotency key (DESIGN.md, invariant 4).
* **lease** is ``ReceiveMessage`` (10 per call, ``VisibilityTimeout`` = ``lease_s``
  rounded up to whole seconds, no long polling); the token is the receipt handle. The
  ``account``/``exclude_accounts`` hints are ignored: SQS cannot filter. A message whose
  ``due_at`` is still ahead (a FIFO retry, or a standard-queue delay over SQS's 900 s)
  is hidden again until it is due and not returned.
* **ack** is ``DeleteMessage``. It returns False only when SQS rejects the receipt
  handle, which FIFO queues do once the visibility timeout has passed. On a standard
  queue an old receipt handle may still delete the message another worker now holds;
  that worker's own ack then does nothing and the message was delivered twice, which
  the idempotency key makes harmless.
* **retry** first extends the lease by ``HANDOVER_S`` (which also proves the lease is
  still ours: a rejected receipt handle makes retry a no-op), then sends the message
  again with ``attempts + 1``, and deletes the old one. A standard queue delays the new
  copy with ``DelaySeconds`` (up to 900 s; a longer backoff is finished by ``lease``
  hiding it). A FIFO queue takes no per-message delay, so the copy goes to the back of
  its account's group at once and ``lease`` hides it until ``due_at`` (an invisible
  message blocks its group, so that account waits, as a FIFO should). Sending before
  deleting means a crash in between leaves a duplicate, never a loss. When the attempt
  is the ``max_attempts``-th, the message goes to the dead-letter queue instead.
* **release** is ``ChangeMessageVisibility(delay)``: the body, and so the attempt count,
  is unchanged. On a FIFO queue this blocks the account's group for the delay, which is
  what a release for a full rate limit wants anyway.
* **Dead letters** go to the queue named by the main queue's ``RedrivePolicy`` when it
  has one; otherwise to a standard queue ``<name without .fifo>-dead`` beside it, created
  on first use with 14 days' retention. It is standard even for a FIFO main queue so
  that it can be read whole: a FIFO queue hides the rest of a group while part of it is
  held. ``kill`` sends there and deletes. If a ``RedrivePolicy`` is set, SQS itself also
  moves a message after ``maxReceiveCount`` receives, releases and expired leases
  included; set it well above ``max_attempts`` or leave it out.
* **requeue_dead** reads the whole dead-letter queue by receiving it
  (each message held ``SCAN_HOLD_S``, then made visible again), since SQS has no query.
  Two requeues at once each see only part of it. Requeued messages get attempts 0.
* **depth** cannot be per account: SQS only counts a whole queue, approximately. It
  returns one entry under the account ``"*"``: queued = visible + delayed messages,
  in_flight = not visible (leased, or released/retried with a visibility delay), dead =
  the dead-letter queue's messages; an empty dict when all three are 0.

IAM actions needed on the queue (and its dead-letter queue): ``sqs:SendMessage``,
``sqs:ReceiveMessage``, ``sqs:DeleteMessage``, ``sqs:ChangeMessageVisibility``,
``sqs:GetQueueAttributes``, ``sqs:GetQueueUrl``; plus ``sqs:CreateQueue`` unless the
dead-letter queue exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.errors import BackendError, ConfigError
from huntaze_cli.storage.aws.client import (
    Resource,
    action_name,
    endpoint_of,
    error_code,
    error_message,
    make_client,
    region_from_queue_url,
)
from huntaze_cli.storage.queue import AccountDepth, Lease, Outcome, QueueItem

if TYPE_CHECKING:
    from huntaze_cli.config import Config

logger = logging.getLogger(__name__)

BATCH = 10  # SQS's limit per batch call and per receive
MAX_DELAY_S = 900  # SendMessage DelaySeconds limit
MAX_VISIBILITY_S = 43_200  # 12 hours
HANDOVER_S = 30  # how long retry/kill hold a message while they move it
SCAN_HOLD_S = 60  # how long reading the dead-letter queue hides each message
DEAD_RETENTION_S = 1_209_600  # 14 days, SQS's longest
_BATCH_BYTES = 200_000  # well under SQS's 256 KiB per batch

_STALE_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"}
)
_MISSING_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
# Message group and deduplication ids: printable ASCII, at most 128 characters.
_SQS_ID = re.compile(r"[\x21-\x7e]{1,128}")
_FOREIGN_ERROR = "not a huntaze delivery message"


def _timestamp(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _sqs_id(value: str) -> str:
    """``value`` if SQS accepts it as a group/deduplication id, else a stable digest."""
    if _SQS_ID.fullmatch(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _body(item: QueueItem, attempts: int, **extra: Any) -> str:
    data = {
        "key": item.key,
        "campaign_id": item.campaign_id,
        "account": item.account,
        "recipient_id": item.recipient_id,
        "text": item.text,
        "attempts": attempts,
        **{k: v for k, v in extra.items() if v is not None},
    }
    # ASCII JSON: SQS rejects some Unicode code points that JSON escapes.
    return json.dumps(data, separators=(",", ":"))


def _parse(message: dict[str, Any]) -> tuple[QueueItem, dict[str, Any]] | None:
    """The item and the whole body of one of our messages; None for anything else."""
    try:
        data = json.loads(message["Body"])
        item = QueueItem(
            str(data["key"]),
            str(data["campaign_id"]),
            str(data["account"]),
            str(data["recipient_id"]),
            str(data["text"]),
        )
        data["attempts"] = int(data.get("attempts", 0))
    except (ValueError, TypeError, KeyError):
        return None
    return item, data


class SQSQueue:
    """The ``DeliveryQueue`` protocol on one SQS queue (standard or FIFO)."""

    def __init__(
        self,
        queue_url: str,
        *,
        region: str | None,
        endpoint_url: str | None,
        max_attempts: int = 5,
        scan_wait_s: int = 1,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``scan_wait_s``: long-poll seconds when reading the whole dead-letter queue;
        short polls of a small queue may come back empty while messages remain."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.queue_url = queue_url
        self.max_attempts = max_attempts
        self.fifo = queue_url.endswith(".fifo")
        self.scan_wait_s = scan_wait_s
        self._clock = clock
        self._endpoint_hint = endpoint_url
        self._lock = threading.Lock()
        self._dead_url: str | None = None
        try:
            self._client: Any = make_client(
                "sqs",
                region=region or region_from_queue_url(queue_url),
                endpoint_url=endpoint_url,
                connect_timeout=2,
                read_timeout=max(10, scan_wait_s + 5),
            )
        except (BotoCoreError, ValueError) as exc:
            raise self._error(exc, "connect", queue_url) from exc

    @classmethod
    def from_config(cls, config: Config) -> SQSQueue:
        """The queue ``[queue]`` describes (``backend = "sqs"``)."""
        queue = config.queue
        if not queue.queue_url:
            raise ConfigError(
                "queue.queue_url: not set; the sqs queue backend needs the URL of an SQS "
                'queue (HUNTAZE_QUEUE__QUEUE_URL), or set queue.backend = "sqlite"'
            )
        return cls(
            queue.queue_url,
            region=queue.region,
            endpoint_url=queue.endpoint_url,
            max_attempts=queue.max_attempts,
        )

    def close(self) -> None:
        self._client.close()

    # --- DeliveryQueue protocol -------------------------------------------------------

    def enqueue(self, items: Sequence[QueueItem]) -> int:
        """Send each distinct key once; returns how many were sent (see module docs)."""
        unique = list({item.key: item for item in items}.values())
        entries = []
        for item in unique:
            entry: dict[str, Any] = {"MessageBody": _body(item, 0)}
            if self.fifo:
                entry["MessageGroupId"] = _sqs_id(item.account)
                entry["MessageDeduplicationId"] = _sqs_id(item.key)
            entries.append(entry)
        self._send_batches(self.queue_url, entries)
        return len(unique)

    def lease(
        self,
        *,
        limit: int,
        lease_s: float,
        exclude_accounts: Collection[str] = (),
        account: str | None = None,
    ) -> list[Lease]:
        """Receive up to ``limit`` messages for ``lease_s`` (whole seconds, rounded up).

        The account hints are ignored (SQS cannot filter); callers give back what they
        do not want with ``release``.
        """
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        visibility = min(math.ceil(lease_s), MAX_VISIBILITY_S)
        leases: list[Lease] = []
        while len(leases) < limit:
            want = min(BATCH, limit - len(leases))
            started = self._clock.time()
            messages = self._call(
                "receive_message",
                self.queue_url,
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=visibility,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            leased_until = _timestamp(started + visibility)
            for message in messages:
                parsed = _parse(message)
                if parsed is None:
                    self._quarantine(message)
                    continue
                item, data = parsed
                early = float(data.get("due_at", 0)) - self._clock.time()
                if early > 0:
                    self._hide(message["ReceiptHandle"], early)
                    continue
                leases.append(Lease(item, message["ReceiptHandle"], data["attempts"], leased_until))
            # A short poll returns what is at hand; fewer than asked means come back later.
            if len(messages) < want:
                break
        return leases

    def ack(self, lease: Lease) -> bool:
        """Delete the delivered message; False if SQS rejects the receipt handle."""
        return self._delete(self.queue_url, lease.token)

    def retry(self, lease: Lease, *, delay_s: float, error: str) -> Outcome:
        """Re-send with one more attempt, due after ``delay_s``; dead at ``max_attempts``."""
        if not self._hold(lease):
            return Outcome(dead=False, attempts=lease.attempts, due_at=None, applied=False)
        attempts = lease.attempts + 1
        if attempts >= self.max_attempts:
            self._bury(lease, attempts, error)
            return Outcome(dead=True, attempts=attempts, due_at=None)
        delay = max(delay_s, 0.0)
        due_at = self._clock.time() + delay
        entry: dict[str, Any] = {
            "MessageBody": _body(lease.item, attempts, due_at=due_at, last_error=error)
        }
        if self.fifo:
            # A fresh deduplication id: this copy must not be taken for the original.
            entry["MessageGroupId"] = _sqs_id(lease.item.account)
            entry["MessageDeduplicationId"] = uuid.uuid4().hex
        else:
            entry["DelaySeconds"] = min(math.ceil(delay), MAX_DELAY_S)
        self._call("send_message", self.queue_url, QueueUrl=self.queue_url, **entry)
        self._delete(self.queue_url, lease.token)
        return Outcome(dead=False, attempts=attempts, due_at=_timestamp(due_at))

    def release(self, lease: Lease, *, delay_s: float) -> None:
        """Make the message visible again after ``delay_s`` (whole seconds, rounded up)."""
        self._change_visibility(lease.token, min(math.ceil(max(delay_s, 0.0)), MAX_VISIBILITY_S))

    def kill(self, lease: Lease, *, error: str) -> bool:
        """Move the message to the dead-letter queue; the failure counts as an attempt.
        False when SQS rejects the receipt handle (the lease is no longer ours)."""
        if not self._hold(lease):
            return False
        self._bury(lease, lease.attempts + 1, error)
        return True

    def requeue_dead(self, campaign_id: str) -> int:
        """Send a campaign's dead letters back to the queue with attempts 0."""
        dead_url = self._dead_queue(create=False)
        if dead_url is None:
            return 0
        moved = 0
        others: list[str] = []
        for batch in self._scan(dead_url):
            entries, handles = [], []
            for message in batch:
                parsed = _parse(message)
                if parsed is None or parsed[0].campaign_id != campaign_id:
                    others.append(message["ReceiptHandle"])
                    continue
                item = parsed[0]
                entry: dict[str, Any] = {"MessageBody": _body(item, 0)}
                if self.fifo:
                    entry["MessageGroupId"] = _sqs_id(item.account)
                    entry["MessageDeduplicationId"] = uuid.uuid4().hex
                entries.append(entry)
                handles.append(message["ReceiptHandle"])
            # Send before delete: a crash in between duplicates, never loses.
            self._send_batches(self.queue_url, entries)
            for handle in handles:
                self._delete(dead_url, handle)
            moved += len(handles)
        self._unhide(dead_url, others)
        return moved

    def depth(self) -> dict[str, AccountDepth]:
        """Approximate totals under account ``"*"``: SQS does not count per account."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
        ]
        main = self._attributes(self.queue_url, names)
        total = AccountDepth(
            queued=main.get(names[0], 0) + main.get(names[1], 0),
            in_flight=main.get(names[2], 0),
        )
        dead_url = self._dead_queue(create=False)
        if dead_url is not None:
            total.dead = sum(self._attributes(dead_url, names).values())
        if not (total.queued or total.in_flight or total.dead):
            return {}
        return {"*": total}

    # --- moving messages ----------------------------------------------------------

    def _hold(self, lease: Lease) -> bool:
        """Keep the message hidden while it is moved; False if the lease is no longer ours."""
        return self._change_visibility(lease.token, HANDOVER_S)

    def _bury(self, lease: Lease, attempts: int, error: str) -> None:
        dead_url = self._dead_queue_to_write()
        body = _body(lease.item, attempts, last_error=error, died_at=self._clock.time())
        self._send_dead(dead_url, body, lease.item.account)
        self._delete(self.queue_url, lease.token)

    def _send_dead(self, dead_url: str, body: str, account: str) -> None:
        entry: dict[str, Any] = {"MessageBody": body}
        if dead_url.endswith(".fifo"):  # a RedrivePolicy target must be FIFO
            entry["MessageGroupId"] = _sqs_id(account or "-")
            entry["MessageDeduplicationId"] = uuid.uuid4().hex
        self._call("send_message", dead_url, QueueUrl=dead_url, **entry)

    def _quarantine(self, message: dict[str, Any]) -> None:
        """Move a message we cannot read to the dead letters, so nothing is lost.

        It becomes a dead letter whose text is the raw body and whose key names the
        SQS message id: ``huntaze status`` counts it like any other.
        """
        logger.warning("SQS queue %s: moving an unreadable message to dead letters", self.queue_url)
        item = QueueItem(f"sqs:{message['MessageId']}", "", "", "", message.get("Body", ""))
        body = _body(item, 0, last_error=_FOREIGN_ERROR, died_at=self._clock.time())
        self._send_dead(self._dead_queue_to_write(), body, "")
        self._delete(self.queue_url, message["ReceiptHandle"])

    def _hide(self, handle: str, seconds: float) -> None:
        self._change_visibility(handle, min(math.ceil(seconds), MAX_VISIBILITY_S))

    def _change_visibility(self, handle: str, seconds: int) -> bool:
        try:
            self._call(
                "change_message_visibility",
                self.queue_url,
                QueueUrl=self.queue_url,
                ReceiptHandle=handle,
                VisibilityTimeout=seconds,
                stale_ok=True,
            )
        except _Stale:
            return False
        return True

    def _delete(self, url: str, handle: str) -> bool:
        try:
            self._call("delete_message", url, QueueUrl=url, ReceiptHandle=handle, stale_ok=True)
        except _Stale:
            return False
        return True

    def _send_batches(self, url: str, entries: list[dict[str, Any]]) -> None:
        batch: list[dict[str, Any]] = []
        size = 0
        for entry in entries:
            body_size = len(entry["MessageBody"])
            if batch and (len(batch) == BATCH or size + body_size > _BATCH_BYTES):
                self._send_batch(url, batch)
                batch, size = [], 0
            batch.append(entry)
            size += body_size
        if batch:
            self._send_batch(url, batch)

    def _send_batch(self, url: str, batch: list[dict[str, Any]]) -> None:
        pending = {str(i): {**entry, "Id": str(i)} for i, entry in enumerate(batch)}
        for _ in range(2):  # one more try for entries SQS failed on its side
            response = self._call(
                "send_message_batch", url, QueueUrl=url, Entries=list(pending.values())
            )
            failed = response.get("Failed") or []
            if not failed:
                return
            if any(f.get("SenderFault") for f in failed):
                break
            pending = {f["Id"]: pending[f["Id"]] for f in failed}
        first = failed[0]
        raise BackendError(
            f"SQS queue {url}: {len(failed)} of {len(batch)} messages were not sent "
            f"({first.get('Code')}: {first.get('Message')}); retry, the keys are stable"
        )

    def _unhide(self, url: str, handles: list[str]) -> None:
        for start in range(0, len(handles), BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(handles[start : start + BATCH])
            ]
            # Failures only mean a message stays hidden until SCAN_HOLD_S is over.
            self._call("change_message_visibility_batch", url, QueueUrl=url, Entries=entries)

    def _scan(self, url: str) -> Iterator[list[dict[str, Any]]]:
        """Receive a queue whole, batch by batch, each message once."""
        seen: set[str] = set()
        while True:
            messages = self._call(
                "receive_message",
                url,
                QueueUrl=url,
                MaxNumberOfMessages=BATCH,
                VisibilityTimeout=SCAN_HOLD_S,
                WaitTimeSeconds=self.scan_wait_s,
                MessageSystemAttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                return
            seen.update(m["MessageId"] for m in fresh)
            yield fresh

    # --- the dead-letter queue ----------------------------------------------------

    def _dead_queue(self, *, create: bool) -> str | None:
        """The dead-letter queue's URL (see module docs); None if it does not exist yet."""
        with self._lock:
            if self._dead_url is not None:
                return self._dead_url
        attributes = self._call(
            "get_queue_attributes",
            self.queue_url,
            QueueUrl=self.queue_url,
            AttributeNames=["RedrivePolicy"],
        ).get("Attributes", {})
        owner: str | None = None
        if "RedrivePolicy" in attributes:
            arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
            *_, owner, name = arn.split(":")
        else:
            name = urlparse(self.queue_url).path.rstrip("/").rsplit("/", 1)[-1]
            name = name.removesuffix(".fifo") + "-dead"
        params: dict[str, Any] = {"QueueName": name}
        if owner:
            params["QueueOwnerAWSAccountId"] = owner
        try:
            url = self._call("get_queue_url", self.queue_url, missing_ok=True, **params)
        except _Missing:
            if not create or owner:
                return None
            url = self._call(
                "create_queue",
                self.queue_url,
                QueueName=name,
                Attributes={"MessageRetentionPeriod": str(DEAD_RETENTION_S)},
            )
        with self._lock:
            self._dead_url = str(url["QueueUrl"])
            return self._dead_url

    def _dead_queue_to_write(self) -> str:
        url = self._dead_queue(create=True)
        if url is None:
            raise BackendError(
                f"SQS queue {self.queue_url}: the dead-letter queue its RedrivePolicy names "
                "does not exist; create it, or remove the RedrivePolicy"
            )
        return url

    def _attributes(self, url: str, names: list[str]) -> dict[str, int]:
        attributes = self._call(
            "get_queue_attributes", url, QueueUrl=url, AttributeNames=names
        ).get("Attributes", {})
        return {name: int(attributes.get(name, 0)) for name in names}

    # --- calls and errors ---------------------------------------------------------

    def _call(
        self,
        operation: str,
        url: str,
        *,
        stale_ok: bool = False,
        missing_ok: bool = False,
        **params: Any,
    ) -> Any:
        """One client call; library errors become BackendError (or _Stale/_Missing)."""
        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            code, message = error_code(exc), error_message(exc)
            if stale_ok and (
                code in _STALE_CODES
                or (code == "InvalidParameterValue" and "receipt handle" in message.lower())
            ):
                raise _Stale from exc
            if missing_ok and code in _MISSING_CODES:
                raise _Missing from exc
            raise self._error(exc, action_name(operation), url) from exc
        except BotoCoreError as exc:
            raise self._error(exc, action_name(operation), url) from exc

    def _error(self, exc: Exception, action: str, url: str) -> BackendError:
        """A one-line BackendError naming the queue URL and what to do next."""
        return Resource(
            "SQS",
            f"queue {url}",
            endpoint_of(getattr(self, "_client", None), self._endpoint_hint),
            "queue",
            _MISSING_CODES,
            "create it, or point [queue] queue_url (HUNTAZE_QUEUE__QUEUE_URL) at an existing queue",
            located=False,  # the URL says where
            failed_note="; retry later, nothing was lost",
        ).error(exc, action)


class _Stale(Exception):
    """SQS rejected a receipt handle: the lease is no longer ours."""


class _Missing(Exception):
    """The queue looked up does not exist."""
