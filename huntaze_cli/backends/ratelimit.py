"""The per-account compliance rate limiter protocol.

For every account, any window of ``per_seconds`` holds at most ``messages`` granted
slots, across every process sharing the backend (a sliding-window log: the grant times
of the last ``messages`` slots). A worker takes a slot immediately before it hands a
message to the sink and stamps the message's ``sent_at`` with the slot's time; a
message that may not go yet waits, it is never dropped. Accounts are independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


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

    def close(self) -> None: ...
