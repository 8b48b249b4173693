"""The campaign store protocol: campaigns, each recipient's message state, counts, keys.

Message states (DESIGN.md invariant 4): ``pending`` (not generated yet, or generation
failed and will be tried again on resume: ``error`` is set), ``generated`` (text stored,
not yet in the queue), ``queued`` (in the delivery queue, maybe leased), ``failed``
(a delivery attempt failed; the queue retries it), ``sent``, ``dead`` (dead letter, or
generation failed for good).

Every implementation keeps these promises, checked by one contract suite
(tests/storage/test_campaign_contract.py) on SQLite and on DynamoDB:

* Every transition is conditional on the state it leaves, so replays after a crash, or
  two hosts racing, change nothing twice; ``sent`` is final (it never goes back to
  queued, failed or dead).
* ``counts`` is O(1) per campaign: counters maintained with each transition, never a
  scan of the messages.
* An idempotency key names at most one campaign, across every process sharing the store.
* A campaign being generated carries a lease (``claim_generation``): while one process
  renews it no other generates that campaign; once it lapses (the process died) any
  ``serve``/``worker`` may take the campaign over (``orphaned``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

MESSAGE_STATES = ("pending", "generated", "queued", "sent", "failed", "dead")
OPEN_STATES = ("pending", "generated", "queued", "failed")


@dataclass(slots=True)
class CampaignRow:
    id: str
    idempotency_key: str | None
    name: str
    account: str
    tenant: str
    model: str
    provider: str
    system: str | None
    prompt: str
    max_tokens: int | None
    temperature: float | None
    state: str
    recipients: int
    estimated_cost_nano: int
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class PendingMessage:
    recipient_id: str
    seq: int
    fields: dict[str, str]


@dataclass(slots=True)
class DeadLetter:
    """A dead message and why: ``stage`` is ``delivery`` (it has text) or
    ``generation`` (no provider could write it)."""

    recipient_id: str
    seq: int
    stage: str
    error: str | None
    updated_at: datetime


@dataclass(slots=True)
class Heartbeat:
    worker_id: str
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime
    delivered: int
    stopped: bool


def split_key(key: str) -> tuple[str, str]:
    """``<campaign_id>:<recipient_id>`` -> its two parts (see ``queue.message_key``)."""
    campaign_id, _, recipient_id = key.partition(":")
    return campaign_id, recipient_id


def finished_state(counts: dict[str, int]) -> str | None:
    """What a delivering campaign becomes given its counts; None while work is open."""
    if any(counts.get(state, 0) for state in OPEN_STATES):
        return None
    return "completed_with_errors" if counts.get("dead", 0) else "completed"


class CampaignStore(Protocol):
    """SQLite (one host, many processes) and DynamoDB (many hosts) implement it."""

    # --- campaigns ---------------------------------------------------------------------

    def create(
        self,
        *,
        campaign_id: str,
        idempotency_key: str | None,
        spec: dict[str, Any],
        recipients: Iterable[tuple[str, dict[str, str]]],
        estimated_cost_nano: int,
        generation_owner: str | None = None,
        lease_s: float = 60.0,
    ) -> int:
        """Store a campaign and all its recipients; returns the count.

        Raises BackendError if ``idempotency_key`` already names a campaign (the caller
        then looks that one up). If ``recipients`` raises (a bad line), the campaign is
        not left visible as ready to generate. With ``generation_owner`` the campaign
        is stored with that owner's generation lease, so no other process takes it as
        orphaned before its creator starts generating.
        """
        ...

    def find_by_key(self, idempotency_key: str) -> str | None: ...

    def get(self, campaign_id: str) -> CampaignRow | None: ...

    def recent(self, limit: int = 20) -> list[CampaignRow]:
        """The newest campaigns first."""
        ...

    def set_state(self, campaign_id: str, state: str) -> None: ...

    def counts(self, campaign_id: str) -> dict[str, int]:
        """Messages per state (every state of MESSAGE_STATES), from maintained counters."""
        ...

    def refresh_state(self, campaign_id: str) -> str:
        """Move a delivering campaign to completed(_with_errors) once nothing is open."""
        ...

    # --- generation ------------------------------------------------------------------

    def claim_generation(self, campaign_id: str, owner: str, *, lease_s: float) -> bool:
        """Take or renew the right to generate a campaign for ``lease_s`` seconds.

        True when ``owner`` holds it now: the lease was free, lapsed, or ``owner``'s
        already. False for an unknown campaign.
        """
        ...

    def release_generation(self, campaign_id: str, owner: str) -> None:
        """Give the lease up (generation ended or stopped) if ``owner`` still holds it."""
        ...

    def generation_owner(self, campaign_id: str) -> str | None:
        """Who holds a live lease on generating ``campaign_id``, if anyone."""
        ...

    def orphaned(self, *, limit: int = 10) -> list[str]:
        """Campaigns left generating, or paused by a budget (``paused_budget``), with no
        live lease, oldest first (at most ``limit``): a worker tries them again."""
        ...

    # --- messages --------------------------------------------------------------------

    def pending(self, campaign_id: str, *, after_seq: int, limit: int) -> list[PendingMessage]:
        """Pending messages with ``seq > after_seq``, in seq order."""
        ...

    def generated(self, campaign_id: str) -> Iterator[tuple[str, str]]:
        """(recipient_id, text) of messages generated but not yet queued."""
        ...

    def save_generated(self, campaign_id: str, rows: Sequence[tuple[str, str, str]]) -> None:
        """(recipient_id, text, provider) for messages just generated (pending only)."""
        ...

    def generation_failed(
        self, campaign_id: str, rows: Sequence[tuple[str, str]], *, final: bool
    ) -> None:
        """(recipient_id, error): ``final`` makes a pending message dead, else it stays."""
        ...

    def mark_queued(self, campaign_id: str, recipient_ids: Sequence[str]) -> None:
        """Generated messages went into the delivery queue."""
        ...

    def delivery_outcome(
        self, key: str, state: str, *, sent_at: str | None, error: str | None
    ) -> None:
        """A delivery attempt's result: sent, failed (will retry) or dead. Sent is final."""
        ...

    def requeued(self, campaign_id: str) -> int:
        """Dead messages that have text go back to queued (see `huntaze requeue`)."""
        ...

    def retry_failed_generation(self, campaign_id: str) -> int:
        """Dead messages without text (generation gave up) become pending again."""
        ...

    def dead_letters(self, campaign_id: str, *, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` dead messages with their last error, in recipient order."""
        ...

    def needs_generation(self, campaign_id: str) -> bool:
        """Whether any message is pending or gave up generating (a resume retries it)."""
        ...

    # --- workers ---------------------------------------------------------------------

    def heartbeat(
        self, worker_id: str, *, started_at: datetime, delivered: int, stopped: bool = False
    ) -> None: ...

    def heartbeats(self) -> list[Heartbeat]:
        """The latest beats, newest first (at most 50)."""
        ...

    def close(self) -> None: ...
