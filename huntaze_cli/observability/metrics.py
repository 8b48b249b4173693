"""Prometheus metrics of the orchestrator, the delivery queue and the ledger, one registry.

Each ``Metrics`` owns its registry, so tests and several orchestrators in one process do
not collide; `serve` exposes the registry of its orchestrator at ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RATELIMIT_WAIT_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0)
LEDGER_WRITE_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    """Counters and histograms by provider and model."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry or CollectorRegistry()
        labels = ("provider", "model")
        self.requests = Counter(
            "huntaze_llm_requests", "Provider attempts", labels, registry=self.registry
        )
        self.failures = Counter(
            "huntaze_llm_failures",
            "Failed provider attempts by failure kind",
            (*labels, "kind"),
            registry=self.registry,
        )
        self.tokens = Counter(
            "huntaze_llm_tokens",
            "Tokens by direction (input, cached_input, output)",
            (*labels, "direction"),
            registry=self.registry,
        )
        self.cost = Counter(
            "huntaze_llm_cost_usd", "Cost in US dollars", labels, registry=self.registry
        )
        self.latency = Histogram(
            "huntaze_llm_latency_seconds",
            "Latency of provider attempts",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "huntaze_llm_fallbacks",
            "Attempts moved to another provider, by reason",
            ("from_provider", "to_provider", "reason"),
            registry=self.registry,
        )
        self.generations = Counter(
            "huntaze_generations",
            "Finished generations by outcome (ok, failed)",
            ("outcome",),
            registry=self.registry,
        )
        self.circuit = Gauge(
            "huntaze_circuit_state",
            "Circuit breaker state per provider (0 closed, 1 half-open, 2 open)",
            ("provider",),
            registry=self.registry,
        )

        # Delivery: queue depth (set at scrape time), worker outcomes, rate-limit waits.
        self.queue_depth = Gauge(
            "huntaze_queue_depth",
            "Messages in the delivery queue per account and state (queued, in_flight, dead)",
            ("account", "state"),
            registry=self.registry,
        )
        self.deliveries = Counter(
            "huntaze_deliveries",
            "Delivery attempts by outcome (sent, failed, dead)",
            ("outcome",),
            registry=self.registry,
        )
        self.ratelimit_acquires = Counter(
            "huntaze_ratelimit_acquires",
            "Rate-limit slot requests by outcome (granted, wait)",
            ("outcome",),
            registry=self.registry,
        )
        self.ratelimit_wait = Histogram(
            "huntaze_ratelimit_wait_seconds",
            "Waits the rate limiter asked for before the next slot of an account",
            buckets=RATELIMIT_WAIT_BUCKETS_S,
            registry=self.registry,
        )
        # Ledger writes of this process.
        self.ledger_events = Counter(
            "huntaze_ledger_events",
            "Cost events handed to the ledger by result (stored, duplicate, expired)",
            ("result",),
            registry=self.registry,
        )
        self.ledger_write_latency = Histogram(
            "huntaze_ledger_write_seconds",
            "Latency of one batched ledger write",
            buckets=LEDGER_WRITE_BUCKETS_S,
            registry=self.registry,
        )
        self.ledger_write_errors = Counter(
            "huntaze_ledger_write_errors",
            "Ledger writes that failed (their events are kept and written again)",
            registry=self.registry,
        )

    def set_queue_depth(self, depth: Mapping[str, Any]) -> None:
        """Replace the queue-depth gauge with ``depth`` (account -> queued/in_flight/dead)."""
        self.queue_depth.clear()  # accounts that drained disappear instead of staying stale
        for account, counts in depth.items():
            for state in ("queued", "in_flight", "dead"):
                self.queue_depth.labels(account, state).set(getattr(counts, state))

    def set_circuit(self, provider: str, state: str) -> None:
        self.circuit.labels(provider).set(CIRCUIT_VALUES[state])

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
