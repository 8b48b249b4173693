"""The provider state protocol: what `health` shows of each provider's circuit breaker.

Each process keeps its breakers in memory (the hot path never touches storage) and
writes a provider's state here whenever it changes, so `huntaze health` on any host
shows what the processes sharing the store have seen. Last writer wins: a state is a
view, not a ledger. SQLite (providers.db beside the campaign store) and DynamoDB (the
``[campaigns]`` table) implement it and pass one contract suite; the backend follows
``[campaigns] backend``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class ProviderState:
    """What `health` shows of one provider: the last view any process wrote."""

    provider: str
    state: State
    consecutive_failures: int
    misconfigured: bool
    last_error: str | None
    last_error_kind: str | None
    last_error_at: datetime | None
    last_ok_at: datetime | None
    opened_at: datetime | None
    updated_at: datetime
    pid: int


class ProviderStateStore(Protocol):
    def save(self, state: ProviderState) -> None:
        """Store ``state`` as the provider's current view (replacing the last one)."""
        ...

    def load(self) -> dict[str, ProviderState]:
        """Every provider's last saved view, by provider name."""
        ...

    def close(self) -> None: ...
