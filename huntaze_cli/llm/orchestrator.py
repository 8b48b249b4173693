"""The hybrid orchestrator: every LLM call of huntaze goes through ``Orchestrator.generate``.

For one request it asks the router for an order of providers, then runs the attempt
loop: one provider call per attempt (the SDK never retries on its own), failures
classified as DESIGN.md invariant 5 says, retryable ones moved to the next provider at
once or retried on the same one after its Retry-After or a jittered backoff, all within
``max_attempts`` and an overall deadline. Every attempt, success or failure, becomes one
cost event, priced from the reported usage, and is handed to a batching ledger writer.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.config import Config
from huntaze_cli.errors import BackendError, ConfigError, HuntazeError, ProviderError
from huntaze_cli.llm.circuit import CircuitBreaker
from huntaze_cli.llm.routing import HealthWindow, LatencyTracker, Router
from huntaze_cli.llm.types import (
    Attempt,
    Completion,
    GenerationRequest,
    GenerationResult,
    Provider,
    ProviderFailure,
    Usage,
)
from huntaze_cli.models import CostEvent
from huntaze_cli.retry import backoff_s

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

    from huntaze_cli.llm.pricing import PriceBook
    from huntaze_cli.observability.cloudwatch import CallMetricsPublisher
    from huntaze_cli.observability.metrics import Metrics
    from huntaze_cli.storage.journal import CostJournal
    from huntaze_cli.storage.ledger import Ledger
    from huntaze_cli.storage.providers import ProviderStateStore


_PROMPT_FAULTS = frozenset({"content_filter", "bad_request"})
# How often a process reads the breaker states other processes shared (see circuit.adopt).
SHARED_STATE_EVERY_S = 5.0

# Per (provider, model) metric children: requests, latency, tokens in/cached/out, cost.
_Children = tuple["Counter", "Histogram", "Counter", "Counter", "Counter", "Counter"]


class GenerationFailed(ProviderError):
    """No attempt produced a message; ``kind`` is the last failure's class."""

    def __init__(self, message: str, *, kind: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.kind = kind
        self.attempts = attempts


class ProvidersDown(GenerationFailed):
    """Every provider this request may use has its circuit open: nothing was tried.

    Raised at once instead of waiting out the cooldown, so a campaign against a dead
    upstream stops in seconds (its messages stay pending, to resume) rather than
    spending each message's whole deadline. The message names each provider's cause.
    """


def _attempt_id() -> str:
    """Unique and time-ordered (nanoseconds, then randomness), as 32 hex digits.

    Ordered ids keep the ledger's primary-key index appending at its end; random ids
    scatter every batch over the whole index and cut SQLite's write rate several-fold
    on a million-event ledger.
    """
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


class LedgerWriter:
    """Batches cost events and writes them off the event loop.

    Events are flushed every ``max_batch`` events or ``interval_s`` seconds, whichever
    comes first, and on ``aclose``. A failed write keeps its events for the next flush.
    With a ``journal`` (storage/journal.py) nothing waits in memory alone: each attempt
    is journalled before its call (``begin``) and when it ends (``add``), and settled
    in the journal once stored, so a killed process's attempts are recovered.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_batch: int = 500,
        interval_s: float = 0.2,
        warn: Callable[[str], None] | None = None,
        journal: CostJournal | None = None,
    ) -> None:
        self.ledger = ledger
        self.journal = journal
        self.max_batch = max_batch
        self.interval_s = interval_s
        self._buffer: list[CostEvent] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        # A full buffer has a flush scheduled that has not taken it yet: events added
        # meanwhile ride along with it instead of each scheduling a flush of its own
        # (which, while a slow write holds the lock, would be a task per event).
        self._full_flush_pending = False
        self._warn = warn
        self.written = 0

    def begin(self, intent: CostEvent) -> None:
        """An attempt is about to call a provider: journal it before any money is spent."""
        if self.journal is not None:
            self.journal.begin(intent)

    def forget(self, attempt_id: str) -> None:
        """The attempt never called its provider (it could not be used at all)."""
        if self.journal is not None:
            self.journal.settled([attempt_id])

    def add(self, event: CostEvent) -> None:
        if self.journal is not None:
            self.journal.end(event)
        self._buffer.append(event)
        if len(self._buffer) >= self.max_batch:
            if not self._full_flush_pending:
                self._full_flush_pending = True
                task = asyncio.get_running_loop().create_task(self._flush_quietly())
                self._flushing.add(task)
                task.add_done_callback(self._flushing.discard)
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        await asyncio.sleep(self.interval_s)
        # Shielded: ``aclose`` cancels the timer, and a write cancelled mid-way would go
        # on in its thread while aclose reports everything written.
        await asyncio.shield(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except BackendError as exc:
            if self._warn:
                self._warn(f"cost ledger write failed, will retry: {exc.message}")

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            self._full_flush_pending = False
            try:
                await asyncio.to_thread(self.ledger.record, batch)
            except BackendError:
                self._buffer[:0] = batch
                raise
            self.written += len(batch)
            if self.journal is not None:
                self.journal.settled(event.attempt_id for event in batch)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.flush()
        if self.journal is not None:
            await self._close_journal(self.journal)

    async def _close_journal(self, journal: CostJournal) -> None:
        """Record attempts begun and never ended (a cancelled call) as interrupted."""
        from huntaze_cli.storage.journal import interrupted

        intents = journal.unsettled()
        if intents:
            await asyncio.to_thread(self.ledger.record, [interrupted(i) for i in intents])
        journal.close()


class Orchestrator:
    """Routes, retries, fails over and prices every generation; one per process."""

    def __init__(
        self,
        config: Config,
        providers: Mapping[str, Provider],
        *,
        prices: PriceBook,
        ledger: Ledger | None = None,
        metrics: Metrics | None = None,
        state_store: ProviderStateStore | None = None,
        warn: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
        cloudwatch: CallMetricsPublisher | None = None,
        clock: Clock = SYSTEM_CLOCK,
        journal: CostJournal | None = None,
    ) -> None:
        self.config = config
        self.routing = config.routing
        self.providers = dict(providers)
        self.prices = prices
        self.metrics = metrics
        self.latency = LatencyTracker()
        # Recent error rate and latency per provider: only strategy auto reads them.
        uses_auto = config.routing.strategy == "auto" or any(
            arm.strategy == "auto"
            for experiment in config.experiments.values()
            for arm in experiment.arms.values()
        )
        self.health = HealthWindow(config.routing.auto.window) if uses_auto else None
        self.router = Router(
            config,
            list(self.providers),
            latency=self.latency,
            price_of=self._unit_price,
            health=self.health,
        )
        self.breakers = {
            name: CircuitBreaker(
                name,
                threshold=self.routing.circuit_failure_threshold,
                cooldown_s=self.routing.circuit_cooldown_s,
                store=state_store,
                clock=clock,
                on_change=metrics.set_circuit if metrics else None,
            )
            for name in self.providers
        }
        self.writer = (
            LedgerWriter(ledger, warn=warn, journal=journal)
            if ledger is not None and config.flags.cost_tracking
            else None
        )
        self._state_store = state_store
        self._shared_read_at = -SHARED_STATE_EVERY_S
        self.cloudwatch = cloudwatch
        self._cloudwatch_task: asyncio.Task[None] | None = None
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(self.routing.concurrency)
        self._children: dict[tuple[str, str], _Children] = {}

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        ledger: Ledger | None,
        metrics: Metrics | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Orchestrator:
        """Everything built from config: providers, price book, shared breaker state."""
        from huntaze_cli.llm.pricing import PriceBook
        from huntaze_cli.llm.providers import build_providers
        from huntaze_cli.storage import open_provider_state

        warned = warn or (lambda message: None)
        prices = PriceBook(
            config.pricing.overrides,
            on_unpriced=lambda model: warned(
                f"no price known for model {model!r}: its cost events are recorded as "
                'unpriced; add [pricing.overrides."<provider>/<model>"]'
            ),
        )
        journal = None
        if ledger is not None and config.flags.cost_tracking:
            from huntaze_cli.storage.journal import CostJournal, recover

            # Attempts of processes that died here (kill -9) reach the ledger first.
            recover(config.data_dir / "journal", ledger)
            journal = CostJournal(config.data_dir / "journal")
        cloudwatch = None
        if config.metrics.cloudwatch:
            from huntaze_cli.observability.cloudwatch import CallMetricsPublisher

            cloudwatch = CallMetricsPublisher(config, warn=warn)
        return cls(
            config,
            build_providers(config),
            prices=prices,
            ledger=ledger,
            metrics=metrics,
            state_store=open_provider_state(config),
            warn=warn,
            cloudwatch=cloudwatch,
            journal=journal,
        )

    def _unit_price(self, provider: str, model: str) -> Decimal | None:
        price = self.prices.price(provider, self.providers[provider].kind, model)
        return None if price is None else price.input + price.output

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Write one message; raises GenerationFailed when no attempt succeeds."""
        self._adopt_shared_state()
        async with self._semaphore:
            try:
                result = await self._attempts(request)
            except GenerationFailed:
                if self.metrics:
                    self.metrics.generations.labels("failed").inc()
                raise
            if self.metrics:
                self.metrics.generations.labels("ok").inc()
            return result

    def _adopt_shared_state(self) -> None:
        """Every few seconds: open the breakers other processes (hosts) opened."""
        now = time.monotonic()
        if self._state_store is None or now - self._shared_read_at < SHARED_STATE_EVERY_S:
            return
        self._shared_read_at = now
        try:
            shared = self._state_store.load()
        except HuntazeError:
            return  # a view only: an unreadable store never fails a generation
        for name, state in shared.items():
            breaker = self.breakers.get(name)
            if breaker is not None:
                breaker.adopt(state)

    async def _attempts(self, request: GenerationRequest) -> GenerationResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.routing.deadline_s
        plan = self.router.plan(request)
        excluded: set[str] = set()
        ready_at: dict[str, float] = {}
        failures_on: dict[str, int] = {}
        attempts: list[Attempt] = []
        config_errors: list[ConfigError] = []
        last: ProviderFailure | None = None
        previous: str | None = None
        while len(attempts) < self.routing.max_attempts:
            candidates = [name for name in plan.order if name not in excluded]
            if not candidates:
                break
            now = loop.time()
            pick = next(
                (
                    name
                    for name in candidates
                    if ready_at.get(name, 0.0) <= now and self.breakers[name].allow()
                ),
                None,
            )
            if pick is None:
                down = [name for name in candidates if self._down(name)]
                if len(down) == len(candidates):
                    raise self._providers_down(down, attempts)
                wait = min(
                    max(ready_at.get(name, 0.0) - now, self.breakers[name].ready_in())
                    for name in candidates
                )
                if now + wait >= deadline:
                    break
                await asyncio.sleep(max(wait, 0.001))
                continue
            if now >= deadline:
                break  # an attempt ran past it (time not under the SDK's timeout)
            timeout = min(self.routing.timeout_s, deadline - now)
            if last is None:
                reason = plan.reason if pick == plan.order[0] else "circuit_open"
            elif pick == previous:
                reason = f"retry:{last.kind}"
            else:
                reason = f"fallback:{last.kind}"
                if self.metrics and previous:
                    self.metrics.fallbacks.labels(previous, pick, last.kind).inc()
            provider = self.providers[pick]
            breaker = self.breakers[pick]
            attempt_id = _attempt_id()
            if self.writer is not None:
                self.writer.begin(self._event(request, provider, attempt_id, reason))
            started = time.perf_counter()
            try:
                completion = await provider.complete(request, timeout=timeout)
            except ProviderFailure as failure:
                latency_ms = (time.perf_counter() - started) * 1000
                attempts.append(
                    self._record(
                        request,
                        provider,
                        attempt_id,
                        reason,
                        latency_ms,
                        failure.usage,
                        None,
                        failure,
                    )
                )
                last, previous = failure, pick
                if failure.kind == "auth":
                    breaker.failure(failure.kind, failure.message, misconfigured=True)
                    excluded.add(pick)
                elif failure.kind == "content_filter":
                    breaker.release()
                    if not (plan.fallback and self.routing.fallback_on_content_filter):
                        break
                    excluded.add(pick)
                elif failure.kind == "bad_request":
                    breaker.release()
                    break
                else:
                    breaker.failure(failure.kind, failure.message)
                    failures_on[pick] = failures_on.get(pick, 0) + 1
                    delay = failure.retry_after_s
                    if delay is None:
                        delay = self._backoff(failures_on[pick])
                    ready_at[pick] = loop.time() + delay
                continue
            except ConfigError as exc:
                # The provider cannot be used at all (a missing key): not an attempt.
                if self.writer is not None:
                    self.writer.forget(attempt_id)
                breaker.failure("auth", exc.message, misconfigured=True)
                excluded.add(pick)
                config_errors.append(exc)
                continue
            except BaseException:
                breaker.release()
                raise
            latency_ms = (time.perf_counter() - started) * 1000
            breaker.success()
            self.latency.observe(pick, latency_ms)
            attempt = self._record(
                request,
                provider,
                attempt_id,
                reason,
                latency_ms,
                completion.usage,
                completion.response_model,
                None,
            )
            attempts.append(attempt)
            return self._result(request, provider, completion, attempt, attempts)
        if config_errors and not attempts:
            raise config_errors[0]
        raise self._failed(request, attempts, last)

    def _down(self, name: str) -> bool:
        """Circuit open and cooling down, or its one half-open probe already in flight."""
        breaker = self.breakers[name]
        return breaker.state != "closed" and breaker.ready_in() > 0

    def _providers_down(self, names: list[str], attempts: list[Attempt]) -> ProvidersDown:
        causes = []
        for name in names:
            breaker = self.breakers[name]
            cfg = getattr(self.providers[name], "cfg", None)
            where = getattr(cfg, "base_url", None) or getattr(cfg, "endpoint", None)
            cause = breaker.last_error or breaker.last_error_kind or "failing"
            causes.append(f"{name}: {cause}" + (f" at {where}" if where else ""))
        return ProvidersDown(
            "every provider's circuit is open: " + "; ".join(causes),
            kind="circuit_open",
            attempts=attempts,
        )

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with jitter (50-100 %) before retrying the same provider."""
        return backoff_s(
            failures - 1,
            base_s=self.routing.backoff_base_s,
            max_s=self.routing.backoff_max_s,
            rng=self._rng,
        )

    def _failed(
        self, request: GenerationRequest, attempts: list[Attempt], last: ProviderFailure | None
    ) -> GenerationFailed:
        if last is None:
            detail = "no provider could be tried before the deadline"
            kind = "deadline"
        else:
            detail = f"last: {attempts[-1].provider}: {last.kind}: {last.message}"
            kind = last.kind
        return GenerationFailed(
            f"request {request.request_id}: no attempt succeeded "
            f"({len(attempts)} attempt{'s' if len(attempts) != 1 else ''}); {detail}",
            kind=kind,
            attempts=attempts,
        )

    @staticmethod
    def _event(
        request: GenerationRequest,
        provider: Provider,
        attempt_id: str,
        reason: str,
        **outcome: object,
    ) -> CostEvent:
        """The cost event of an attempt; without ``outcome`` (usage, cost, status...) what
        the journal notes before the call: who calls whom for what, not yet priced."""
        fields: dict[str, object] = {
            "attempt_id": attempt_id,
            "request_id": request.request_id,
            "ts": datetime.now(UTC),
            "provider": provider.name,
            "deployment": provider.deployment_for(request.model),
            "model": request.model,
            "response_model": None,
            "input_tokens": 0,
            "cached_input_tokens": 0,
            "output_tokens": 0,
            "cost_nano": 0,
            "priced": False,
            "latency_ms": 0.0,
            "status": "ok",
            "error_kind": None,
            "route_reason": reason,
            "campaign_id": request.campaign_id,
            "account": request.account,
            "tenant": request.tenant,
            "experiment": request.experiment,
            "arm": request.arm,
        }
        fields.update(outcome)
        return CostEvent.model_construct(**fields)  # type: ignore[arg-type]

    def _record(
        self,
        request: GenerationRequest,
        provider: Provider,
        attempt_id: str,
        reason: str,
        latency_ms: float,
        usage: Usage,
        response_model: str | None,
        failure: ProviderFailure | None,
    ) -> Attempt:
        # Priced as what served the call: a snapshot can cost more than the mapped model.
        price = self.prices.served_price(
            provider.name, provider.kind, request.model, response_model
        )
        cost = self.prices.cost_nano(price, usage) if price is not None else 0
        # A refused prompt says nothing about the provider's health.
        if self.health is not None and (failure is None or failure.kind not in _PROMPT_FAULTS):
            self.health.observe(provider.name, latency_ms, failed=failure is not None)
        attempt = Attempt(
            attempt_id=attempt_id,
            provider=provider.name,
            route_reason=reason,
            latency_ms=round(latency_ms, 3),
            status="error" if failure else "ok",
            error_kind=failure.kind if failure else None,
            cost_nano=cost,
            priced=price is not None,
            response_model=response_model,
        )
        if self.writer is not None:
            self.writer.add(
                self._event(
                    request,
                    provider,
                    attempt_id,
                    reason,
                    response_model=response_model,
                    input_tokens=usage.input_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_nano=cost,
                    priced=attempt.priced,
                    latency_ms=attempt.latency_ms,
                    status=attempt.status,
                    error_kind=attempt.error_kind,
                )
            )
        if self.metrics is not None:
            self._observe(provider.name, request.model, attempt, usage)
        if self.cloudwatch is not None:
            self.cloudwatch.observe(
                provider.name,
                request.model,
                latency_ms=attempt.latency_ms,
                cost_nano=cost,
                failed=failure is not None,
            )
            if self._cloudwatch_task is None:
                self._cloudwatch_task = asyncio.get_running_loop().create_task(
                    self._publish_periodically(self.cloudwatch)
                )
        return attempt

    @staticmethod
    async def _publish_periodically(publisher: CallMetricsPublisher) -> None:
        """Flush CloudWatch figures every interval, in a thread: never on a request's path."""
        while True:
            await asyncio.sleep(publisher.interval_s)
            await asyncio.to_thread(publisher.flush)

    def _observe(self, provider: str, model: str, attempt: Attempt, usage: Usage) -> None:
        assert self.metrics is not None
        children = self._children.get((provider, model))
        if children is None:
            m = self.metrics
            children = self._children[(provider, model)] = (
                m.requests.labels(provider, model),
                m.latency.labels(provider, model),
                m.tokens.labels(provider, model, "input"),
                m.tokens.labels(provider, model, "cached_input"),
                m.tokens.labels(provider, model, "output"),
                m.cost.labels(provider, model),
            )
        requests, latency, tokens_in, tokens_cached, tokens_out, cost = children
        requests.inc()
        latency.observe(attempt.latency_ms / 1000)
        tokens_in.inc(usage.input_tokens)
        tokens_cached.inc(usage.cached_input_tokens)
        tokens_out.inc(usage.output_tokens)
        if attempt.cost_nano:
            cost.inc(attempt.cost_nano / 1e9)
        if attempt.error_kind:
            self.metrics.failures.labels(provider, model, attempt.error_kind).inc()

    def _result(
        self,
        request: GenerationRequest,
        provider: Provider,
        completion: Completion,
        attempt: Attempt,
        attempts: list[Attempt],
    ) -> GenerationResult:
        return GenerationResult(
            text=completion.text,
            provider=provider.name,
            model=request.model,
            deployment=completion.deployment or provider.deployment_for(request.model),
            usage=completion.usage,
            cost_nano=attempt.cost_nano,
            priced=attempt.priced,
            route_reason=attempt.route_reason,
            attempts=attempts,
        )

    async def aclose(self) -> None:
        """Write every pending cost event and metric, then close provider clients."""
        try:
            if self._cloudwatch_task is not None:
                self._cloudwatch_task.cancel()
            if self.cloudwatch is not None:
                await asyncio.to_thread(self.cloudwatch.flush)
            if self.writer is not None:
                await self.writer.aclose()
        finally:
            for provider in self.providers.values():
                await provider.aclose()
            if self._state_store is not None:
                self._state_store.close()
