"""The delivery worker: lease due messages, wait for each account's rate limit, deliver.

One loop for `worker`, the foreground of `send-campaign` and `serve`. Accounts are
delivered concurrently (one task per account in a batch), so a full account never slows
another. For each message: take a rate-limit slot (waiting if the window is full; a
wait longer than the lease returns the message to the queue instead), hand it to the
sink stamped with the slot's time, then record the outcome in the campaign store before
acking the queue, so a crash at any point leaves the message leasable again and the
idempotency key makes the replay harmless. A tenant with a daily quota
(``campaigns.quota``) gets at most that many deliveries a day; its other messages go
back to the queue, due when its day turns.

Every store, queue, limiter and sink call runs off the event loop (``offload``), so the
loop stays free for whatever shares it (the HTTP API of `huntaze serve`). What the worker
decides by the time (a lease's time left, an account's pause, the heartbeat) it reads
from its ``Clock``, the one the queue and limiter read in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from huntaze_cli.campaigns.offload import off_loop
from huntaze_cli.campaigns.quota import DeliveryQuotas
from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.config import Config
from huntaze_cli.errors import ConfigError, DeliveryError
from huntaze_cli.retry import backoff_s
from huntaze_cli.sinks import PermanentDelivery, RetryableDelivery, Sink
from huntaze_cli.storage.campaigns import CampaignStore
from huntaze_cli.storage.queue import DeliveryQueue, Lease
from huntaze_cli.storage.ratelimit import RateLimiter

LEASE_MARGIN_S = 5.0  # never start a delivery this close to the end of its lease
HEARTBEAT_S = 5.0


@dataclass
class WorkerStats:
    delivered: int = 0
    replayed: int = 0  # the sink already had the key
    retried: int = 0
    dead: int = 0
    released: int = 0
    over_quota: int = 0  # put back until the tenant's day turns
    stale: int = 0  # an outcome not recorded: the lease had passed to another worker


class DeliveryWorker:
    """Drains the delivery queue for every account (or one, for a foreground send)."""

    def __init__(
        self,
        config: Config,
        *,
        queue: DeliveryQueue,
        limiter: RateLimiter,
        sink: Sink,
        store: CampaignStore,
        account: str | None = None,
        batch: int = 50,
        poll_s: float = 0.25,
        on_event: Callable[[str, Lease], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.queue = queue
        self.limiter = limiter
        self.sink = sink
        self.store = store
        self.account = account
        self.batch = batch
        self.poll_s = poll_s
        self.on_event = on_event
        self.stats = WorkerStats()
        self.quotas = DeliveryQuotas(config, limiter, store)
        self.worker_id = f"w_{secrets.token_hex(4)}"
        self.clock = clock
        self.started_at = clock.now()
        self._blocked: dict[str, float] = {}  # account -> monotonic time it may go again
        self._stop = asyncio.Event()
        self._rng = random.Random()

    def stop(self) -> None:
        """Stop taking work; deliveries in flight finish, waiting ones go back."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(
        self, *, once: bool = False, until: Callable[[], Awaitable[bool]] | None = None
    ) -> WorkerStats:
        """Deliver until stopped; ``once``: until nothing is due; ``until``: a predicate."""
        last_beat = 0.0
        try:
            while not self._stop.is_set():
                now = self.clock.monotonic()
                if now - last_beat >= HEARTBEAT_S:
                    await self._beat()
                    last_beat = now
                if until is not None and await until():
                    break
                blocked = [a for a, t in self._blocked.items() if t > now]
                leases = await off_loop(
                    self.queue.lease,
                    limit=self.batch,
                    lease_s=self.config.queue.lease_s,
                    exclude_accounts=blocked,
                    account=self.account,
                )
                if self.account is not None:
                    leases = await self._only_mine(leases)
                if not leases:
                    if once:
                        break
                    await self._sleep(self.poll_s)
                    continue
                by_account: dict[str, list[Lease]] = {}
                for lease in leases:
                    by_account.setdefault(lease.item.account, []).append(lease)
                await asyncio.gather(
                    *(self._deliver_account(a, items) for a, items in by_account.items())
                )
                await self._refresh({lease.item.campaign_id for lease in leases})
        finally:
            await self._beat(stopped=True)
        return self.stats

    async def _only_mine(self, leases: list[Lease]) -> list[Lease]:
        # Queues that cannot filter by account (SQS) hand out others: give them back.
        mine = []
        for lease in leases:
            if lease.item.account == self.account:
                mine.append(lease)
            else:
                await off_loop(self.queue.release, lease, delay_s=0)
        return mine

    async def _deliver_account(self, account: str, leases: list[Lease]) -> None:
        for index, lease in enumerate(leases):
            grant = None
            while not self._stop.is_set():
                # A DynamoDB limiter makes network calls: keep them off the event loop.
                grant = await asyncio.to_thread(self.limiter.acquire, account)
                if grant.granted:
                    break
                left = (lease.leased_until - self.clock.now()).total_seconds()
                if grant.retry_after_s > left - LEASE_MARGIN_S:
                    # The wait outlives the lease: give the rest back, due when the slot is.
                    for rest in leases[index:]:
                        await off_loop(self.queue.release, rest, delay_s=grant.retry_after_s)
                        self.stats.released += 1
                    self._blocked[account] = self.clock.monotonic() + grant.retry_after_s
                    return
                await self._sleep(grant.retry_after_s)
            if self._stop.is_set() or grant is None or not grant.granted:
                for rest in leases[index:]:
                    await off_loop(self.queue.release, rest, delay_s=0)
                    self.stats.released += 1
                return
            if self.quotas.active:
                wait = await asyncio.to_thread(
                    self.quotas.take, lease.item.campaign_id, now=self.clock.now()
                )
                if wait > 0:
                    await off_loop(self.queue.release, lease, delay_s=wait)
                    self.stats.over_quota += 1
                    self._emit("over_quota", lease)
                    continue
            await self._deliver(lease, grant.at or self.clock.now())

    async def _deliver(self, lease: Lease, sent_at: datetime) -> None:
        item = lease.item
        payload: dict[str, Any] = {
            "idempotency_key": item.key,
            "campaign_id": item.campaign_id,
            "account": item.account,
            "recipient_id": item.recipient_id,
            "text": item.text,
            "sent_at": sent_at.isoformat(),
        }
        try:
            fresh = await asyncio.to_thread(self.sink.deliver, payload)
        except RetryableDelivery as exc:
            delay = exc.retry_after_s if exc.retry_after_s is not None else self._backoff(lease)
            outcome = await off_loop(self.queue.retry, lease, delay_s=delay, error=exc.message)
            if not outcome.applied:
                self._stale(lease)
                return
            state = "dead" if outcome.dead else "failed"
            await self._outcome(item.key, state, sent_at=None, error=exc.message)
            if outcome.dead:
                self.stats.dead += 1
            else:
                self.stats.retried += 1
            self._emit(state, lease)
            return
        except (PermanentDelivery, ConfigError) as exc:
            if not await off_loop(self.queue.kill, lease, error=exc.message):
                self._stale(lease)
                return
            await self._outcome(item.key, "dead", sent_at=None, error=exc.message)
            self.stats.dead += 1
            self._emit("dead", lease)
            return
        except DeliveryError as exc:
            outcome = await off_loop(
                self.queue.retry, lease, delay_s=self._backoff(lease), error=exc.message
            )
            if not outcome.applied:
                self._stale(lease)
                return
            state = "dead" if outcome.dead else "failed"
            await self._outcome(item.key, state, sent_at=None, error=exc.message)
            return
        # Store first, then ack: a crash in between replays a delivery the sink dedupes.
        await self._outcome(item.key, "sent", sent_at=payload["sent_at"], error=None)
        await off_loop(self.queue.ack, lease)
        if fresh:
            self.stats.delivered += 1
        else:
            self.stats.replayed += 1
        self._emit("sent", lease)

    def _stale(self, lease: Lease) -> None:
        """The lease expired while delivering: another worker holds the message now and
        records its outcome; recording ours could move it backwards."""
        self.stats.stale += 1
        self._emit("stale", lease)

    def _backoff(self, lease: Lease) -> float:
        backoff = self.config.queue.backoff
        return backoff_s(
            lease.attempts,
            base_s=backoff.base_s,
            max_s=backoff.max_s,
            spread=(1.0, 1.0 + backoff.jitter),  # [queue.backoff] jitter is added
            rng=self._rng,
        )

    def _emit(self, what: str, lease: Lease) -> None:
        if self.on_event:
            self.on_event(what, lease)

    async def _outcome(
        self, key: str, state: str, *, sent_at: str | None, error: str | None
    ) -> None:
        await off_loop(self.store.delivery_outcome, key, state, sent_at=sent_at, error=error)

    async def _refresh(self, campaign_ids: set[str]) -> None:
        for campaign_id in campaign_ids:
            await off_loop(self.store.refresh_state, campaign_id)

    async def _beat(self, *, stopped: bool = False) -> None:
        await off_loop(
            self.store.heartbeat,
            self.worker_id,
            started_at=self.started_at,
            delivered=self.stats.delivered,
            stopped=stopped,
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0.001))
