"""Gateway benchmark: the openai SDK through `huntaze serve` /v1 vs straight to the upstream.

    python bench/gateway.py                        # N=2,000, C=32, L=50 and 0 ms, 3 rounds
    python bench/gateway.py --n 500 --rounds 1     # quicker
    python bench/gateway.py --skip-faults --skip-stream

Three processes: the fake upstream (huntaze_testing.fake_llm, two routes: Azure and
OpenAI), `huntaze serve --no-worker` (two providers on it: azure first, openai second,
its ledger in a temp dir) and this one, the client: one ``openai.AsyncOpenAI`` per target
(``max_retries=0``, reused), N calls at concurrency C (``asyncio.Semaphore`` + ``gather``).

1. Start-up: time from starting `serve` to its first answered ``GET /v1/models``, and its
   RSS once idle.
2. Head-to-head per latency L: after one unmeasured warm-up of each, the runs alternate
   (direct, serve / serve, direct / ...). Printed per run: wall time, its ratio to the
   direct run of the same round, and serve's CPU per call (user + system from /proc,
   its whole process: uvicorn, the orchestrator, its aiohttp call upstream and the
   ledger writer thread) beside the SDK's own CPU per call in this process (the direct
   runs), for scale: the client pays that on either path.
   Checked: median ratio at 50 ms <= 1.25, CPU <= 1.5 ms per call.
3. Streaming (L = 50 ms, ``--stream-concurrency``, default 32): time to the first chunk
   of each stream, through serve and direct, alternated; p50 overhead target <= 5 ms.
4. Faults: the Azure route draws 2 % each of 429, 500, 503 and content_filter; N calls
   through serve must all succeed (failover to the OpenAI route), and serve's ledger must
   hold one event per upstream attempt.

Reference (the same fake upstream, N=2,000, C=32, 50 ms): the LiteLLM proxy takes 3.74x
the direct wall time, 6.6 ms CPU per call, idles at 358 MB and is ready after 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from huntaze_testing.fake_llm import FakeLLMProcess  # noqa: E402

TARGETS = {"wall_ratio": 1.25, "cpu_ms": 1.5, "failed": 0, "ttfb_ms": 5.0, "idle_rss_mb": 120}
LITELLM = {"wall_ratio": 3.74, "cpu_ms": 6.6, "idle_rss_mb": 358, "ready_s": 5.0}
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Write a short thank-you note to Ana, who loves jazz."}]
KEY = "bench-upstream-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    """`huntaze serve --no-worker` on a free port, its config pointing at the fake."""

    def __init__(self, upstream: FakeLLMProcess, workdir: Path) -> None:
        config = workdir / "config.toml"
        config.write_text(
            '[routing]\norder = ["azure", "openai"]\n\n'
            f'[providers.azure]\nkind = "azure"\nendpoint = "{upstream.azure_endpoint}"\n'
            f'api_key_env = "BENCH_KEY"\ndeployments = {{ "{MODEL}" = "mini" }}\n\n'
            f'[providers.openai]\nkind = "openai"\nbase_url = "{upstream.openai_base_url}"\n'
            'api_key_env = "BENCH_KEY"\n'
        )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HUNTAZE_")},
            "HUNTAZE_CONFIG": str(config),
            "BENCH_KEY": KEY,
            "XDG_DATA_HOME": str(workdir / "data"),
            "XDG_CONFIG_HOME": str(workdir / "config"),
        }
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0

    def start(self) -> None:
        import httpx

        started = time.perf_counter()
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "huntaze_cli", "serve", "--no-worker"),
                    *("--port", str(self.port), "--log-level", "warning"),
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=fh,
            )
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > 60:
                raise SystemExit("serve did not answer within 60 s")
            time.sleep(0.01)
        self.ready_s = time.perf_counter() - started

    def _proc_file(self, name: str) -> str:
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/{name}").read_text()

    def cpu_s(self) -> float:
        fields = self._proc_file("stat").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in self._proc_file("status").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


async def run_calls(client: Any, n: int, concurrency: int) -> tuple[float, int]:
    """``n`` chat completions at ``concurrency``: (wall s, failed calls)."""
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with gate:
            try:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            except Exception:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - started, failed


async def run_streams(client: Any, n: int, concurrency: int) -> list[float]:
    """``n`` streamed completions: the time to each one's first chunk, in seconds."""
    gate = asyncio.Semaphore(concurrency)
    firsts: list[float] = []

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            stream = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True
            )
            first = True
            async for _ in stream:
                if first:
                    firsts.append(time.perf_counter() - started)
                    first = False

    await asyncio.gather(*(one() for _ in range(n)))
    return firsts


def clients(upstream: FakeLLMProcess, serve: Serve, concurrency: int) -> dict[str, Any]:
    import openai

    def make(base_url: str, key: str) -> Any:
        limits = openai.DEFAULT_CONNECTION_LIMITS
        http = openai.DefaultAsyncHttpxClient(
            limits=type(limits)(
                max_connections=max(concurrency, 100), max_keepalive_connections=concurrency
            )
        )
        return openai.AsyncOpenAI(
            base_url=base_url, api_key=key, max_retries=0, timeout=60, http_client=http
        )

    return {"direct": make(upstream.openai_base_url, KEY), "serve": make(serve.url + "/v1", "x")}


async def head_to_head(
    args: argparse.Namespace, upstream: FakeLLMProcess, serve: Serve, latency: float
) -> dict[str, float]:
    upstream.set_latency(latency)
    targets = clients(upstream, serve, args.concurrency)
    try:
        for name in ("direct", "serve"):  # warm-up: connections, price look-ups, imports
            await run_calls(targets[name], min(args.n, 300), args.concurrency)
        ratios, cpus, sdk_cpus = [], [], []
        for round_ in range(args.rounds):
            order = ("direct", "serve") if round_ % 2 == 0 else ("serve", "direct")
            wall: dict[str, float] = {}
            cpu = 0.0
            for name in order:
                cpu_before, own_before = serve.cpu_s(), time.process_time()
                wall[name], failed = await run_calls(targets[name], args.n, args.concurrency)
                if name == "serve":
                    cpu = (serve.cpu_s() - cpu_before) / args.n * 1000
                else:  # the SDK's own CPU per call, in this process (the client's share)
                    sdk_cpus.append((time.process_time() - own_before) / args.n * 1000)
                if failed:
                    print(f"    {name}: {failed} failed calls")
            ratio = wall["serve"] / wall["direct"]
            ratios.append(ratio)
            cpus.append(cpu)
            print(
                f"  L={latency:>3.0f} ms round {round_ + 1}: direct {wall['direct']:.2f} s, "
                f"serve {wall['serve']:.2f} s, ratio {ratio:.3f}, serve CPU {cpu:.2f} ms/call"
            )
    finally:
        for client in targets.values():
            await client.close()
    return {
        "ratio": statistics.median(ratios),
        "cpu_ms": statistics.median(cpus),
        "sdk_cpu_ms": statistics.median(sdk_cpus),
    }


async def streaming(
    args: argparse.Namespace, upstream: FakeLLMProcess, serve: Serve
) -> dict[str, float]:
    upstream.set_latency(50)
    targets = clients(upstream, serve, args.concurrency)
    firsts: dict[str, list[float]] = {"direct": [], "serve": []}
    try:
        for name in ("direct", "serve"):
            await run_streams(targets[name], 100, args.concurrency)
        for round_ in range(args.rounds):
            order = ("direct", "serve") if round_ % 2 == 0 else ("serve", "direct")
            for name in order:
                firsts[name] += await run_streams(
                    targets[name], args.stream_n, args.stream_concurrency
                )
    finally:
        for client in targets.values():
            await client.close()
    p50 = {name: statistics.median(values) * 1000 for name, values in firsts.items()}
    print(
        f"  first chunk p50: direct {p50['direct']:.2f} ms, serve {p50['serve']:.2f} ms "
        f"({len(firsts['serve'])} streams each)"
    )
    return {"ttfb_ms": p50["serve"] - p50["direct"]}


def _outcomes(stats: dict[str, Any], kind: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in stats["counts"]:
        if row["kind"] == kind:
            out[row["outcome"]] = out.get(row["outcome"], 0) + row["count"]
    return out


async def faults(
    args: argparse.Namespace, upstream: FakeLLMProcess, serve: Serve
) -> tuple[int, int]:
    """(failed calls, attempts on the OpenAI route: serve's failovers)."""
    upstream.set_latency(50)
    upstream.set_mix(
        "azure", {"429": 0.02, "500": 0.02, "503": 0.02, "content_filter": 0.02}, seed=7
    )
    target = clients(upstream, serve, args.concurrency)
    try:
        before = upstream.stats()
        wall, failed = await run_calls(target["serve"], args.n, args.concurrency)
        after = upstream.stats()
    finally:
        upstream.clear_faults()
        for client in target.values():
            await client.close()
    was, now = _outcomes(before, "azure"), _outcomes(after, "azure")
    faults_seen = {
        k: now.get(k, 0) - was.get(k, 0) for k in ("429", "500", "503", "content_filter")
    }
    fallbacks = after["by_kind"].get("openai", 0) - before["by_kind"].get("openai", 0)
    print(
        f"  {args.n} calls in {wall:.2f} s: {failed} failed; azure faults {faults_seen}, "
        f"{fallbacks} served by the openai route"
    )
    return failed, fallbacks


def ledger_events(serve: Serve) -> int:
    """The events serve wrote (read after it stopped: everything is flushed)."""
    import sqlite3

    paths = list(Path(serve.env["XDG_DATA_HOME"]).rglob("ledger.db"))
    if not paths:
        return -1
    with sqlite3.connect(paths[0]) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latencies", default="50,0", help="comma-separated, ms")
    parser.add_argument("--stream-n", type=int, default=500)
    parser.add_argument("--stream-concurrency", type=int, default=32)
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--skip-faults", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    # Three busy processes share the machine: its load says how far the figures hold.
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp, FakeLLMProcess(reply_tokens=24) as upstream:
        serve = Serve(upstream, Path(tmp))
        serve.start()
        time.sleep(1.0)
        results["ready_s"] = serve.ready_s
        results["idle_rss_mb"] = serve.rss_mb()
        print(f"serve ready after {serve.ready_s:.2f} s, idle RSS {results['idle_rss_mb']:.0f} MB")
        try:
            for latency in (float(x) for x in args.latencies.split(",")):
                print(f"head-to-head, N={args.n}, C={args.concurrency}, L={latency:.0f} ms")
                results[f"L{latency:.0f}"] = asyncio.run(
                    head_to_head(args, upstream, serve, latency)
                )
            if not args.skip_stream:
                print(
                    f"streaming, {args.stream_n} x {args.rounds} each, "
                    f"C={args.stream_concurrency}, L=50 ms"
                )
                results.update(asyncio.run(streaming(args, upstream, serve)))
            if not args.skip_faults:
                print("faults: 2 % each of 429/500/503/content_filter on the azure route")
                results["failed"], results["fallbacks"] = asyncio.run(faults(args, upstream, serve))
            results["rss_after_mb"] = serve.rss_mb()
            # Every attempt serve made: the whole Azure route, and its failovers.
            results["attempts"] = upstream.stats()["by_kind"].get("azure", 0) + results.get(
                "fallbacks", 0
            )
        finally:
            serve.stop()
        results["ledger_events"] = ledger_events(serve)

    print("\nresult (target; LiteLLM proxy on the same fake upstream)")
    at50 = results.get("L50")
    if at50:
        print(
            f"  wall vs direct at 50 ms   {at50['ratio']:.3f}x  "
            f"(<= {TARGETS['wall_ratio']}x; LiteLLM {LITELLM['wall_ratio']}x)"
        )
        print(
            f"  serve CPU per call        {at50['cpu_ms']:.2f} ms "
            f"(<= {TARGETS['cpu_ms']} ms; LiteLLM {LITELLM['cpu_ms']} ms); the SDK's own "
            f"CPU per call (client side, direct) {at50['sdk_cpu_ms']:.2f} ms"
        )
    at0 = results.get("L0")
    if at0:
        print(f"  wall vs direct at 0 ms    {at0['ratio']:.3f}x, CPU {at0['cpu_ms']:.2f} ms/call")
    if "ttfb_ms" in results:
        print(f"  stream first-chunk p50    +{results['ttfb_ms']:.2f} ms (<= {TARGETS['ttfb_ms']})")
    if "failed" in results:
        print(f"  failed calls under faults {results['failed']} (target 0)")
    print(
        f"  idle RSS                  {results['idle_rss_mb']:.0f} MB "
        f"(<= {TARGETS['idle_rss_mb']} MB; LiteLLM {LITELLM['idle_rss_mb']} MB); "
        f"after the runs {results['rss_after_mb']:.0f} MB"
    )
    print(
        f"  ready after               {results['ready_s']:.2f} s (LiteLLM {LITELLM['ready_s']} s)"
    )
    print(
        f"  ledger events written     {results['ledger_events']} for {results['attempts']} "
        "upstream attempts by serve (one per attempt)"
    )
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
