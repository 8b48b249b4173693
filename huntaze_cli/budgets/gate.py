"""The budget gate the orchestrator calls around every provider attempt (llm/budget_gate.py).

``reserve`` holds an attempt's worst-case cost against every budget covering the call,
in one atomic step of the reservation store, or raises ``BudgetExceeded`` naming the
budget with no room; ``settle`` queues the real cost and a background flush settles
queued attempts in batches (one store transaction each), off the event loop. Until its
settlement is flushed an attempt's worst case stays reserved, which only ever errs on
the side of the limit.

A refusal is final only when the budget's settled spend leaves no room for the call.
When calls in flight hold the room (this process's or another's, on this host or
another) the call waits for them: it settles what is queued, then asks the store again
when one of this process's calls settles or after a jittered pause that doubles up to
``WAIT_MAX_S``, one waiter per budget and process at a time, for at most about ``ttl_s``
(by then every reservation it waited for has settled or expired). So neither batching nor
concurrency, here or elsewhere, pauses a campaign while the calls in flight would give
room back.

``soft`` applies each covering budget's ``on_soft`` once it is past ``soft_pct``:
``downgrade`` swaps the model by the budget's map, ``throttle`` hands back a semaphore of
``throttle_concurrency`` slots per budget and process, and ``alert`` does nothing here
(the alert rules see the budget: alerts/rules.py). What a budget has used is learnt from
the store once per budget and period, then from every reservation's answer, which
includes what the other processes and hosts hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

from huntaze_cli.budgets.rules import Limit, current_period
from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.config import Budget
from huntaze_cli.costs.periods import Period
from huntaze_cli.errors import BudgetExceeded, ConfigError
from huntaze_cli.llm.batching import Batcher
from huntaze_cli.llm.types import GenerationRequest
from huntaze_cli.money import nano_to_usd
from huntaze_cli.storage.budgets import (
    BudgetUsage,
    Claim,
    Reservation,
    ReservationStore,
    Settlement,
)

SETTLE_EVERY_S = 0.05
SETTLE_BATCH = 128
# A call refused while calls in flight hold the room asks again after these pauses.
WAIT_FIRST_S = 0.02
WAIT_MAX_S = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """One attempt's reservation: what to settle."""

    reservation_id: str
    claims: tuple[Claim, ...]


class BudgetGate:
    """The ``llm.budget_gate.BudgetGate`` protocol over a reservation store (one per
    orchestrator)."""

    def __init__(
        self,
        budgets: Sequence[Budget],
        store: ReservationStore,
        *,
        tz: ZoneInfo,
        ttl_s: float,
        clock: Clock = SYSTEM_CLOCK,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        # A store whose calls take tens of microseconds (SQLite on a local disk) is called
        # on the event loop: a thread hop per call would cost several times the call.
        self._inline = bool(getattr(store, "inline", False))
        self.ttl_s = ttl_s
        self._limits = [Limit.of(budget) for budget in budgets]
        self._tz = tz
        self._clock = clock
        self._warn = warn
        self._scoped: dict[tuple[str | None, str | None, str | None], tuple[Limit, ...]] = {}
        self._periods: dict[str, Period] = {}
        self._used: dict[str, tuple[str, int]] = {}  # budget -> (period label, used nano)
        self._reading: dict[tuple[str, str], asyncio.Future[BudgetUsage]] = {}
        self._throttles: dict[str, asyncio.Semaphore] = {}
        self._settlements: Batcher[Settlement] = Batcher(
            store.settle,
            what="budget settlement",
            max_batch=SETTLE_BATCH,
            interval_s=SETTLE_EVERY_S,
            warn=warn,
        )
        self._settled = asyncio.Event()  # set (and replaced) whenever a call settles
        # budget -> the lock its waiters for room queue on: one asks the store at a time
        self._waiting: dict[str, asyncio.Lock] = {}
        self._prefix = os.urandom(6).hex()
        self._ids = itertools.count()

    # --- which budgets, which period -------------------------------------------------

    def covering(self, request: GenerationRequest) -> tuple[Limit, ...]:
        key = (request.tenant, request.account, request.campaign_id)
        found = self._scoped.get(key)
        if found is None:
            found = self._scoped[key] = tuple(limit for limit in self._limits if limit.covers(*key))
        return found

    def _label(self, period: str) -> str:
        now = self._clock.now()
        current = self._periods.get(period)
        if current is None or not current.start <= now < current.end:
            current = self._periods[period] = current_period(period, now, self._tz)
        return current.label

    async def _known_used(self, limit: Limit, label: str) -> int:
        known = self._used.get(limit.name)
        if known is not None and known[0] == label:
            return known[1]
        # Calls starting together share one read of the store.
        key = (limit.name, label)
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(
                asyncio.to_thread(self.store.usage, limit.name, label)
            )
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        usage = await asyncio.shield(reading)
        known = self._used.get(limit.name)
        if known is None or known[0] != label:
            self._used[limit.name] = known = (label, usage.used_nano)
        return known[1]

    # --- the protocol ----------------------------------------------------------------

    async def soft(
        self, request: GenerationRequest
    ) -> tuple[GenerationRequest, asyncio.Semaphore | None]:
        limits = self.covering(request)
        if not limits:
            return request, None
        model = request.model
        actions: list[str] = []
        throttle = None
        for limit in limits:
            used = await self._known_used(limit, self._label(limit.budget.period))
            if not limit.soft_reached(used):
                continue
            budget = limit.budget
            if budget.on_soft == "downgrade":
                cheaper = budget.downgrade.get(model)
                if cheaper and cheaper != model:
                    actions.append(f"downgrade:{model}->{cheaper}")
                    model = cheaper
            elif budget.on_soft == "throttle" and throttle is None:
                throttle = self._throttles.get(budget.name)
                if throttle is None:
                    throttle = self._throttles[budget.name] = asyncio.Semaphore(
                        budget.throttle_concurrency
                    )
                actions.append("throttle")
        if actions:
            request = dataclasses.replace(request, model=model, budget_action=",".join(actions))
        return request, throttle

    async def reserve(
        self, request: GenerationRequest, *, provider: str, worst_nano: int | None
    ) -> Hold | None:
        limits = self.covering(request)
        if not limits:
            return None
        if worst_nano is None:
            raise ConfigError(
                f"budget {limits[0].name!r} covers this call, but model {request.model!r} "
                f"on provider {provider!r} has no known price, so its worst case cannot be "
                "reserved",
                hint=f'add [pricing.overrides."{provider}/{request.model}"] with its prices',
            )
        claims = tuple(
            Claim(limit.name, self._label(limit.budget.period), limit.limit_nano, worst_nano)
            for limit in limits
        )
        reservation_id = f"{self._prefix}{next(self._ids):x}"
        answer = await self._ask(reservation_id, claims)
        if answer.refused is not None:
            # Every reservation in flight now has settled or expired by then, and the
            # store was asked again after that.
            deadline = asyncio.get_running_loop().time() + self.ttl_s + 2 * WAIT_MAX_S
            lock = self._waiting.get(answer.refused)
            if lock is None:
                lock = self._waiting[answer.refused] = asyncio.Lock()
            contended = lock.locked()
            async with lock:
                if contended:  # the waiter before this one may have seen room come back
                    answer = await self._ask(reservation_id, claims)
                await self._wait_for_room(reservation_id, claims, answer, worst_nano, deadline)
        return Hold(reservation_id, claims)

    async def _ask(self, reservation_id: str, claims: tuple[Claim, ...]) -> Reservation:
        if self._inline:
            answer = self.store.reserve(reservation_id, claims, ttl_s=self.ttl_s)
        else:
            answer = await asyncio.to_thread(
                self.store.reserve, reservation_id, claims, ttl_s=self.ttl_s
            )
        for claim in claims:
            if claim.budget in answer.used_nano:
                self._used[claim.budget] = (claim.period, answer.used_nano[claim.budget])
        return answer

    async def _wait_for_room(
        self,
        reservation_id: str,
        claims: tuple[Claim, ...],
        answer: Reservation,
        worst_nano: int,
        deadline: float,
    ) -> None:
        """Ask again until the claims are held; raise when settled spend leaves no room,
        or when ``deadline`` (the event loop's time) has passed."""
        loop = asyncio.get_running_loop()
        pause = WAIT_FIRST_S
        while answer.refused is not None:
            name = answer.refused
            claim = next(c for c in claims if c.budget == name)
            used = answer.used_nano.get(name, 0)
            spent = used - answer.reserved_nano.get(name, 0)
            if self._settlements.pending:
                # This process's settled calls still hold their worst cases.
                await self._settlements.flush_quietly()
                if not self._settlements.pending:
                    answer = await self._ask(reservation_id, claims)
                    continue
            if spent + claim.amount_nano > claim.limit_nano or loop.time() >= deadline:
                raise self._exceeded(name, claims, answer.used_nano, worst_nano)
            # Calls in flight hold the room: wait for one of ours to settle, or a while
            # for other processes' calls, then ask the store again.
            settled = self._settled
            try:
                await asyncio.wait_for(settled.wait(), pause * random.uniform(0.5, 1.0))
            except TimeoutError:
                pause = min(pause * 2, WAIT_MAX_S)
            answer = await self._ask(reservation_id, claims)

    def _exceeded(
        self, name: str, claims: tuple[Claim, ...], used: dict[str, int], worst_nano: int
    ) -> BudgetExceeded:
        claim = next(c for c in claims if c.budget == name)
        spent = used.get(name, 0)
        return BudgetExceeded(
            f"budget {name!r} has no room for the next call: ${nano_to_usd(spent):.6f} of its "
            f"${nano_to_usd(claim.limit_nano):.6f} limit for {claim.period} is spent or "
            f"reserved, and the call may cost up to ${nano_to_usd(worst_nano):.6f}",
            budget=name,
            hint="generation resumes by itself when the period turns or the limit is raised "
            "(`huntaze budgets list` shows every budget)",
        )

    def settle(self, hold: object, cost_nano: int) -> None:
        assert isinstance(hold, Hold)
        self._settlements.add(Settlement(hold.reservation_id, hold.claims, cost_nano))
        self._settled.set()
        self._settled = asyncio.Event()
        for claim in hold.claims:
            known = self._used.get(claim.budget)
            if known is not None and known[0] == claim.period:
                self._used[claim.budget] = (known[0], known[1] - claim.amount_nano + cost_nano)

    async def flush(self) -> None:
        """Settle every queued attempt now (a failed write keeps them queued)."""
        await self._settlements.flush()

    async def aclose(self) -> None:
        await self._settlements.aclose()
