"""What the orchestrator asks of budgets, as a protocol (budgets/ implements it).

The orchestrator sits below the budgets package, so it knows budgets only through this
small object, built by the services and handed to ``Orchestrator.from_config``:

* ``soft`` once per generation: the request to run (a cheaper model when a budget in
  scope is past its soft limit with ``on_soft = "downgrade"``; ``budget_action`` then
  says so) and a semaphore to hold while it runs (``throttle``), or None.
* ``reserve`` before every provider attempt, with the attempt's worst-case cost for the
  provider and model about to be called: a hold, None when no budget covers the call,
  or ``BudgetExceeded`` (errors.py) when a budget has no room; nothing is called then.
* ``settle`` after the attempt (success or failure) with its real cost. An attempt
  cancelled mid-call is not settled: its reservation counts as spent until it expires.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from huntaze_cli.llm.types import GenerationRequest

# A request without max_tokens may write this many output tokens as far as a
# reservation is concerned (the worst case must be finite to be held).
UNBOUNDED_OUTPUT_TOKENS = 4096


class BudgetGate(Protocol):
    async def soft(
        self, request: GenerationRequest
    ) -> tuple[GenerationRequest, asyncio.Semaphore | None]:
        """The request as budgets want it run, and a throttle to hold (or None)."""
        ...

    async def reserve(
        self, request: GenerationRequest, *, provider: str, worst_nano: int | None
    ) -> object | None:
        """Hold ``worst_nano`` against every budget in scope (None: the model is unpriced)."""
        ...

    def settle(self, hold: object, cost_nano: int) -> None:
        """The attempt ended and cost ``cost_nano``; never blocks."""
        ...

    async def aclose(self) -> None:
        """Settle what is pending."""
        ...
