"""What every provider attempt leaves behind: its cost event, metrics and health figures.

The orchestrator decides which provider to call; the ``AttemptRecorder`` turns each call's
outcome into a priced ``Attempt``, hands its cost event to the ledger writer, counts it
in Prometheus and CloudWatch, and feeds the recent-health window strategy auto reads.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from huntaze_cli.llm.types import Attempt, GenerationRequest, Provider, ProviderFailure, Usage
from huntaze_cli.models import CostEvent

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

    from huntaze_cli.llm.ledger_writer import LedgerWriter
    from huntaze_cli.llm.pricing import PriceBook
    from huntaze_cli.llm.routing import HealthWindow
    from huntaze_cli.observability.cloudwatch import CallMetricsPublisher
    from huntaze_cli.observability.metrics import Metrics

# A refused prompt says nothing about the provider's health.
PROMPT_FAULTS = frozenset({"content_filter", "bad_request"})

# Per (provider, model) metric children: requests, latency, tokens in/cached/out, cost.
_Children = tuple["Counter", "Histogram", "Counter", "Counter", "Counter", "Counter"]


class AttemptRecorder:
    """Prices and records attempts; one per orchestrator."""

    def __init__(
        self,
        prices: PriceBook,
        *,
        writer: LedgerWriter | None,
        metrics: Metrics | None,
        health: HealthWindow | None,
        cloudwatch: CallMetricsPublisher | None,
    ) -> None:
        self.prices = prices
        self.writer = writer
        self.metrics = metrics
        self.health = health
        self.cloudwatch = cloudwatch
        self._cloudwatch_task: asyncio.Task[None] | None = None
        self._children: dict[tuple[str, str], _Children] = {}

    def begin(
        self, request: GenerationRequest, provider: Provider, attempt_id: str, reason: str
    ) -> None:
        """An attempt is about to call its provider: journal it before money is spent."""
        if self.writer is not None:
            self.writer.begin(self.event(request, provider, attempt_id, reason))

    def forget(self, attempt_id: str) -> None:
        """The attempt never called its provider (it could not be used at all)."""
        if self.writer is not None:
            self.writer.forget(attempt_id)

    @staticmethod
    def event(
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
            "budget_action": request.budget_action,
        }
        fields.update(outcome)
        return CostEvent.model_construct(**fields)  # type: ignore[arg-type]

    def record(
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
        """The priced attempt; its event goes to the ledger writer and its figures out."""
        # Priced as what served the call: a snapshot can cost more than the mapped model.
        price = self.prices.served_price(
            provider.name, provider.kind, request.model, response_model
        )
        cost = self.prices.cost_nano(price, usage) if price is not None else 0
        if self.health is not None and (failure is None or failure.kind not in PROMPT_FAULTS):
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
                self.event(
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

    async def aclose(self) -> None:
        """Publish the last CloudWatch figures and write every pending cost event."""
        if self._cloudwatch_task is not None:
            self._cloudwatch_task.cancel()
        if self.cloudwatch is not None:
            await asyncio.to_thread(self.cloudwatch.flush)
        if self.writer is not None:
            await self.writer.aclose()
