"""Alert claims: the one place that decides who sends an alert, so it goes out once.

An alert is identified by ``AlertKey`` (rule, scope, period, level, channel). Before a
process sends one it *claims* the key; the claim is atomic (SQLite: an INSERT on the
primary key inside one write transaction; DynamoDB: a conditional write), so when
several evaluators run at the same moment, on one host or several, exactly one wins and
the others send nothing. The winner then ``finish``es the claim:

* sent: the key is done for good; no later claim succeeds;
* failed (with the error): the claim is released and the next run may claim it again,
  so a channel that was down is retried.

A claim whose owner died before finishing (kill -9 mid-send) is held for ``lease_s``
seconds and may then be claimed again: a crash delays an alert, never loses it. A send
that outlives its lease could be repeated, so the lease is far longer than any channel's
timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

ClaimStatus = Literal["claimed", "sent", "failed"]

# Longer than any channel's own timeout (SMTP defaults to 30 s, SES retries for ~1 min).
CLAIM_LEASE_S = 600.0


@dataclass(frozen=True, slots=True)
class AlertKey:
    """What is alerted once: a rule's level in one period, for one scope, per channel.

    ``scope`` is "" for everything, else a canonical ``name=value[,name=value]`` string;
    ``period`` is the period's label ("2026-11-25", "2026-11"); ``level`` a percentage
    of the rule's limit (100 is a breach).
    """

    rule: str
    scope: str
    period: str
    level: int
    channel: str


@dataclass(frozen=True, slots=True)
class AlertClaim:
    """The stored state of one key."""

    key: AlertKey
    status: ClaimStatus
    owner: str
    claimed_at: datetime
    updated_at: datetime
    attempts: int
    error: str | None = None


class AlertStore(Protocol):
    """Atomic alert claims; SQLite and DynamoDB implement it (one shared contract suite)."""

    def claim(
        self, key: AlertKey, *, owner: str, now: datetime, lease_s: float = CLAIM_LEASE_S
    ) -> bool:
        """Take the right to send ``key``; True for exactly one concurrent caller.

        Succeeds when the key was never claimed, when its last attempt failed, or when
        its claim is older than ``lease_s`` and still unfinished (the owner died).
        """
        ...

    def finish(self, key: AlertKey, *, owner: str, now: datetime, error: str | None) -> None:
        """Mark ``owner``'s claim sent (``error`` None) or failed (released for a retry).

        Does nothing when ``owner`` no longer holds the claim (its lease ran out and
        another process claimed it).
        """
        ...

    def claims(self, rule: str, scope: str, period: str) -> list[AlertClaim]:
        """Every key of one rule, scope and period, ordered by level then channel."""
        ...

    def last_sent(self, rule: str, scope: str) -> datetime | None:
        """When an alert of ``rule`` and ``scope`` was last sent, in any period."""
        ...

    def close(self) -> None: ...
