"""What the window's traffic would have cost under each routing strategy.

Each usage rollup's recorded tokens are re-priced on the provider a strategy would have
sent them to first: ``priority`` the first of ``[routing] order``, ``cost`` the cheapest
priced provider for the model, ``latency`` the provider with the lowest observed median
latency, ``auto`` the cheapest whose observed error rate and p95 latency meet
``[routing.auto]`` (``llm.routing.auto_order``, the rule the router itself applies).
Failover is not replayed: every strategy keeps the window's attempts and failures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from huntaze_cli.config import AutoRoutingConfig
from huntaze_cli.costs.reports import percentile
from huntaze_cli.llm.pricing import Price
from huntaze_cli.llm.routing import Health, auto_order
from huntaze_cli.storage.ledger import UsageRollup

CostFn = Callable[[str, str, UsageRollup], int | None]


def window_health(rows: Sequence[UsageRollup]) -> dict[str, Health]:
    """Per provider, (error %, p95 latency ms) over the rows: the figures auto would see."""
    totals: dict[str, UsageRollup] = {}
    for row in rows:
        total = totals.get(row.provider)
        if total is None:
            total = totals[row.provider] = UsageRollup(row.day, row.provider, "", None, None, None)
        total.add(row)
    return {
        name: (100.0 * t.errors / t.attempts if t.attempts else 0.0, percentile(t.latency, 0.95))
        for name, t in totals.items()
    }


def replay_strategies(
    rows: Sequence[UsageRollup],
    *,
    order: Sequence[str],
    cost: CostFn,
    price: Callable[[str, str], Price | None],
    slo: AutoRoutingConfig,
) -> dict[str, int]:
    """Nano-dollars per strategy; a strategy that cannot price some traffic is left out."""
    if not rows or not order:
        return {}
    health = window_health(rows)
    medians = {name: percentile(t_latency, 0.5) for name, t_latency in _latencies(rows).items()}
    by_latency = sorted(order, key=lambda n: (medians.get(n) is None, medians.get(n) or 0.0))

    def cheapest(model: str) -> list[str]:
        priced = [(p.input + p.output, i, n) for i, n in enumerate(order) if (p := price(n, model))]
        return [n for _, _, n in sorted(priced)]

    choosers: dict[str, Callable[[str], str | None]] = {
        "priority": lambda model: order[0],
        "cost": lambda model: next(iter(cheapest(model)), None),
        "latency": lambda model: by_latency[0],
        "auto": lambda model: (
            auto_order(c, health.get, slo)[0][0] if (c := cheapest(model)) else None
        ),
    }
    totals: dict[str, int] = {}
    for name, choose in choosers.items():
        total = 0
        for row in rows:
            target = choose(row.model)
            replayed = cost(target, row.model, row) if target else None
            if replayed is None:
                break
            total += replayed
        else:
            totals[name] = total
    return totals


def _latencies(rows: Sequence[UsageRollup]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in rows:
        histogram = out.setdefault(row.provider, [0] * len(row.latency))
        for index, count in enumerate(row.latency):
            histogram[index] += count
    return out
