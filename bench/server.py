"""HTTP daemon benchmark, printed against the targets in DESIGN.md.

    python bench/server.py                       # 1M-event ledger (built once, cached)
    python bench/server.py --requests 5000 --concurrency 8

Runs `huntaze serve` as a separate process on a free loopback port (default log level,
so the JSON access log is on, written to a file) and drives it with a bounded load
generator (asyncio + httpx, a fixed number of requests over a fixed number of
connections; it stops by itself):

* ``GET /api/v2/costs/stats`` against a 1M-event ledger (bench/ledger.py's
  ``build_ledger``): req/s and p50/p95/p99 latency, target >= 1,000 req/s, p99 <= 20 ms;
* the daemon's idle RSS right after start-up, target <= 120 MB;
* the dashboard on the same ledger: the overview's data (stats, 30 days by day and
  provider, forecast, health: ``server.dashboard.views.overview_data``) in-process, target
  <= 200 ms; ``GET /dashboard`` and its other views over HTTP, and the overview's page
  weight, target <= 300 KB;
* ``POST /api/v2/campaigns/hybrid`` with small campaigns on a fresh data dir (``--no-worker``,
  the built-in simulated provider): req/s and latency, for information.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from ledger import _env, build_ledger  # noqa: E402  (bench/ledger.py)

TARGETS = {
    "stats_rps": 1_000,
    "stats_p99": 0.020,
    "idle_rss_mb": 120,
    "overview_ms": 200,
    "page_kb": 300,
}


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        """User + system CPU seconds the daemon has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def start_daemon(env: dict[str, str], log: Path, *args: str) -> Daemon:
    """`huntaze serve --port 0 ARGS`; returns once it answers on its port."""
    import httpx

    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "huntaze_cli", "serve", "--port", "0", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    deadline = time.monotonic() + 60
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        if url is None:
            for line in log.read_text().splitlines():
                record = json.loads(line)
                if record.get("msg") == "listening":
                    url = record["url"]
        if url is not None:
            try:
                if httpx.get(url + "/openapi.json", timeout=2).status_code == 200:
                    return Daemon(proc, url, log)
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("serve did not start within 60 s")


async def load(
    url: str,
    *,
    method: str,
    path: str,
    requests: int,
    concurrency: int,
    body: Any = None,
    client: str = "raw",
) -> tuple[float, list[float], dict[int, int]]:
    """``requests`` calls over ``concurrency`` keep-alive connections: (elapsed s,
    latencies s, count per status). ``client``: "raw" (a minimal HTTP/1.1 client, so the
    load generator's own CPU does not cap the figure on a 2-core machine) or "httpx"."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    left = requests
    payload = None if body is None else json.dumps(body).encode()

    async def user(send: Any) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            status = await send()
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    if client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

            async def send() -> int:
                response = await http.request(method, path, content=payload, headers=_JSON)
                return response.status_code

            started = time.perf_counter()
            await asyncio.gather(*(user(send) for _ in range(concurrency)))
            return time.perf_counter() - started, latencies, statuses

    connections = [await RawConnection.open(url) for _ in range(concurrency)]
    try:
        started = time.perf_counter()
        await asyncio.gather(
            *(user(lambda c=c: c.request(method, path, payload)) for c in connections)
        )
        return time.perf_counter() - started, latencies, statuses
    finally:
        for connection in connections:
            connection.close()


_JSON = {"content-type": "application/json"}


class RawConnection:
    """One keep-alive HTTP/1.1 connection, one request at a time; enough for this daemon,
    which always answers with a Content-Length."""

    def __init__(self, host: str, reader: asyncio.StreamReader, writer: Any) -> None:
        self.host = host
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(host, reader, writer)

    async def request(self, method: str, path: str, body: bytes | None) -> int:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        response = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response[9:12])
        length = 0
        for line in response.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def report(name: str, elapsed: float, latencies: list[float], statuses: dict[int, int]) -> float:
    rps = len(latencies) / elapsed
    p50, p95, p99 = (quantile(latencies, q) * 1000 for q in (0.50, 0.95, 0.99))
    codes = ", ".join(f"{code}: {n:,}" for code, n in sorted(statuses.items()))
    print(
        f"{name:<44} {rps:>8,.0f} req/s  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms"
        f"  p99 {p99:6.2f} ms  ({codes})"
    )
    return rps


def ratio(name: str, value: float, target: float, unit: str, *, higher_is_better: bool) -> None:
    factor = value / target
    meets = factor >= 1 if higher_is_better else factor <= 1
    sign = ">=" if higher_is_better else "<="
    print(
        f"  {name:<42} {value:>10,.1f} {unit:<6} target {sign} {target:,.0f} {unit}"
        f"  x{factor:.2f}  {'meets' if meets else 'MISSES'}"
    )


def small_campaign(recipients: int) -> dict[str, Any]:
    return {
        "name": "bench",
        "account": "creator_bench",
        "prompt": "Write a thank-you to {name}, who loves {interest}.",
        "max_tokens": 40,
        "recipients": [
            {"id": f"fan_{n}", "name": f"Fan {n}", "interest": "cosplay"} for n in range(recipients)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=10_000, help="stats requests")
    parser.add_argument("--concurrency", type=int, default=8, help="connections")
    parser.add_argument("--posts", type=int, default=500, help="campaign POSTs")
    parser.add_argument("--recipients", type=int, default=5, help="per POSTed campaign")
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="load generator's client"
    )
    parser.add_argument(
        "--dashboard-only", action="store_true", help="measure the dashboard's figures only"
    )
    args = parser.parse_args()

    data_dir = HERE / ".data" / "ledger"
    build_ledger(args.events, data_dir)
    if args.dashboard_only:
        with tempfile.TemporaryDirectory(prefix="huntaze-bench-") as tmp:
            dashboard(data_dir, Path(tmp), args)
        return
    print(f"load: {args.client} HTTP/1.1 client, {args.concurrency} keep-alive connections")
    with tempfile.TemporaryDirectory(prefix="huntaze-bench-") as tmp:
        # --- stats over the 1M-event ledger -------------------------------------------
        daemon = start_daemon(_env(data_dir), Path(tmp) / "stats.log", "--no-worker")
        time.sleep(1.0)  # let start-up settle before measuring the idle process
        idle = daemon.rss_mb()
        try:
            stats = {"method": "GET", "path": "/api/v2/costs/stats", "client": args.client}
            asyncio.run(load(daemon.url, requests=500, concurrency=args.concurrency, **stats))
            cpu = daemon.cpu_s()
            elapsed, latencies, statuses = asyncio.run(
                load(daemon.url, requests=args.requests, concurrency=args.concurrency, **stats)
            )
            cpu = daemon.cpu_s() - cpu
            loaded = daemon.rss_mb()
        finally:
            code = daemon.stop()
        print()
        rps = report(
            f"GET /api/v2/costs/stats ({args.events:,} events, c={args.concurrency})",
            elapsed,
            latencies,
            statuses,
        )
        ratio("stats throughput", rps, TARGETS["stats_rps"], "req/s", higher_is_better=True)
        ratio(
            "stats p99 latency",
            quantile(latencies, 0.99) * 1000,
            TARGETS["stats_p99"] * 1000,
            "ms",
            higher_is_better=False,
        )
        ratio("idle RSS after start-up", idle, TARGETS["idle_rss_mb"], "MB", higher_is_better=False)
        print(f"  {'daemon CPU per stats request':<42} {cpu / args.requests * 1000:>10.3f} ms")
        print(f"  {'RSS after the stats run':<42} {loaded:>10,.1f} MB")
        print(f"  {'exit code after SIGTERM':<42} {code:>10}")

        dashboard(data_dir, Path(tmp), args)

        # --- campaign POSTs on a fresh data dir ---------------------------------------
        fresh = Path(tmp) / "data"
        env = _env(fresh)
        daemon = start_daemon(env, Path(tmp) / "posts.log", "--no-worker")
        try:
            post: dict[str, Any] = {
                "method": "POST",
                "path": "/api/v2/campaigns/hybrid",
                "body": small_campaign(args.recipients),
                "client": args.client,
            }
            asyncio.run(load(daemon.url, requests=20, concurrency=args.concurrency, **post))
            elapsed, latencies, statuses = asyncio.run(
                load(daemon.url, requests=args.posts, concurrency=args.concurrency, **post)
            )
            drained = _wait_generated(daemon.url, (args.posts + 20) * args.recipients)
        finally:
            code = daemon.stop()
        report(
            f"POST /api/v2/campaigns/hybrid ({args.recipients} recipients)",
            elapsed,
            latencies,
            statuses,
        )
        print(f"  {'every message generated and queued after':<42} {drained:>10.1f} s")
        print(f"  {'exit code after SIGTERM':<42} {code:>10}")


def overview_ms(data_dir: Path, runs: int = 15) -> tuple[float, float]:
    """Median and worst ms of the overview's data, in-process (after one warm-up call,
    which also fits the day's forecast once, as the daemon's first request does)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_env(data_dir))
    try:
        from huntaze_cli.server.dashboard.views import overview_data
        from huntaze_cli.services import Services

        services = Services()
        overview_data(services)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            overview_data(services)
            times.append((time.perf_counter() - started) * 1000)
        services.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return statistics.median(times), max(times)


def dashboard(data_dir: Path, tmp: Path, args: argparse.Namespace) -> None:
    """The dashboard's figures on the 1M-event ledger (see the module docstring)."""
    import httpx

    print()
    median, worst = overview_ms(data_dir)
    ratio("dashboard overview data (in-process)", median, TARGETS["overview_ms"], "ms",
          higher_is_better=False)  # fmt: skip
    print(f"  {'overview data, slowest of 15':<42} {worst:>10.1f} ms")
    daemon = start_daemon(_env(data_dir), tmp / "dashboard.log", "--no-worker")
    try:
        page = httpx.get(daemon.url + "/dashboard", timeout=60)
        assert page.status_code == 200, page.text[:500]
        views = ("", "/campaigns", "/costs", "/budgets", "/alerts")
        for path in (f"/dashboard{view}" for view in views):
            get = {"method": "GET", "path": path, "client": args.client}
            elapsed, latencies, statuses = asyncio.run(
                load(daemon.url, requests=30, concurrency=1, **get)
            )
            report(f"GET {path} (sequential)", elapsed, latencies, statuses)
    finally:
        daemon.stop()
    ratio("overview page weight", len(page.content) / 1000, TARGETS["page_kb"], "KB",
          higher_is_better=False)  # fmt: skip


def _wait_generated(url: str, messages: int, timeout: float = 120.0) -> float:
    """Seconds until the queue holds every POSTed campaign's ``messages``."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        overview = httpx.get(url + "/api/v2/campaigns/status", params={"limit": 1}, timeout=30)
        if overview.json()["queue"].get("creator_bench", {}).get("queued", 0) >= messages:
            break
        time.sleep(0.1)
    return time.perf_counter() - started


if __name__ == "__main__":
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    main()
