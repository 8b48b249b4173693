"""Generation benchmark: the orchestrator against the bare openai SDK, printed against DESIGN.md.

    python bench/orchestrator.py                      # 2,000 x concurrency 32, 5 rounds
    python bench/orchestrator.py --n 500 --rounds 9   # smaller runs, more rounds
    python bench/orchestrator.py --skip-faults        # only the head-to-head
    python bench/orchestrator.py --profile 2000       # also cProfile one orchestrator run

The upstream is huntaze_testing.fake_llm in a separate process (its CPU is not in the measured
process), answering every request after ``--latency-ms`` (50 ms).

1. Head-to-head, in one process and one event loop: N generations at concurrency C through
   the bare ``openai.AsyncOpenAI`` client (one client reused, ``max_retries=0``, an
   ``asyncio.Semaphore(C)`` and ``gather``), and through the production path: an
   ``Orchestrator.from_config`` with the real openai provider (pointed at the fake server,
   key read from an env var), a real SQLite ledger in a temp dir (cost tracking on: one
   event per attempt), Prometheus metrics on and routing concurrency C. Both send the same
   request (body, headers and a 30 s timeout). After one unmeasured warm-up of each, the
   order alternates over the rounds (bare, orch / orch, bare / ...). A measured run is the
   ``gather`` plus closing the client (the orchestrator's ``aclose`` also writes its last
   ledger batch).

   Printed per run: wall time, its ratio to the bare SDK of the same round and to the ideal
   N/C x latency, and CPU per generation from ``time.process_time`` (every thread of this
   process: the ledger writer thread is included). Diagnostics beside it: the ledger
   writer thread's own share (``time.thread_time`` around ``ledger.record``), time in the
   garbage collector (``gc.callbacks``), and the fake server process's CPU per generation
   (from /proc, Linux only). Checked against the targets: the medians over rounds of the
   per-round ratio (wall) and difference (CPU) between the orchestrator and the bare SDK,
   and that the ledger holds exactly one event per attempt. Other load on the machine
   moves single runs by several percent: the per-round figures are printed so the spread
   shows; use more ``--rounds`` when it is wide.

   ``--strategy auto`` runs the orchestrator side with ``[routing] strategy = "auto"``.
   Whatever the strategy, a micro-benchmark first prints the CPU per call that auto's
   routing adds over priority (``Router.plan`` plus ``HealthWindow.observe``, 200k calls):
   DESIGN.md allows it 0.05 ms.

2. Failover: two providers in priority order, azure (the fake server's Azure route) first,
   then openai (its OpenAI route). The Azure route draws 2 % each of 429, 500, 503 and
   content_filter from a seeded mix. N generations at concurrency C: failed generations
   (target 0), fallbacks, attempts per generation, one ledger event per attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import math
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from huntaze_cli.config import Config  # noqa: E402
from huntaze_cli.llm.orchestrator import Orchestrator  # noqa: E402
from huntaze_cli.llm.types import GenerationRequest, GenerationResult, Message  # noqa: E402
from huntaze_cli.observability.metrics import Metrics  # noqa: E402
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger  # noqa: E402
from huntaze_testing.fake_llm import FakeLLMProcess  # noqa: E402

TARGETS = {
    "wall_vs_bare": 1.10,  # orchestrator wall <= 1.10 x the bare SDK's, same run
    "cpu_ms": 0.3,  # orchestrator CPU beyond the SDK's own, ms per generation
    "failed": 0,  # failed generations in the failover run
}
MODEL = "gpt-4o-mini"
MAX_TOKENS = 64
SYSTEM = "You write short, warm one-line thank-you messages from a creator to a fan."
OPENAI_KEY_ENV = "HUNTAZE_BENCH_OPENAI_KEY"
AZURE_KEY_ENV = "HUNTAZE_BENCH_AZURE_KEY"
OPENAI_KEY = "sk-bench-openai-0123456789abcdef"
AZURE_KEY = "az-bench-azure-0123456789abcdef"
FAULTS = {"429": 0.02, "500": 0.02, "503": 0.02, "content_filter": 0.02}


def prompt(i: int) -> str:
    return f"Write a thank-you note to fan_{i} who loves cooking, travel and jazz."


def body(i: int) -> dict[str, Any]:
    """The request body both sides send (the provider adapter builds the same one)."""
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt(i)},
        ],
        "max_tokens": MAX_TOKENS,
    }


def request(i: int, tag: str) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"{tag}-{i}",
        model=MODEL,
        messages=[Message("system", SYSTEM), Message("user", prompt(i))],
        max_tokens=MAX_TOKENS,
        account=f"creator_{i % 20}",
        campaign_id=f"bench-{tag}",
    )


class GCClock:
    """Wall time spent in the cyclic garbage collector, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total_s = 0.0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total_s += time.perf_counter() - self._start


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU of another process (Linux /proc); None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Run:
    n: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    gc_s: float = 0.0
    upstream_cpu_s: float | None = None
    ledger_cpu_s: float = 0.0
    ledger_batches: int = 0

    def ms(self, seconds: float | None) -> float:
        """Per generation, in ms."""
        return math.nan if seconds is None else seconds * 1000 / self.n

    @property
    def cpu_ms(self) -> float:
        return self.ms(self.cpu_s)


class Meter:
    """Measures one run: wall, this process's CPU, GC time and the upstream's CPU."""

    def __init__(self, run: Run, gc_clock: GCClock, upstream_pid: int) -> None:
        self.run = run
        self.gc_clock = gc_clock
        self.pid = upstream_pid

    def __enter__(self) -> Run:
        gc.collect()
        self._gc0 = self.gc_clock.total_s
        self._up0 = process_cpu_s(self.pid)
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self.run

    def __exit__(self, *exc_info: object) -> None:
        run = self.run
        run.wall_s = time.perf_counter() - self._wall0
        run.cpu_s = time.process_time() - self._cpu0
        run.gc_s = self.gc_clock.total_s - self._gc0
        up1 = process_cpu_s(self.pid)
        if self._up0 is not None and up1 is not None:
            run.upstream_cpu_s = up1 - self._up0


@dataclass
class TrackedLedger:
    """A real SQLite ledger, the attempts written to it, and the CPU its writes took.

    ``record`` runs in the orchestrator's writer thread; its CPU is measured there with
    ``time.thread_time`` (it is already part of ``time.process_time`` of the whole run).
    """

    ledger: SQLiteLedger
    attempt_ids: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    batches: int = 0

    def __post_init__(self) -> None:
        record = self.ledger.record

        def timed(events: Any) -> Any:
            start = time.thread_time()
            try:
                return record(events)
            finally:
                self.cpu_s += time.thread_time() - start
                self.batches += 1

        self.ledger.record = timed  # type: ignore[method-assign]

    def check(self) -> tuple[bool, str]:
        """Does the ledger hold exactly one event per attempt, and nothing else?"""
        conn = sqlite3.connect(self.ledger.path)
        try:
            stored = [row[0] for row in conn.execute("SELECT attempt_id FROM events")]
        finally:
            conn.close()
        ids = self.attempt_ids
        ok = len(stored) == len(ids) == len(set(ids)) and set(stored) == set(ids)
        return ok, f"{len(stored):,} events for {len(ids):,} attempts"


@dataclass
class Bench:
    srv: FakeLLMProcess
    data: Path
    n: int
    concurrency: int
    latency_s: float
    gc_clock: GCClock = field(default_factory=GCClock)
    warnings: list[str] = field(default_factory=list)
    seq: int = 0
    strategy: str = "priority"

    @property
    def ideal_s(self) -> float:
        return self.n / self.concurrency * self.latency_s

    def meter(self, n: int) -> Meter:
        return Meter(Run(n), self.gc_clock, self.srv.pid)

    def ledger(self, name: str) -> TrackedLedger:
        return TrackedLedger(SQLiteLedger(self.data / f"{name}.db"))

    def config(self, ledger: TrackedLedger, *, faults: bool = False) -> Config:
        providers: dict[str, Any] = {
            "openai": {
                "kind": "openai",
                "base_url": self.srv.openai_base_url,
                "api_key_env": OPENAI_KEY_ENV,
            }
        }
        if faults:
            providers = {
                "azure": {
                    "kind": "azure",
                    "endpoint": self.srv.azure_endpoint,
                    "api_version": "2024-10-21",
                    "api_key_env": AZURE_KEY_ENV,
                },
                **providers,
            }
        return Config.model_validate(
            {
                "ledger": {"path": str(ledger.ledger.path)},
                "routing": {
                    "strategy": self.strategy,
                    "order": list(providers),
                    "concurrency": self.concurrency,
                },
                "providers": providers,
                "flags": {"cost_tracking": True},
            }
        )

    async def bare(self, n: int) -> Run:
        """N completions through one bare ``AsyncOpenAI`` client at concurrency C."""
        import openai

        client = openai.AsyncOpenAI(
            api_key=os.environ[OPENAI_KEY_ENV],
            base_url=self.srv.openai_base_url,
            max_retries=0,
            timeout=30.0,  # the orchestrator's per-attempt timeout (routing.timeout_s)
        )
        semaphore = asyncio.Semaphore(self.concurrency)
        bodies = [body(i) for i in range(n)]

        async def one(kwargs: dict[str, Any]) -> Any:
            async with semaphore:
                return await client.chat.completions.create(**kwargs)

        with self.meter(n) as run:
            responses = await asyncio.gather(*(one(b) for b in bodies))
            await client.close()
        assert all(r.choices[0].message.content for r in responses)
        return run

    async def orch(
        self, n: int, ledger: TrackedLedger, *, faults: bool = False
    ) -> tuple[Run, list[Any]]:
        """N generations through ``Orchestrator.from_config``; its ``aclose`` is measured."""
        orchestrator = Orchestrator.from_config(
            self.config(ledger, faults=faults),
            ledger=ledger.ledger,
            metrics=Metrics(),
            warn=self.warnings.append,
        )
        self.seq += 1
        requests = [request(i, f"r{self.seq}") for i in range(n)]
        ledger_cpu0, batches0 = ledger.cpu_s, ledger.batches
        with self.meter(n) as run:
            try:
                results = await asyncio.gather(
                    *(orchestrator.generate(r) for r in requests), return_exceptions=True
                )
            finally:
                await orchestrator.aclose()
        run.ledger_cpu_s = ledger.cpu_s - ledger_cpu0
        run.ledger_batches = ledger.batches - batches0
        for result in results:
            ledger.attempt_ids.extend(a.attempt_id for a in getattr(result, "attempts", ()))
        return run, results


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def check_line(name: str, shown: str, ok: bool) -> None:
    print(f"{name:<56} {shown}  {verdict(ok)}")


def row(label: str, run: Run, bare: Run | None, ideal_s: float, ledger: bool) -> str:
    ratio = f"{run.wall_s / bare.wall_s:.3f}" if bare is not None else ""
    thread = f"{run.ms(run.ledger_cpu_s):.3f}" if ledger else ""
    return (
        f"{label:<20}{run.wall_s:>8.3f}{ratio:>8}{run.wall_s / ideal_s:>9.3f}"
        f"{run.cpu_ms:>10.3f}{thread:>9}{run.ms(run.gc_s):>8.3f}{run.ms(run.upstream_cpu_s):>10.3f}"
    )


HEADER = (
    f"{'':<20}{'wall s':>8}{'x bare':>8}{'x ideal':>9}{'CPU ms':>10}{'ledger':>9}{'GC':>8}"
    f"{'upstream':>10}"
)


async def head_to_head(bench: Bench, rounds: int) -> None:
    n, c = bench.n, bench.concurrency
    ledger = bench.ledger("ledger")
    warm = min(n, 4 * c)
    await bench.bare(warm)
    await bench.orch(warm, ledger)
    print(
        f"head-to-head: {n:,} generations at concurrency {c}, upstream latency "
        f"{bench.latency_s * 1000:g} ms, ideal N/C x L = {bench.ideal_s:.3f} s"
    )
    print(
        "  (CPU ms per generation: this whole process; of it, the ledger writer thread; "
        "GC: garbage\n   collector ms per generation; upstream: the fake server process's "
        "CPU ms per generation)"
    )
    print(f"  {'round':<6}{HEADER}")
    pairs: list[tuple[Run, Run]] = []
    for r in range(rounds):
        order = ("bare", "orch") if r % 2 == 0 else ("orch", "bare")
        got: dict[str, Run] = {}
        for which in order:
            if which == "bare":
                got[which] = await bench.bare(n)
                continue
            run, results = await bench.orch(n, ledger)
            failed = [x for x in results if isinstance(x, BaseException)]
            if failed:
                raise SystemExit(f"{len(failed)} orchestrator generations failed: {failed[0]!r}")
            got[which] = run
        bare, orch = got["bare"], got["orch"]
        pairs.append((bare, orch))
        for which in order:
            label = "bare SDK" if which == "bare" else "orchestrator"
            line = row(label, got[which], bare, bench.ideal_s, which == "orch")
            print(f"  {r + 1:<6}{line}")

    med = statistics.median
    b_wall, o_wall = med(b.wall_s for b, _ in pairs), med(o.wall_s for _, o in pairs)
    b_cpu, o_cpu = med(b.cpu_ms for b, _ in pairs), med(o.cpu_ms for _, o in pairs)
    ledger_ms = med(o.ms(o.ledger_cpu_s) for _, o in pairs)
    wall_ratio = med(o.wall_s / b.wall_s for b, o in pairs)
    cpu_extra = med(o.cpu_ms - b.cpu_ms for b, o in pairs)
    print()
    print(f"  medians of {rounds} rounds{'':<24}{'wall s':>8}{'x ideal':>9}{'CPU ms/gen':>12}")
    for label, wall, cpu in (
        ("bare openai.AsyncOpenAI", b_wall, b_cpu),
        ("Orchestrator (SQLite ledger, metrics)", o_wall, o_cpu),
    ):
        print(f"  {label:<40}{wall:>8.3f}{wall / bench.ideal_s:>9.3f}{cpu:>12.3f}")
    print(f"  {'  of it, the ledger writer thread':<40}{'':>17}{ledger_ms:>12.3f}")
    ratios = " ".join(f"{o.wall_s / b.wall_s:.3f}" for b, o in pairs)
    extras = " ".join(f"{o.cpu_ms - b.cpu_ms:+.3f}" for b, o in pairs)
    print(f"  per round, orchestrator / bare wall: {ratios}")
    print(f"  per round, orchestrator - bare CPU ms/gen: {extras}")
    # The bare run holds 2,000 SDK response objects at the end, the orchestrator 2,000
    # smaller results: their garbage collections differ, so show the difference without.
    no_gc = med((o.cpu_s - o.gc_s - b.cpu_s + b.gc_s) * 1000 / o.n for b, o in pairs)
    print(f"  orchestrator - bare CPU ms/gen, GC time left out of both (median): {no_gc:+.3f}")
    load = os.getloadavg()
    print(f"  load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    target = TARGETS["wall_vs_bare"]
    check_line(
        "generation wall, orchestrator / bare SDK",
        f"x{wall_ratio:.3f}  target <= x{target:.2f}  x{wall_ratio / target:.2f}",
        wall_ratio <= target,
    )
    target = TARGETS["cpu_ms"]
    check_line(
        "orchestrator CPU beyond the SDK's own, per generation",
        f"{cpu_extra:.3f} ms  target <= {target:.1f} ms  x{cpu_extra / target:.2f}",
        cpu_extra <= target,
    )
    ok, text = ledger.check()
    check_line("ledger: one event per attempt (every run above)", text, ok)


async def failover(bench: Bench) -> None:
    n, c = bench.n, bench.concurrency
    ledger = bench.ledger("failover")
    bench.srv.set_mix("azure", FAULTS, seed=7)
    try:
        before = bench.srv.stats()
        run, results = await bench.orch(n, ledger, faults=True)
        after = bench.srv.stats()
    finally:
        bench.srv.clear_faults()
    done = [r for r in results if isinstance(r, GenerationResult)]
    failed = [r for r in results if not isinstance(r, GenerationResult)]
    attempts = [a for r in done for a in r.attempts]
    for r in failed:
        attempts.extend(getattr(r, "attempts", ()))
    fell_back = sum(1 for r in done if r.provider != r.attempts[0].provider)
    retried = sum(1 for r in done if any(a.route_reason.startswith("retry:") for a in r.attempts))
    served = Counter(r.provider for r in done)
    kinds = Counter(a.error_kind for a in attempts if a.error_kind)
    served_by_azure: Counter[str] = Counter()
    for stats, sign in ((after, 1), (before, -1)):
        for item in stats["counts"]:
            if item["kind"] == "azure" and item["outcome"] != "ok":
                served_by_azure[item["outcome"]] += sign * item["count"]
    mix = ", ".join(f"{p * 100:g} % {spec}" for spec, p in FAULTS.items())
    print(f"failover: {n:,} generations at concurrency {c}, order azure then openai")
    print(f"  azure route: {mix} (seeded)")
    print(
        f"  wall {run.wall_s:.3f} s (x{run.wall_s / bench.ideal_s:.3f} ideal), "
        f"{run.cpu_ms:.3f} ms CPU per generation"
    )
    print("  faults the azure route sent: " + _counts(served_by_azure))
    print("  failed attempts by kind:     " + _counts(kinds))
    print(
        f"  generations served by: {_counts(served)}; fell back to the other provider: "
        f"{fell_back:,}; retried on the same provider: {retried:,}"
    )
    print(
        f"  attempts: {len(attempts):,} for {n:,} generations = "
        f"{len(attempts) / n:.3f} per generation"
    )
    print()
    check_line(
        "failover: failed generations",
        f"{len(failed)}  target {TARGETS['failed']}",
        len(failed) <= TARGETS["failed"],
    )
    ok, text = ledger.check()
    check_line("failover: ledger holds one event per attempt", text, ok)
    if failed:
        print(f"  first failure: {failed[0]!r}")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in sorted(counter.items())) or "none"


async def profile(bench: Bench, n: int) -> None:
    ledger = bench.ledger("profile")
    await bench.orch(min(n, 4 * bench.concurrency), ledger)
    profiler = cProfile.Profile()
    profiler.enable()
    await bench.orch(n, ledger)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    if os.environ.get("BENCH_PROFILE_OWN"):
        stats.sort_stats("cumulative").print_stats("huntaze_cli", 40)
    print(f"cProfile of one orchestrator run of {n:,} (main thread only), by own time:")
    print(out.getvalue())


def auto_overhead(calls: int = 200_000) -> None:
    """CPU per call of routing with strategy auto minus strategy priority."""
    from huntaze_cli.llm.routing import HealthWindow, Router
    from huntaze_cli.llm.types import GenerationRequest, Message

    request = GenerationRequest("r", "gpt-4o-mini", [Message("user", "hi")])
    per_call = {}
    for strategy in ("priority", "auto"):
        config = Config.model_validate({"routing": {"strategy": strategy}})
        window = HealthWindow(config.routing.auto.window)
        router = Router(config, ["azure", "openai"], price_of=lambda p, m: None, health=window)
        start = time.process_time()
        for n in range(calls):
            plan = router.plan(request)
            if strategy == "auto":
                window.observe(plan.order[0], 50.0 + n % 7, failed=n % 50 == 0)
        per_call[strategy] = (time.process_time() - start) / calls
    extra_ms = (per_call["auto"] - per_call["priority"]) * 1000
    verdict = "meets" if extra_ms <= 0.05 else "MISSES"
    print(f"auto routing CPU on top of priority: {extra_ms:.4f} ms/call (target <= 0.05) {verdict}")


async def amain(args: argparse.Namespace, srv: FakeLLMProcess, data: Path) -> None:
    auto_overhead()
    bench = Bench(srv, data, args.n, args.concurrency, args.latency_ms / 1000)
    bench.strategy = args.strategy
    await head_to_head(bench, args.rounds)
    if not args.skip_faults:
        print()
        await failover(bench)
    if args.profile:
        print()
        await profile(bench, args.profile)
    if bench.warnings:
        print("\nwarnings:", *sorted(set(bench.warnings)), sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000, help="generations per run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="fake upstream latency")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (each: both)")
    parser.add_argument("--skip-faults", action="store_true", help="skip the failover run")
    parser.add_argument(
        "--strategy", default="priority", choices=["priority", "auto"], help="orchestrator routing"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="also cProfile one run of N"
    )
    args = parser.parse_args()

    import openai

    load = os.getloadavg()
    print(
        f"python {platform.python_version()}, openai {openai.__version__}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    os.environ[OPENAI_KEY_ENV] = OPENAI_KEY
    os.environ[AZURE_KEY_ENV] = AZURE_KEY
    with tempfile.TemporaryDirectory(prefix="huntaze-bench-") as tmp:
        # Orchestrator.from_config keeps provider state in the data dir: keep it in tmp.
        os.environ["XDG_DATA_HOME"] = tmp
        with FakeLLMProcess(
            latency_ms=args.latency_ms, openai_keys=[OPENAI_KEY], azure_keys=[AZURE_KEY]
        ) as srv:
            print(f"fake upstream: huntaze_testing.fake_llm in process {srv.pid}, {srv.base_url}")
            print()
            asyncio.run(amain(args, srv, Path(tmp)))


if __name__ == "__main__":
    main()
