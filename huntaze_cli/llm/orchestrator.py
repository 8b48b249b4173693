"""The hybrid orchestrator: every LLM call of huntaze goes through ``Orchestrator.generate``.

For one request it asks the router for an order of providers, then runs the attempt
loop: one provider call per attempt (the SDK never retries on its own), failures
classified as DESIGN.md invariant 5 says, retryable ones moved to the next provider at
once or retried on the same one after its Retry-After or a jittered backoff, all within
``max_attempts`` and an overall deadline. Every attempt, success or failure, becomes one
cost event, priced from the reported usage (``accounting.AttemptRecorder``), and is handed
to a batching ledger writer (``ledger_writer.LedgerWriter``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.config import Config
from huntaze_cli.errors import ConfigError, HuntazeError, ProviderError
from huntaze_cli.llm.accounting import AttemptRecorder
from huntaze_cli.llm.budget_gate import UNBOUNDED_OUTPUT_TOKENS
from huntaze_cli.llm.circuit import CircuitBreaker
from huntaze_cli.llm.ledger_writer import LedgerWriter, new_attempt_id
from huntaze_cli.llm.routing import HealthWindow, LatencyTracker, Router, models_served
from huntaze_cli.llm.tokens import estimate_input_tokens
from huntaze_cli.llm.types import (
    Attempt,
    Completion,
    GenerationRequest,
    GenerationResult,
    Provider,
    ProviderFailure,
    Usage,
)
from huntaze_cli.retry import backoff_s

if TYPE_CHECKING:
    from huntaze_cli.llm.budget_gate import BudgetGate
    from huntaze_cli.llm.pricing import PriceBook
    from huntaze_cli.observability.cloudwatch import CallMetricsPublisher
    from huntaze_cli.observability.metrics import Metrics
    from huntaze_cli.storage.journal import CostJournal
    from huntaze_cli.storage.ledger import Ledger
    from huntaze_cli.storage.providers import ProviderStateStore


# How often a process reads the breaker states other processes shared (see circuit.adopt).
SHARED_STATE_EVERY_S = 5.0


class GenerationFailed(ProviderError):
    """No attempt produced a message; ``kind`` is the last failure's class, ``status``
    its HTTP status (if the upstream answered one)."""

    def __init__(
        self, message: str, *, kind: str, attempts: list[Attempt], status: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.attempts = attempts
        self.status = status


class ProvidersDown(GenerationFailed):
    """Every provider this request may use has its circuit open: nothing was tried.

    Raised at once instead of waiting out the cooldown, so a campaign against a dead
    upstream stops in seconds (its messages stay pending, to resume) rather than
    spending each message's whole deadline. The message names each provider's cause.
    """


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
        budget: BudgetGate | None = None,
    ) -> None:
        self.config = config
        self.budget = budget
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
        self.recorder = AttemptRecorder(
            prices, writer=self.writer, metrics=metrics, health=self.health, cloudwatch=cloudwatch
        )
        self._state_store = state_store
        self._shared_read_at = -SHARED_STATE_EVERY_S
        self.cloudwatch = cloudwatch
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(self.routing.concurrency)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        ledger: Ledger | None,
        metrics: Metrics | None = None,
        warn: Callable[[str], None] | None = None,
        budget: BudgetGate | None = None,
    ) -> Orchestrator:
        """Everything built from config: providers, price book, shared breaker state;
        ``budget`` (built by the services from [budgets]) gates every attempt."""
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
            budget=budget,
        )

    def _unit_price(self, provider: str, model: str) -> Decimal | None:
        price = self.prices.price(provider, self.providers[provider].kind, model)
        return None if price is None else price.input + price.output

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Write one message; raises GenerationFailed when no attempt succeeds."""
        self._adopt_shared_state()
        throttle = None
        if self.budget is not None:
            softened, throttle = await self.budget.soft(request)
            if softened.model != request.model and request.body is not None:
                softened = self._rerouted(request, softened)
            request = softened
        if throttle is not None:
            async with throttle:
                return await self._generate(request)
        return await self._generate(request)

    def _rerouted(
        self, asked: GenerationRequest, downgraded: GenerationRequest
    ) -> GenerationRequest:
        """A pass-through request a budget downgraded, sent to the providers that serve
        the cheaper model (``only`` named those of the model asked for); when none
        serves it, the request as asked: a soft limit never makes a call unroutable."""
        only = models_served(self.providers, downgraded.model)
        if only is not None and not only:
            return asked
        return dataclasses.replace(downgraded, only=only)

    async def _generate(self, request: GenerationRequest) -> GenerationResult:
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

    def worst_case_nano(self, request: GenerationRequest, provider: Provider) -> int | None:
        """The most an attempt of ``request`` on ``provider`` can cost: estimated input
        tokens at the input price plus ``max_tokens`` at the output price (None: unpriced)."""
        price = self.prices.price(provider.name, provider.kind, request.model)
        if price is None:
            return None
        output = request.max_tokens or UNBOUNDED_OUTPUT_TOKENS
        usage = Usage(input_tokens=estimate_input_tokens(request), output_tokens=output)
        return self.prices.cost_nano(price, usage)

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
        # A pass-through request names the providers that serve its model.
        excluded = set() if request.only is None else set(plan.order) - request.only
        budget = self.budget
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
            hold = None
            if budget is not None:
                try:
                    hold = await budget.reserve(
                        request, provider=pick, worst_nano=self.worst_case_nano(request, provider)
                    )
                except BaseException:
                    breaker.release()  # nothing was called: a half-open probe is not used
                    raise
            attempt_id = new_attempt_id()
            self.recorder.begin(request, provider, attempt_id, reason)
            started = time.perf_counter()
            try:
                completion = await provider.complete(request, timeout=timeout)
            except ProviderFailure as failure:
                latency_ms = (time.perf_counter() - started) * 1000
                failed = self.recorder.record(
                    request,
                    provider,
                    attempt_id,
                    reason,
                    latency_ms,
                    failure.usage,
                    None,
                    failure,
                )
                attempts.append(failed)
                if hold is not None and budget is not None:
                    budget.settle(hold, failed.cost_nano)
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
                self.recorder.forget(attempt_id)
                if hold is not None and budget is not None:
                    budget.settle(hold, 0)
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
            if completion.stream is not None:
                return self._streamed(
                    request, provider, completion, attempt_id, reason, started, hold
                )
            attempt = self.recorder.record(
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
            if hold is not None and budget is not None:
                budget.settle(hold, attempt.cost_nano)
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
            status=None if last is None else last.status,
        )

    def _streamed(
        self,
        request: GenerationRequest,
        provider: Provider,
        completion: Completion,
        attempt_id: str,
        reason: str,
        started: float,
        hold: object | None,
    ) -> GenerationResult:
        """A stream's first event came: its attempt is recorded, and its budget hold
        settled, when it ends (its usage comes last), fails, or is closed by a client
        that went away."""
        from huntaze_cli.llm.passthrough import RecordingStream

        assert completion.stream is not None
        upstream = completion.stream

        def ended(failure: ProviderFailure | None) -> None:
            usage = upstream.usage or (failure.usage if failure else completion.usage)
            attempt = self.recorder.record(
                request,
                provider,
                attempt_id,
                reason,
                (time.perf_counter() - started) * 1000,
                usage,
                upstream.response_model,
                failure,
            )
            if hold is not None and self.budget is not None:
                self.budget.settle(hold, attempt.cost_nano)

        return GenerationResult(
            text="",
            provider=provider.name,
            model=request.model,
            deployment=completion.deployment,
            usage=completion.usage,
            cost_nano=0,
            priced=False,
            route_reason=reason,
            response_model=upstream.response_model,
            stream=RecordingStream(upstream, ended),
        )

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
            response_model=completion.response_model,
            raw=completion.raw,
        )

    async def aclose(self) -> None:
        """Write every pending cost event and metric, then close provider clients."""
        try:
            if self.budget is not None:
                await self.budget.aclose()
            await self.recorder.aclose()
        finally:
            for provider in self.providers.values():
                await provider.aclose()
            if self._state_store is not None:
                self._state_store.close()
