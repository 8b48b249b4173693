"""The budget reservation store protocol: money held for calls in flight, per budget period.

A budget period (``budget``, ``period`` key such as ``2026-12`` or ``2026-12-03``) has
two figures: ``spent_nano``, settled calls, and ``reserved_nano``, the worst-case cost of
calls still in flight. Every implementation keeps these promises, checked by one
contract suite (tests/storage/test_reservation_contract.py) on SQLite and on DynamoDB:

* ``reserve`` holds an amount against several budget periods at once, or against none:
  it succeeds only if, for every claim, ``spent + reserved + amount <= limit`` when it
  commits, across every process and host sharing the store (SQLite ``BEGIN
  IMMEDIATE``; DynamoDB one ``TransactWriteItems`` with a condition per budget).
* ``settle`` swaps a reservation for the real cost in one atomic step. A reservation is
  the write-ahead record of a call in flight: until it is settled or expires it counts as
  money spent, so a crash never hides spend from a budget.
* A reservation not settled ``ttl_s`` after it was made (its process died) is released
  by the next ``reserve`` that needs the room, or by ``usage``. A call settled after its
  reservation expired still adds its cost to ``spent``.
* ``settle`` is called once per reservation (the orchestrator does); settling twice would
  count the cost twice.
* A refusal is remembered (``refused_nano``, the amount that found no room) until the
  next reservation of that budget period is held, so reports can say a budget is
  blocking calls even while a little of it is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Claim:
    """``amount_nano`` to hold against ``budget`` in ``period``, up to ``limit_nano``."""

    budget: str
    period: str
    limit_nano: int
    amount_nano: int


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """One budget period's figures: settled spend and what calls in flight hold."""

    spent_nano: int = 0
    reserved_nano: int = 0
    refused_nano: int = 0  # the last refused amount, 0 once a reservation was held again

    @property
    def used_nano(self) -> int:
        return self.spent_nano + self.reserved_nano


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer to ``reserve``: held (``refused`` None) or the budget that had no room.

    ``used_nano`` holds, per budget claimed, spent + reserved as the store saw it: after
    the reservation when it was held, before it when refused (for the budget that
    refused; the others may be missing). ``reserved_nano`` holds, for the budget that
    refused, the part of it calls in flight hold: when settled spend alone leaves room
    for the claim, the room may come back as they settle.
    """

    refused: str | None
    used_nano: dict[str, int]
    reserved_nano: dict[str, int] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return self.refused is None


@dataclass(frozen=True, slots=True)
class Settlement:
    """A reservation to settle: its id, what it claimed, and the call's real cost."""

    reservation_id: str
    claims: Sequence[Claim]
    cost_nano: int


class ReservationStore(Protocol):
    """SQLite (one host, many processes) and DynamoDB (many hosts) implement it."""

    def reserve(self, reservation_id: str, claims: Sequence[Claim], *, ttl_s: float) -> Reservation:
        """Hold every claim or none (see the module docstring); never blocks on a full budget."""
        ...

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Swap each reservation for its real cost (added to ``spent`` of every claim)."""
        ...

    def usage(self, budget: str, period: str) -> BudgetUsage:
        """A budget period's figures, expired reservations released first."""
        ...

    def close(self) -> None: ...
