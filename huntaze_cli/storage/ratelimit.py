"""The per-account compliance rate limiter protocol.

For every account, any window of ``per_seconds`` holds at most ``messages`` granted
slots, across every process sharing the backend (a sliding-window log: the grant times
of the last ``messages`` slots). A worker takes a slot immediately before it hands a
message to the sink and stamps the message's ``sent_at`` with the slot's time; a
message that may not go yet waits, it is never dropped. Accounts are independent.

The same store keeps delivery quotas (``take_quota``): a counter per key and period
(a tenant's deliveries of one day, ``[tenants.<name>] quota_messages_day``) raised only
while it is below the limit, atomically across every process and host sharing it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from huntaze_cli.clock import US_PER_S


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to one ``acquire``: a slot at ``at``, or a wait of ``retry_after_s``."""

    granted: bool
    at: datetime | None = None
    retry_after_s: float = 0.0


class RateLimiter(Protocol):
    """SQLite (one host, many processes) and DynamoDB (many hosts) implement it."""

    messages: int
    per_seconds: float

    def acquire(self, account: str, *, now: datetime | None = None) -> Grant:
        """Take a slot for ``account`` now if the window allows, else say how long to wait.

        Never blocks; waiting is the caller's job. ``now`` is for tests only; the
        implementation stamps grants with its own clock otherwise.
        """
        ...

    def take_quota(self, key: str, period: str, limit: int, *, expires_at: datetime) -> bool:
        """Count one against ``key`` in ``period`` if fewer than ``limit`` are counted.

        True when counted; False (and nothing written) when the quota is used up. The
        check and the count are one atomic step across processes and hosts, so no two
        callers ever take the last unit. ``expires_at``: when the counter may be dropped.
        """
        ...

    def close(self) -> None: ...


# --- the window rule both implementations apply -------------------------------------

# Grants idle this long are dropped; far beyond any window, so a clock stepped back
# a little never finds an account's history gone.
IDLE_MARGIN_US = 86_400 * US_PER_S


class Slot(NamedTuple):
    """One acquire decided: a grant stamped ``at_us``, or a wait of ``wait_us``."""

    at_us: int | None  # None: refused
    grants: list[int]  # after a grant: what the account's log holds now
    wait_us: int = 0  # after a refusal: at least 1


def next_slot(grants: Sequence[int], now_us: int, *, messages: int, per_us: int) -> Slot:
    """Decide one acquire from an account's stored grants (sorted microseconds).

    A slot is free at ``now_us``, or at the latest grant when the clock is behind it;
    ``wait_us`` is counted on the caller's clock, so sleeping it lands on the instant
    the next slot frees.
    """
    at = max(now_us, grants[-1]) if grants else now_us
    # Grants at or before at - per_us have left the window, for good: later decisions
    # are made at `at` or after.
    first = bisect_right(grants, at - per_us)
    if len(grants) - first < messages:
        kept = list(grants[first:])
        kept.append(at)
        return Slot(at, kept[-messages:])
    # The window is full. A slot frees when fewer than `messages` would remain: when the
    # grant `messages` places from the end turns per_us old. (More than `messages` are
    # stored only if `messages` was lowered since they were granted.)
    return Slot(None, [], grants[len(grants) - messages] + per_us - now_us)


def window_micros(per_seconds: float) -> int:
    """The window in whole microseconds, the unit every comparison is made in."""
    per_us = round(per_seconds * US_PER_S)
    if per_us < 1:
        raise ValueError(f"per_seconds must be at least one microsecond, got {per_seconds}")
    return per_us


def refusal(wait_us: int) -> Grant:
    return Grant(False, retry_after_s=wait_us / US_PER_S)
