"""The durable delivery queue protocol and what its implementations share.

An item is one generated message waiting for delivery, keyed by its idempotency key
``<campaign_id>:<recipient_id>``: enqueueing a key that is already queued (or was
delivered, or is dead) changes nothing. A worker *leases* due items for ``lease_s``
seconds; an expired lease makes the item due again (a crashed worker loses nothing).
The worker then acks it (delivered), retries it (attempts + 1, due again after a
backoff), releases it (not an attempt: e.g. the account's rate limit is full), or the
queue moves it to dead letters once ``max_attempts`` deliveries failed.

States of an item: queued (due at ``due_at``) -> leased -> (acked | queued again | dead).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


def message_key(campaign_id: str, recipient_id: str) -> str:
    return f"{campaign_id}:{recipient_id}"


@dataclass(slots=True)
class QueueItem:
    """What is delivered: the sink's payload fields (CONTRACT.md, delivery sinks)."""

    key: str
    campaign_id: str
    account: str
    recipient_id: str
    text: str


@dataclass(slots=True)
class Lease:
    """A leased item; ``token`` identifies this lease (an expired one cannot ack)."""

    item: QueueItem
    token: str
    attempts: int  # delivery attempts made before this one
    leased_until: datetime


@dataclass(slots=True)
class AccountDepth:
    queued: int = 0  # waiting, due now or later
    in_flight: int = 0  # leased and not expired
    dead: int = 0


@dataclass(slots=True)
class Outcome:
    """What ``retry`` did: ``dead`` when max_attempts is used up.

    ``applied`` is False when the lease was no longer the caller's (it expired and the
    item was leased again, or delivered, by someone else): nothing changed, and the
    caller must not record a state for a message another worker holds.
    """

    dead: bool
    attempts: int
    due_at: datetime | None = None
    applied: bool = True


class DeliveryQueue(Protocol):
    """SQLite (one host, many processes) and SQS implement it."""

    max_attempts: int

    def enqueue(self, items: Sequence[QueueItem]) -> int:
        """Add items not seen before (by key); returns how many were new."""
        ...

    def lease(
        self,
        *,
        limit: int,
        lease_s: float,
        exclude_accounts: Collection[str] = (),
        account: str | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` due items, oldest due first.

        ``exclude_accounts`` (accounts whose rate limit is full) and ``account`` (only
        this one) are hints an implementation may ignore (SQS cannot filter).
        """
        ...

    def ack(self, lease: Lease) -> bool:
        """The item was delivered: remove it. False if the lease had expired and the
        item was leased again by someone else (the delivery still happened once more)."""
        ...

    def retry(self, lease: Lease, *, delay_s: float, error: str) -> Outcome:
        """A delivery attempt failed: due again after ``delay_s``, or dead when this was
        attempt ``max_attempts``. Keeps ``error`` as the last error."""
        ...

    def release(self, lease: Lease, *, delay_s: float) -> None:
        """Give the item back without counting an attempt, due after ``delay_s``."""
        ...

    def kill(self, lease: Lease, *, error: str) -> bool:
        """Move the item to dead letters at once (a permanent failure). False, changing
        nothing, when the lease is no longer the caller's (see ``Outcome.applied``)."""
        ...

    def requeue_dead(self, campaign_id: str) -> int:
        """Move a campaign's dead letters back to the queue with attempts reset."""
        ...

    def depth(self) -> dict[str, AccountDepth]:
        """Queued, in-flight and dead counts per account."""
        ...

    def close(self) -> None: ...
