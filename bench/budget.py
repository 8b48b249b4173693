"""Budget benchmark: what reserving and settling every attempt costs, against DESIGN.md.

    python bench/budget.py                      # 2,000 x concurrency 32, 5 rounds
    python bench/budget.py --n 500 --rounds 3   # quicker

1. Store micro-benchmark: ``--calls`` reservations of one attempt against one budget in a
   SQLite reservation store (one ``BEGIN IMMEDIATE`` each), settled in batches of 128 as
   the gate does; CPU per call (``time.process_time``) and wall per call.
2. Head-to-head (bench/orchestrator.py's harness, the fake upstream in its own process at
   ``--latency-ms``): per round, N generations at concurrency C through the bare
   ``openai.AsyncOpenAI``, through the orchestrator with no budget, and through the
   orchestrator with one budget covering every call (a SQLite reservation store in the
   temp dir; a limit no run reaches). Printed: wall and CPU per generation of each; the
   medians of the per-round budget-minus-plain CPU (target <= 0.3 ms per call) and of the
   budgeted orchestrator's wall over the bare SDK's (target <= 1.10); beside them, how
   many store transactions the budgeted runs made per generation (the gate leases
   several calls' worst cases per reservation, budgets/gate.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from orchestrator import (  # noqa: E402
    OPENAI_KEY,
    OPENAI_KEY_ENV,
    Bench,
    Run,
    TrackedLedger,
    check_line,
    request,
)

from huntaze_cli.budgets.gate import BudgetGate  # noqa: E402
from huntaze_cli.config import Budget  # noqa: E402
from huntaze_cli.llm.orchestrator import Orchestrator  # noqa: E402
from huntaze_cli.observability.metrics import Metrics  # noqa: E402
from huntaze_cli.storage.budgets import Claim, Settlement  # noqa: E402
from huntaze_cli.storage.sqlite.budgets import SQLiteReservationStore  # noqa: E402
from huntaze_testing.fake_llm import FakeLLMProcess  # noqa: E402

TARGETS = {"cpu_ms": 0.3, "wall_vs_bare": 1.10}
BUDGET = Budget(name="bench", limit_usd=1_000_000)  # never reached: every call is held


def store_micro(data: Path, calls: int) -> float:
    """CPU ms per reservation + settlement straight on the store (no event loop)."""
    store = SQLiteReservationStore(data / "micro-budgets.db")
    claim = (Claim("bench", "2026-12", 10**18, 475_000),)
    queued: list[Settlement] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for n in range(calls):
        store.reserve(f"r{n}", claim, ttl_s=300)
        queued.append(Settlement(f"r{n}", claim, 290_000))
        if len(queued) == 128:
            store.settle(queued)
            queued = []
    store.settle(queued)
    cpu_ms = (time.process_time() - cpu0) * 1000 / calls
    wall_ms = (time.perf_counter() - wall0) * 1000 / calls
    usage = store.usage("bench", "2026-12")
    store.close()
    assert usage.reserved_nano == 0 and usage.spent_nano == 290_000 * calls, usage
    print(
        f"store alone, {calls:,} calls: reserve + settle (batches of 128) "
        f"{cpu_ms:.3f} ms CPU, {wall_ms:.3f} ms wall per call"
    )
    return cpu_ms


class CountingStore(SQLiteReservationStore):
    """The SQLite reservation store, counting its transactions."""

    transactions = 0

    def reserve(self, reservation_id: str, claims: Any, *, ttl_s: float) -> Any:
        CountingStore.transactions += 1
        return super().reserve(reservation_id, claims, ttl_s=ttl_s)

    def settle(self, settlements: Any) -> None:
        CountingStore.transactions += 1
        super().settle(settlements)


class BudgetBench(Bench):
    """bench/orchestrator.py's harness, plus runs with a budget gate on every attempt."""

    budgeted_calls = 0

    async def budgeted(self, n: int, ledger: TrackedLedger) -> tuple[Run, list[Any]]:
        store = CountingStore(self.data / "budgets.db")
        config = self.config(ledger)
        orchestrator = Orchestrator.from_config(
            config, ledger=ledger.ledger, metrics=Metrics(), warn=self.warnings.append
        )
        orchestrator.budget = BudgetGate(
            [BUDGET], store, tz=config.thresholds.tz, ttl_s=config.budgets.reservation_ttl_s
        )
        self.seq += 1
        self.budgeted_calls += n
        requests = [request(i, f"b{self.seq}") for i in range(n)]
        with self.meter(n) as run:
            try:
                results = await asyncio.gather(
                    *(orchestrator.generate(r) for r in requests), return_exceptions=True
                )
            finally:
                await orchestrator.aclose()
        store.close()
        return run, results


async def head_to_head(bench: BudgetBench, rounds: int) -> None:
    ledger = bench.ledger("ledger")
    warm = min(bench.n, 4 * bench.concurrency)
    await bench.bare(warm)
    await bench.orch(warm, ledger)
    await bench.budgeted(warm, ledger)
    print(
        f"head-to-head: {bench.n:,} generations at concurrency {bench.concurrency}, upstream "
        f"latency {bench.latency_s * 1000:g} ms, ideal {bench.ideal_s:.3f} s"
    )
    print(f"  {'round':<6}{'':<26}{'wall s':>8}{'x bare':>8}{'CPU ms/gen':>12}")
    rows: list[dict[str, Run]] = []
    for r in range(rounds):
        order = ["bare", "plain", "budget"]
        order = order[r % 3 :] + order[: r % 3]
        got: dict[str, Run] = {}
        for which in order:
            if which == "bare":
                got[which] = await bench.bare(bench.n)
                continue
            if which == "plain":
                run, results = await bench.orch(bench.n, ledger)
            else:
                run, results = await bench.budgeted(bench.n, ledger)
            failed = [x for x in results if isinstance(x, BaseException)]
            if failed:
                raise SystemExit(f"{len(failed)} generations failed ({which}): {failed[0]!r}")
            got[which] = run
        rows.append(got)
        labels = {"bare": "bare SDK", "plain": "orchestrator", "budget": "orchestrator + budget"}
        for which in order:
            run = got[which]
            ratio = run.wall_s / got["bare"].wall_s
            print(
                f"  {r + 1:<6}{labels[which]:<26}{run.wall_s:>8.3f}{ratio:>8.3f}{run.cpu_ms:>12.3f}"
            )
    med = statistics.median
    extra = med(g["budget"].cpu_ms - g["plain"].cpu_ms for g in rows)
    wall = med(g["budget"].wall_s / g["bare"].wall_s for g in rows)
    wall_plain = med(g["plain"].wall_s / g["bare"].wall_s for g in rows)
    print()
    print(
        "  per round, budget - plain CPU ms/gen: "
        + " ".join(f"{g['budget'].cpu_ms - g['plain'].cpu_ms:+.3f}" for g in rows)
    )
    print(f"  median orchestrator (no budget) / bare wall: x{wall_plain:.3f}")
    print(
        "  budget store transactions per generation: "
        f"{CountingStore.transactions / bench.budgeted_calls:.3f}"
    )
    load = os.getloadavg()
    print(f"  load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    check_line(
        "budget reservation + settlement CPU per generation",
        f"{extra:.3f} ms  target <= {TARGETS['cpu_ms']:.1f} ms",
        extra <= TARGETS["cpu_ms"],
    )
    check_line(
        "generation wall with a budget, / bare SDK",
        f"x{wall:.3f}  target <= x{TARGETS['wall_vs_bare']:.2f}",
        wall <= TARGETS["wall_vs_bare"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000, help="generations per run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="fake upstream latency")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000, help="store micro-benchmark calls")
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    os.environ[OPENAI_KEY_ENV] = OPENAI_KEY
    with tempfile.TemporaryDirectory(prefix="huntaze-bench-") as tmp:
        os.environ["XDG_DATA_HOME"] = tmp
        data = Path(tmp)
        store_micro(data, args.calls)
        print()
        with FakeLLMProcess(latency_ms=args.latency_ms, openai_keys=[OPENAI_KEY]) as srv:
            bench = BudgetBench(srv, data, args.n, args.concurrency, args.latency_ms / 1000)
            asyncio.run(head_to_head(bench, args.rounds))
        if bench.warnings:
            print("\nwarnings:", *sorted(set(bench.warnings)), sep="\n  ")


if __name__ == "__main__":
    main()
