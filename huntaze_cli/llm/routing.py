"""Which provider to try first, and in what order to fall back: strategies and flags.

``Router.plan`` returns the providers in the order the orchestrator should try them and
the reason for the first choice. It never calls a provider and never waits; circuit
breakers are consulted by the orchestrator at attempt time.

Reasons land in the ledger (``route_reason``): ``priority``, ``cost``, ``latency``,
``weighted``, ``auto:cheapest`` (the cheapest provider meets ``[routing.auto]``),
``auto:slo:<provider>`` (a cheaper one missed the service levels, so ``<provider>`` went
first), ``pinned`` (the campaign named a provider), ``flag:legacy`` (feature flags keep
this account on the pre-hybrid path); the orchestrator adds ``circuit_open``,
``fallback:<kind>`` and ``retry:<kind>``.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from huntaze_cli.config import AutoRoutingConfig, Config
from huntaze_cli.errors import ConfigError, InputError
from huntaze_cli.llm.types import GenerationRequest


def serves(provider: Any, model: str) -> bool:
    """Whether ``provider`` may serve ``model``: an Azure provider with a ``deployments``
    map serves the models in it (without one, any model, from the deployment of its
    name); OpenAI and the simulator serve any model."""
    cfg = getattr(provider, "cfg", None)
    deployments = getattr(cfg, "deployments", None)
    return provider.kind != "azure" or not deployments or model in deployments


def models_served(providers: Mapping[str, Any], model: str) -> frozenset[str] | None:
    """The providers that may serve ``model``: None when every one may (the /v1
    gateway's ``GenerationRequest.only``), empty when none does."""
    names = [name for name, provider in providers.items() if serves(provider, model)]
    return None if len(names) == len(providers) else frozenset(names)


def stable_percent(key: str) -> float:
    """A stable point in [0, 100) for ``key``: the same on every host and every run."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


@dataclass(frozen=True, slots=True)
class Plan:
    order: tuple[str, ...]
    reason: str
    fallback: bool  # may the orchestrator move to the next provider on failure?


class LatencyTracker:
    """Exponentially weighted moving average of each provider's successful latency."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.average_ms: dict[str, float] = {}

    def observe(self, provider: str, latency_ms: float) -> None:
        old = self.average_ms.get(provider)
        self.average_ms[provider] = (
            latency_ms if old is None else old + self.alpha * (latency_ms - old)
        )


# (error %, p95 latency ms or None) of a provider's recent attempts; None: too few seen.
Health = tuple[float, float | None]
MIN_HEALTH_SAMPLES = 20


def auto_order(
    cost_order: Sequence[str], health: Callable[[str], Health | None], slo: AutoRoutingConfig
) -> tuple[tuple[str, ...], str]:
    """Strategy auto: the cheapest provider whose recent figures meet the service levels.

    A provider with too few recent attempts counts as meeting them (it needs traffic to
    be measured). When none meets them, the one closest to (lowest error rate, then
    latency) goes first. Returns the order and the route reason.
    """
    for name in cost_order:
        figures = health(name)
        if figures is None or (
            figures[0] <= slo.max_error_pct and (figures[1] or 0.0) <= slo.max_p95_ms
        ):
            chosen = name
            break
    else:
        chosen = min(cost_order, key=lambda n: _closeness(health(n)))
    if chosen == cost_order[0]:
        return tuple(cost_order), "auto:cheapest"
    return (chosen, *(n for n in cost_order if n != chosen)), f"auto:slo:{chosen}"


def _closeness(figures: Health | None) -> tuple[float, float]:
    return (0.0, 0.0) if figures is None else (figures[0], figures[1] or 0.0)


class HealthWindow:
    """Each provider's last ``size`` attempts: error share and p95 latency, for auto.

    Observing is O(1); the figures are recomputed at most every ``refresh`` attempts of
    a provider, so planning a call costs a dict lookup. Figures older than ``max_age_s``
    are forgotten: a provider auto stopped using gets traffic again and is measured anew.
    """

    def __init__(
        self,
        size: int = 200,
        refresh: int = 16,
        *,
        max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.refresh = refresh
        self.max_age_s = max_age_s
        self._clock = clock
        self._seen_at: dict[str, float] = {}
        self._latency: dict[str, deque[float]] = {}
        self._errors: dict[str, deque[bool]] = {}
        self._error_count: dict[str, int] = {}
        self._stale: dict[str, int] = {}
        self._figures: dict[str, Health | None] = {}

    def observe(self, provider: str, latency_ms: float, *, failed: bool) -> None:
        errors = self._errors.get(provider)
        if errors is None:
            errors = self._errors[provider] = deque(maxlen=self.size)
            self._latency[provider] = deque(maxlen=self.size)
            self._error_count[provider] = 0
            self._stale[provider] = 0
        if len(errors) == self.size:
            self._error_count[provider] -= errors[0]
        errors.append(failed)
        self._error_count[provider] += failed
        if not failed:
            self._latency[provider].append(latency_ms)
        self._seen_at[provider] = self._clock()
        self._stale[provider] += 1
        if self._stale[provider] >= self.refresh or provider not in self._figures:
            self._stale[provider] = 0
            self._figures[provider] = self._compute(provider)

    def _compute(self, provider: str) -> Health | None:
        errors = self._errors[provider]
        if len(errors) < MIN_HEALTH_SAMPLES:
            return None
        latencies = sorted(self._latency[provider])
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
        return 100.0 * self._error_count[provider] / len(errors), p95

    def health(self, provider: str) -> Health | None:
        figures = self._figures.get(provider)
        if figures is not None and self._clock() - self._seen_at[provider] > self.max_age_s:
            self.forget(provider)
            return None
        return figures

    def forget(self, provider: str) -> None:
        for table in (self._latency, self._errors, self._error_count, self._stale, self._figures):
            table.pop(provider, None)


class Router:
    """Orders providers per request by the configured strategy and feature flags."""

    def __init__(
        self,
        config: Config,
        provider_names: Sequence[str],
        *,
        latency: LatencyTracker | None = None,
        price_of: Callable[[str, str], Decimal | None] | None = None,
        health: HealthWindow | None = None,
    ) -> None:
        self.config = config
        self.routing = config.routing
        self.flags = config.flags
        known = list(provider_names)
        if not known:
            raise ConfigError("no provider configured", hint="add [providers.<name>]")
        for name in self.routing.order:
            if name not in known:
                raise ConfigError(
                    f"routing.order: unknown provider {name!r}; configured: {', '.join(known)}"
                )
        self.base = tuple(
            [n for n in self.routing.order if n in known]
            + [n for n in known if n not in self.routing.order]
        )
        self.legacy = self.flags.legacy_provider or self.base[0]
        if self.legacy not in known:
            raise ConfigError(
                f"flags.legacy_provider: unknown provider {self.legacy!r}; "
                f"configured: {', '.join(known)}"
            )
        weights = {n: w for n, w in self.routing.weights.items() if w > 0}
        for name in weights:
            if name not in known:
                raise ConfigError(f"routing.weights: unknown provider {name!r}")
        self._weights = [(n, weights[n]) for n in self.base if n in weights]
        self._weight_total = sum(w for _, w in self._weights)
        if self.routing.strategy == "weighted" and not self._weights:
            raise ConfigError("routing.weights: strategy weighted needs a positive weight")
        self.latency = latency or LatencyTracker()
        # price_of(provider, model): USD per million tokens (input + output), None unknown.
        self._price_of = price_of
        self._cost_orders: dict[str, tuple[str, ...]] = {}
        self.health = health or HealthWindow(config.routing.auto.window)

    def on_hybrid_path(self, request: GenerationRequest) -> bool:
        """Feature flags: is this request's account on the hybrid (failover) path?"""
        if not self.flags.hybrid_routing:
            return False
        if self.flags.rollout_percent >= 100:
            return True
        key = request.account or request.request_id
        return stable_percent(key) < self.flags.rollout_percent

    def plan(self, request: GenerationRequest) -> Plan:
        if request.provider != "auto":
            if request.provider not in self.base:
                raise InputError(
                    f"provider: unknown provider {request.provider!r}; "
                    f"configured: {', '.join(self.base)}",
                    field="provider",
                    value=request.provider,
                )
            return Plan((request.provider,), "pinned", False)
        if not self.on_hybrid_path(request):
            return Plan((self.legacy,), "flag:legacy", False)
        strategy = request.strategy or self.routing.strategy
        if strategy == "cost":
            return Plan(self._by_cost(request.model), "cost", True)
        if strategy == "latency":
            return Plan(self._by_latency(), "latency", True)
        if strategy == "weighted":
            return Plan(self._by_weight(request.request_id), "weighted", True)
        if strategy == "auto":
            order, reason = auto_order(
                self._by_cost(request.model), self.health.health, self.routing.auto
            )
            return Plan(order, reason, True)
        return Plan(self.base, "priority", True)

    def _by_cost(self, model: str) -> tuple[str, ...]:
        cached = self._cost_orders.get(model)
        if cached is not None:
            return cached
        keyed = []
        for index, name in enumerate(self.base):
            price = self._price_of(name, model) if self._price_of else None
            # Unpriced providers go last: a known price beats an unknown one.
            keyed.append((price is None, price or Decimal(0), index, name))
        order = tuple(item[3] for item in sorted(keyed))
        self._cost_orders[model] = order
        return order

    def _by_latency(self) -> tuple[str, ...]:
        averages = self.latency.average_ms
        # Providers never measured go first, so each gets a sample.
        return tuple(sorted(self.base, key=lambda n: (n in averages, averages.get(n, 0.0))))

    def _by_weight(self, request_id: str) -> tuple[str, ...]:
        point = stable_percent(request_id) / 100 * self._weight_total
        chosen = self._weights[-1][0]
        for name, weight in self._weights:
            if point < weight:
                chosen = name
                break
            point -= weight
        return (chosen, *(n for n in self.base if n != chosen))
