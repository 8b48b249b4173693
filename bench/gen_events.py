"""Write synthetic cost events as JSONL, spread over the last N days up to now.

Used by the README's offline demo and by the ledger benchmarks:

    python bench/gen_events.py --events 5000 | huntaze costs import -

Costs are exact: tokens x a fixed price per million, rounded half-even to the
nano-dollar, written with 9 decimals. Deterministic for a given --seed and start time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

# USD per million tokens (input, output).
PRICES = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
}
PROVIDERS = ("azure", "openai")
NANO = Decimal("0.000000001")


def cost(model: str, tokens_in: int, tokens_out: int) -> Decimal:
    price_in, price_out = PRICES[model]
    exact = (tokens_in * price_in + tokens_out * price_out) / Decimal(1_000_000)
    return exact.quantize(NANO, rounding=ROUND_HALF_EVEN)


def generate(
    events: int,
    days: float,
    seed: int,
    accounts: int,
    campaigns: int,
    experiment: str | None = None,
):
    rng = random.Random(seed)
    now = datetime.now(UTC)
    span = timedelta(days=days).total_seconds()
    models = list(PRICES)
    for n in range(events):
        # Evenly spread, oldest first, so a day holds events/days of them.
        ts = now - timedelta(seconds=span * (1 - (n + 1) / events))
        provider = PROVIDERS[n % 2 if rng.random() < 0.8 else (n + 1) % 2]
        model = models[rng.randrange(len(models))]
        campaign = rng.randrange(campaigns)
        arm = None
        if experiment:
            # Half the fans on the campaign's model, half on gpt-4o-mini.
            arm = "control" if rng.random() < 0.5 else "cheaper"
            if arm == "cheaper":
                model = "gpt-4o-mini"
        error = rng.random() < 0.02
        tokens_in = rng.randint(40, 400)
        tokens_out = 0 if error else rng.randint(20, 160)
        yield {
            "attempt_id": f"gen-{seed}-{n}",
            "request_id": f"req-{seed}-{n}",
            "ts": ts.isoformat(),
            "provider": provider,
            "deployment": f"{model}-prod" if provider == "azure" else None,
            "model": model,
            "input_tokens": 0 if error else tokens_in,  # a 5xx reports no usage
            "cached_input_tokens": 0,
            "output_tokens": tokens_out,
            "cost_usd": cost(model, 0 if error else tokens_in, tokens_out),
            "priced": True,
            "latency_ms": round(rng.lognormvariate(6.0, 0.5), 1),
            "status": "error" if error else "ok",
            "error_kind": "server_error" if error else None,
            "route_reason": "priority",
            "campaign_id": f"cmp-{campaign}",
            "account": f"creator_{campaign % accounts}",
            "tenant": f"agency_{campaign % 3}",
            "experiment": experiment,
            "arm": arm,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--days", type=float, default=7.0, help="spread over this many days")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--campaigns", type=int, default=60)
    parser.add_argument("--experiment", help="tag every event with this experiment and an arm")
    args = parser.parse_args()
    write = sys.stdout.write
    for event in generate(
        args.events, args.days, args.seed, args.accounts, args.campaigns, args.experiment
    ):
        write(json.dumps(event, default=str))
        write("\n")


if __name__ == "__main__":
    main()
