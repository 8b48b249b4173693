"""Prometheus metrics of the orchestrator (and later the queue and ledger), one registry.

Each ``Metrics`` owns its registry, so tests and several orchestrators in one process do
not collide; `serve` exposes the registry of its orchestrator at ``/metrics``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
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

    def set_circuit(self, provider: str, state: str) -> None:
        self.circuit.labels(provider).set(CIRCUIT_VALUES[state])

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
