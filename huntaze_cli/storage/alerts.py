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

A key held back by the repeat limit is *suppressed*: recorded, not sent, and claimable
again (by the run that folds it into its message, or once the interval has passed).

Beside the claims, the store keeps the in-app alert history (one ``AlertEntry`` per
rule, scope, period and level, with the state of each channel taken from the claims, an
``acked_at`` once read) and the rules stored with `huntaze thresholds set`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

ClaimStatus = Literal["claimed", "sent", "failed", "suppressed"]

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


@dataclass(slots=True)
class AlertEntry:
    """One alert in the history: a rule's level in one period, for one scope."""

    alert_id: str
    rule: str
    kind: str
    scope: str  # canonical "key=value,key=value"; "" for everything
    scope_values: dict[str, str]
    period: str  # day | month
    period_label: str
    period_start: datetime
    level_pct: int
    limit_nano: int
    observed_nano: int
    created_at: datetime
    acked_at: datetime | None = None
    channels: dict[str, AlertClaim] = field(default_factory=dict)

    def claim_key(self, channel: str) -> AlertKey:
        return AlertKey(self.rule, self.scope, self.period_label, self.level_pct, channel)


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

    def last_sent(self, rule: str, scope: str, channel: str | None = None) -> datetime | None:
        """When an alert of ``rule`` and ``scope`` was last sent (on ``channel``), any period."""
        ...

    def suppress(self, key: AlertKey, *, now: datetime) -> None:
        """Record ``key`` as held back: new or failed keys only; sent and claimed stay."""
        ...

    def suppressed(self, channel: str) -> list[AlertClaim]:
        """Keys held back on ``channel`` and not sent since, oldest first."""
        ...

    def record_alert(self, entry: AlertEntry) -> None:
        """Add ``entry`` to the history unless its ``alert_id`` is there already."""
        ...

    def history(
        self,
        *,
        since: datetime,
        rule: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[AlertEntry]:
        """Alerts created at or after ``since``, newest first, with their channels."""
        ...

    def get_alert(self, alert_id: str) -> AlertEntry | None: ...

    def ack(self, alert_id: str, *, now: datetime) -> bool:
        """Mark an alert read; False when there is no such alert."""
        ...

    def put_rule(self, name: str, body: dict[str, Any], *, now: datetime) -> None:
        """Create or replace the stored rule ``name`` (its config fields as JSON types)."""
        ...

    def delete_rule(self, name: str) -> bool:
        """Remove a stored rule; False when there was none."""
        ...

    def rules(self) -> list[dict[str, Any]]:
        """Every stored rule, by name."""
        ...

    def prune(self, *, now: datetime, history_days: int) -> None:
        """Forget alerts and claims older than ``history_days``."""
        ...

    def close(self) -> None: ...
