"""Multi-process contention: do racing workers get what the rate limit allows?

    python bench/contention.py                      # SQLite file and DynamoDB (moto server)
    python bench/contention.py --backend sqlite --run-s 10 --processes 8
    python bench/contention.py --backend none --workers   # only part 2

1. The rate limiter alone.
Four spawned worker processes race for the same three accounts (10 messages per 1 s)
for ``--run-s`` seconds, waiting ``retry_after_s`` after each refusal as the delivery
worker does (the drill in ``huntaze_testing.ratelimit_drill``, which the test suite runs
for exactness). Printed per backend and account: grants, what the limit allows over the
run, their ratio against this benchmark's floor (no starvation: lost races and
over-long waits show as a low ratio; moto's server is slow on a loaded machine, hence
its lower floor), and window violations (must be 0).

2. ``--workers``: four ``huntaze worker`` processes on one SQLite data dir deliver two
   campaigns queued with ``--no-wait``: creator_a 35 messages, creator_b 20, at 10 per
   2 s. Printed per account: the span from first to last send against the least the
   limit allows ((ceil(messages / 10) - 1) x 2 s), and window violations (must be 0). Accounts
   must not slow each other: creator_b's span should stay within 3 s of its least.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from huntaze_testing.campaign_files import write_campaign  # noqa: E402
from huntaze_testing.ratelimit_drill import (  # noqa: E402
    Drill,
    allowed_grants,
    open_limiter,
    run_drill,
    window_violations,
)

FLOORS = {"sqlite": 0.8, "dynamodb": 0.5}  # grants / allowed, per account


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench(drill: Drill) -> bool:
    """Run one drill and print its figures; True when every account meets the floor."""
    started = time.perf_counter()
    per_account = run_drill(drill)
    wall = time.perf_counter() - started
    allowed = allowed_grants(drill)
    ok = True
    print(f"{drill.backend}: {drill.processes} processes, {drill.run_s:g} s run ({wall:.1f} s)")
    for account, stamps in per_account.items():
        ratio = len(stamps) / allowed
        violations = window_violations(drill, stamps)
        good = ratio >= FLOORS[drill.backend] and not violations
        ok = ok and good
        print(
            f"  {account}: {len(stamps)} grants / {allowed:.0f} allowed = {ratio:.2f} "
            f"(floor {FLOORS[drill.backend]:.2f}), {len(violations)} window violations "
            f"{'ok' if good else 'BELOW TARGET'}"
        )
    return ok


def bench_workers(tmp: Path) -> bool:
    """Part 2: four worker processes, two accounts; True when b keeps its pace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTAZE_")}
    env |= {
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "HUNTAZE_QUEUE__BACKOFF__BASE_S": "0.05",
        "HUNTAZE_RATE_LIMIT__MESSAGES": "10",
        "HUNTAZE_RATE_LIMIT__PER_SECONDS": "2",
    }
    counts = {"creator_a": 35, "creator_b": 20}
    for account, count in counts.items():
        spec = write_campaign(tmp, account, count, name="contention")
        cmd = [sys.executable, "-m", "huntaze_cli", "send-campaign", str(spec), "--no-wait"]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    outbox = tmp / "data" / "huntaze" / "outbox.jsonl"

    def sent() -> list[dict[str, str]]:
        if not outbox.exists():
            return []
        return [json.loads(line) for line in outbox.read_text().splitlines() if line.strip()]

    worker = [sys.executable, "-m", "huntaze_cli", "worker"]
    procs = [
        subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(4)
    ]
    deadline = time.monotonic() + 120
    try:
        while len(sent()) < sum(counts.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
    lines = sent()
    ok = len(lines) == sum(counts.values())
    print(f"workers: 4 processes, {len(lines)} of {sum(counts.values())} messages delivered")
    for account, count in counts.items():
        times = sorted(
            datetime.fromisoformat(x["sent_at"]) for x in lines if x["account"] == account
        )
        stamps = [round(t.timestamp() * 1e6) for t in times]
        drill = Drill("sqlite", "", messages=10, per_seconds=2.0)
        violations = window_violations(drill, stamps)
        span = (times[-1] - times[0]).total_seconds() if times else float("nan")
        least = (math.ceil(count / 10) - 1) * 2.0  # full windows after the first
        good = not violations and (account != "creator_b" or span <= least + 3.0)
        ok = ok and good
        print(
            f"  {account}: {len(times)} sent over {span:.2f} s (least {least:.1f} s), "
            f"{len(violations)} window violations {'ok' if good else 'BELOW TARGET'}"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "dynamodb", "both", "none"], default="both")
    parser.add_argument("--workers", action="store_true", help="also run part 2")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--run-s", type=float, default=3.5)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            target = str(Path(tmp) / "ratelimit.db")
            drill = Drill("sqlite", target, args.processes, run_s=args.run_s)
            open_limiter(drill).close()  # the schema exists before the race starts
            ok = bench(drill) and ok
        if args.backend in ("dynamodb", "both"):
            from moto.server import ThreadedMotoServer

            # moto wants credentials of some kind; these never leave the loopback server.
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                os.environ.setdefault(name, "bench")

            port = _free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
            server.start()
            try:
                drill = Drill(
                    "dynamodb", f"http://127.0.0.1:{port}", args.processes, run_s=args.run_s
                )
                setup = open_limiter(drill, create_tables=True)
                setup.acquire("warm-up")  # the table exists before the race starts
                setup.close()
                ok = bench(drill) and ok
            finally:
                server.stop()
        if args.workers:
            ok = bench_workers(Path(tmp)) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
