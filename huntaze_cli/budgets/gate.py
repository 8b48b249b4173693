"""The budget gate the orchestrator calls around every provider attempt (llm/budget_gate.py).

``reserve`` holds an attempt's worst-case cost against every budget covering the call,
in one atomic step of the reservation store, or raises ``BudgetExceeded`` naming the
budget with no room; ``settle`` queues the real cost and a background flush settles
queued attempts in batches (one store transaction each), off the event loop. Until its
settlement is flushed an attempt's worst case stays reserved, which only ever errs on
the side of the limit.

A refusal is final only when the budget's settled spend leaves no room for the call.
When calls in flight hold the room (this process's or another's, on this host or
another) the call waits for them: it retires this process's leases on that budget and
settles what is queued, then asks the store again when one of this process's calls
settles or after a jittered pause that doubles up to ``WAIT_MAX_S``, one waiter per
budget and process at a time, for at most about ``ttl_s`` (by then every reservation it
waited for has settled or expired; a gateway call at most ``GATEWAY_WAIT_S``, its caller
being an HTTP client). So neither batching, leasing nor concurrency, here or elsewhere,
pauses a campaign while the calls in flight would give room back.

Calls are reserved through leases. A lease is one ordinary reservation of several
calls' worst cases, taken from the store in one transaction; the calls it covers are
then held in memory, without a store call each. What a lease holds counts as reserved in
the store for every process, so spent + reserved never passes a limit, exactly as with
one reservation per call. A lease covers at most ``LEASE_CALLS`` calls and a
``LEASE_SHARE``-th of the room its budgets had left; once that is less than two calls,
every call is its own reservation, so the last of a budget is shared call by call. A
lease takes no new call after ``LEASE_S`` (or when it is used up) and is settled with
the real cost of its calls once they have all ended, which gives back what they did not
use. If the
process dies, its leases count as spent until ``reservation_ttl_s``, then are released
like any reservation: the real cost of the calls that had ended on them is then missing
from ``spent`` (the ledger has it), at most ``LEASE_S`` plus one settlement interval of
calls, where reserving call by call the settlement interval alone was at risk.
Only stores answering in microseconds (``inline``, SQLite) lease: a lease serves one
process, and a store shared by many hosts keeps its room shared call by call.

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
LEASE_CALLS = 64  # at most this many calls' worst cases per lease
LEASE_SHARE = 16  # and at most this share of the room its budgets have left
LEASE_S = 0.5  # a lease takes new calls this long at most (a quarter of the ttl if shorter)
# A call refused while calls in flight hold the room asks again after these pauses.
WAIT_FIRST_S = 0.02
WAIT_MAX_S = 0.5
# A gateway (/v1) caller is an HTTP client, likely behind a proxy that gives up after a
# minute: its call waits at most this long for room, then gets 429 budget_exceeded.
GATEWAY_WAIT_S = 30.0


@dataclasses.dataclass(slots=True, eq=False)
class Lease:
    """One reservation in the store (``claims`` hold the leased amount) that calls draw on."""

    reservation_id: str
    key: tuple[tuple[str, str], ...]  # (budget, period) of each claim
    claims: tuple[Claim, ...]
    remaining: int  # not drawn yet, per budget
    until: float  # loop time after which it takes no new call
    open: bool = True
    calls: int = 0  # calls drawn on it that have not settled
    drawn_nano: int = 0  # their worst cases
    cost_nano: int = 0  # what its settled calls cost


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """One attempt's reservation: the lease it draws on, its budgets and worst case."""

    lease: Lease
    key: tuple[tuple[str, str], ...]  # (budget, period) of each budget in scope
    worst_nano: int


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
        self._periods: dict[str, tuple[str, float, float]] = {}  # period -> label, start, end
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
        self._settled = asyncio.Event()  # set (and replaced) when a call settles...
        self._sleepers = 0  # ...while this many refused calls wait for it
        # budget -> the lock its waiters for room queue on: one asks the store at a time
        self._waiting: dict[str, asyncio.Lock] = {}
        # (budget, period) of every claim of a call -> the lease its calls draw on
        self._leases: dict[tuple[tuple[str, str], ...], Lease] = {}
        self._retired: set[Lease] = set()  # taking no new call, waiting for its calls
        self._lease_calls = LEASE_CALLS if self._inline else 1
        self._lease_s = min(LEASE_S, ttl_s / 4)
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
        # Compared as epoch seconds: a datetime per call would cost more than the lease.
        now = self._clock.time()
        current = self._periods.get(period)
        if current is None or not current[1] <= now < current[2]:
            found = current_period(period, self._clock.now(), self._tz)
            current = (found.label, found.start.timestamp(), found.end.timestamp())
            self._periods[period] = current
        return current[0]

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
            label = self._label(limit.budget.period)
            known = self._used.get(limit.name)
            if known is not None and known[0] == label:
                used = known[1]
            else:
                used = await self._known_used(limit, label)
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
        key = tuple((limit.name, self._label(limit.budget.period)) for limit in limits)
        lease = self._leases.get(key)
        if lease is None or not self._draw(lease, worst_nano):
            claims = tuple(
                Claim(name, period, limit.limit_nano, worst_nano)
                for (name, period), limit in zip(key, limits, strict=True)
            )
            wait_s = self.ttl_s if request.body is None else min(self.ttl_s, GATEWAY_WAIT_S)
            lease = await self._lease(key, claims, worst_nano, wait_s)
        self._add_used(key, worst_nano)
        return Hold(lease, key, worst_nano)

    async def _lease(
        self,
        key: tuple[tuple[str, str], ...],
        claims: tuple[Claim, ...],
        worst_nano: int,
        wait_s: float,
    ) -> Lease:
        """A new lease from the store for calls of ``claims``, the first call drawn on it."""
        old = self._leases.pop(key, None)
        if old is not None:
            self._retire(old)
        amount = self._lease_size(claims)
        leased, reservation_id, answer = await self._take(claims, amount)
        if answer.refused is not None and amount > worst_nano:
            amount = worst_nano
            leased, reservation_id, answer = await self._take(claims, amount)
        if answer.refused is not None:
            amount = worst_nano
            # With ``ttl_s``: every reservation in flight now has settled or expired by
            # then, and the store was asked again after that.
            deadline = asyncio.get_running_loop().time() + wait_s + 2 * WAIT_MAX_S
            lock = self._waiting.get(answer.refused)
            if lock is None:
                lock = self._waiting[answer.refused] = asyncio.Lock()
            contended = lock.locked()
            # Queued behind another waiter, a call still gives up at its own deadline.
            try:
                await asyncio.wait_for(
                    lock.acquire(), max(0.0, deadline - asyncio.get_running_loop().time())
                )
            except TimeoutError:
                raise self._exceeded(answer.refused, claims, answer.used_nano, worst_nano) from None
            try:
                if contended:  # the waiter before this one may have seen room come back
                    leased, reservation_id, answer = await self._take(claims, amount)
                leased, reservation_id = await self._wait_for_room(
                    claims, (leased, reservation_id, answer), worst_nano, deadline
                )
            finally:
                lock.release()
        loop = asyncio.get_running_loop()
        lease = Lease(reservation_id, key, leased, amount, loop.time() + self._lease_s)
        other = self._leases.get(key)
        if other is not None:
            self._retire(other)  # taken by a call that was waiting meanwhile
        self._leases[key] = lease
        self._draw(lease, worst_nano)
        if lease.open:
            # Idle past its time, it gives its room back without waiting for a call.
            loop.call_later(self._lease_s, self._retire, lease)
        return lease

    async def _wait_for_room(
        self,
        claims: tuple[Claim, ...],
        taken: tuple[tuple[Claim, ...], str, Reservation],
        worst_nano: int,
        deadline: float,
    ) -> tuple[tuple[Claim, ...], str]:
        """Ask again (for one call) until the claims are held; raise when settled spend
        leaves no room, or when ``deadline`` (the event loop's time) has passed."""
        loop = asyncio.get_running_loop()
        pause = WAIT_FIRST_S
        leased, reservation_id, answer = taken
        while answer.refused is not None:
            name = answer.refused
            claim = next(c for c in claims if c.budget == name)
            # This process's leases on that budget give back what their calls do not use
            # once those end; its settled calls still hold their worst cases until flushed.
            self._retire_on(name)
            if self._settlements.pending:
                await self._settlements.flush_quietly()
                if not self._settlements.pending:
                    leased, reservation_id, answer = await self._take(claims, worst_nano)
                    continue
            spent = answer.used_nano.get(name, 0) - answer.reserved_nano.get(name, 0)
            if spent + worst_nano > claim.limit_nano or loop.time() >= deadline:
                raise self._exceeded(name, claims, answer.used_nano, worst_nano)
            # Calls in flight hold the room: wait for one of ours to settle, or a while
            # for other processes' calls, then ask the store again.
            self._sleepers += 1
            try:
                await asyncio.wait_for(self._settled.wait(), pause * random.uniform(0.5, 1.0))
            except TimeoutError:
                pause = min(pause * 2, WAIT_MAX_S)
            finally:
                self._sleepers -= 1
            leased, reservation_id, answer = await self._take(claims, worst_nano)
        return leased, reservation_id

    def _lease_size(self, claims: tuple[Claim, ...]) -> int:
        """How much to lease for calls of ``claims``: one call's worst case, or several
        while every budget has ample room left (as this process last learnt it)."""
        worst = claims[0].amount_nano
        calls = self._lease_calls
        for claim in claims:
            known = self._used.get(claim.budget)
            if known is None or known[0] != claim.period or worst <= 0:
                return worst
            calls = min(calls, (claim.limit_nano - known[1]) // (LEASE_SHARE * worst))
        return worst * calls if calls >= 2 else worst

    async def _take(
        self, claims: tuple[Claim, ...], amount: int
    ) -> tuple[tuple[Claim, ...], str, Reservation]:
        """Reserve ``amount`` on every budget of ``claims`` in the store: the claims as
        held, the reservation's id, and the store's answer."""
        leased = tuple(dataclasses.replace(claim, amount_nano=amount) for claim in claims)
        reservation_id = f"{self._prefix}{next(self._ids):x}"
        if self._inline:
            answer = self.store.reserve(reservation_id, leased, ttl_s=self.ttl_s)
        else:
            answer = await asyncio.to_thread(
                self.store.reserve, reservation_id, leased, ttl_s=self.ttl_s
            )
        held = answer.refused is None
        for claim in claims:
            if claim.budget in answer.used_nano:
                # What calls use, not what is leased: ``reserve`` adds each call's worst
                # case as it draws on the lease.
                used = answer.used_nano[claim.budget] - (amount if held else 0)
                self._used[claim.budget] = (claim.period, used)
        return leased, reservation_id, answer

    def _draw(self, lease: Lease, worst_nano: int) -> bool:
        """Hold ``worst_nano`` on ``lease`` if it still takes calls and has room for it."""
        if not lease.open or lease.remaining < worst_nano:
            return False
        if asyncio.get_running_loop().time() > lease.until:
            self._retire(lease)
            return False
        lease.remaining -= worst_nano
        lease.calls += 1
        lease.drawn_nano += worst_nano
        if lease.remaining < worst_nano:
            self._retire(lease)  # used up: settled as soon as its calls end
        return True

    def _retire(self, lease: Lease) -> None:
        """The lease takes no new call; it is settled (what it did not use given back)
        once its calls have ended."""
        if not lease.open:
            return
        lease.open = False
        if self._leases.get(lease.key) is lease:
            del self._leases[lease.key]
        if lease.calls:
            self._retired.add(lease)
        else:
            self._settle_lease(lease, lease.cost_nano)

    def _settle_lease(self, lease: Lease, cost_nano: int) -> None:
        self._retired.discard(lease)
        self._settlements.add(Settlement(lease.reservation_id, lease.claims, cost_nano))

    def _retire_on(self, budget: str) -> None:
        for lease in list(self._leases.values()):
            if any(claim.budget == budget for claim in lease.claims):
                self._retire(lease)

    def _add_used(self, key: tuple[tuple[str, str], ...], nano: int) -> None:
        for budget, period in key:
            known = self._used.get(budget)
            if known is not None and known[0] == period:
                self._used[budget] = (period, known[1] + nano)

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
        lease = hold.lease
        lease.calls -= 1
        lease.cost_nano += cost_nano
        lease.drawn_nano -= hold.worst_nano
        if not lease.open and not lease.calls:
            self._settle_lease(lease, lease.cost_nano)
        self._add_used(hold.key, cost_nano - hold.worst_nano)
        if self._sleepers:
            self._settled.set()
            self._settled = asyncio.Event()

    async def flush(self) -> None:
        """Settle every queued attempt now, the leases whose calls all ended included (a
        failed write keeps them queued)."""
        for lease in list(self._leases.values()):
            self._retire(lease)
        await self._settlements.flush()

    async def aclose(self) -> None:
        for lease in list(self._leases.values()):
            self._retire(lease)
        # Calls still drawing on a lease now were cancelled mid-call and will never
        # settle: they may have cost their worst case, so that much counts as spent.
        for lease in list(self._retired):
            self._settle_lease(lease, lease.cost_nano + lease.drawn_nano)
        await self._settlements.aclose()
