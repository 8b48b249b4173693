"""Throughput of the fake OpenAI / Azure upstream, through the real SDK.

    python bench/fake_llm.py                        # 2,000 requests at concurrency 32
    python bench/fake_llm.py --requests 10000 --concurrency 64 --latency-ms 50

The server (``huntaze_testing.fake_llm``) runs in a separate process; ``AsyncOpenAI``
sends ``--requests`` chat completions at ``--concurrency`` after one warm-up request.
Printed: requests per second, connections opened (the pool should stay warm: at most
concurrency + 1), and whether every request was answered ``ok``. The orchestrator
benchmark (bench/orchestrator.py) measures our client against this server, so the server
must be well ahead of it: this figure is its ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from huntaze_testing.fake_llm import FakeLLMProcess, count_in_stats  # noqa: E402


async def drive(base_url: str, total: int, concurrency: int) -> float:
    """Send ``total`` requests at ``concurrency``; the seconds they took (warm-up excluded)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"Hello fan {i}"}]
            )

    try:
        await one(-1)
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        return time.perf_counter() - started
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    with FakeLLMProcess(latency_ms=args.latency_ms) as srv:
        pid = srv.pid
        elapsed = asyncio.run(drive(srv.openai_base_url, args.requests, args.concurrency))
        stats = srv.stats()
    ok = count_in_stats(stats, outcome="ok") == args.requests + 1
    warm = stats["connections_total"] <= args.concurrency + 1
    print(
        f"fake LLM: {args.requests / elapsed:,.0f} req/s through AsyncOpenAI "
        f"({args.requests} requests, concurrency {args.concurrency}, "
        f"{args.latency_ms:g} ms latency, server in process {pid})"
    )
    print(f"  connections opened: {stats['connections_total']} ({'warm' if warm else 'COLD'})")
    print(f"  every request answered ok: {'yes' if ok else 'NO'}")
    sys.exit(0 if ok and warm else 1)


if __name__ == "__main__":
    main()
