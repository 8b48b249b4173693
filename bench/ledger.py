"""Ledger and start-up benchmarks, printed against the targets in DESIGN.md.

    python bench/ledger.py              # 1M-event ledger (built once, cached in bench/.data)
    python bench/ledger.py --events 200000 --runs 5

Measures: SQLite ledger writes per second (batches of 1,000), then whole-process wall time
of `huntaze --help`, `huntaze costs stats --json` and `huntaze costs breakdown --days 30
--by provider --by model --json` over a ledger built with `costs import`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TARGETS = {  # seconds, or events/s for writes
    "writes": 20_000,
    "help": 0.150,
    "stats": 0.250,
    "breakdown": 0.300,
}


def bench_writes(total: int) -> float:
    from huntaze_cli.models import CostEvent
    from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

    now = datetime.now(UTC)
    events = [
        CostEvent(
            attempt_id=f"w-{n}",
            request_id=f"r-{n}",
            ts=now - timedelta(seconds=n % 86_400),
            provider=("azure", "openai")[n % 2],
            model=("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")[n % 3],
            input_tokens=120,
            output_tokens=60,
            cost_nano=54_000 + n % 1000,
            latency_ms=float(n % 900),
            campaign_id=f"cmp-{n % 50}",
            account=f"creator_{n % 20}",
            tenant=f"agency_{n % 3}",
        )
        for n in range(total)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = SQLiteLedger(Path(tmp) / "w.db")
        start = time.perf_counter()
        for i in range(0, total, 1000):
            ledger.record(events[i : i + 1000])
        elapsed = time.perf_counter() - start
        ledger.close()
    return total / elapsed


def build_ledger(events: int, data_dir: Path, *, extra: Sequence[str] = (), days: int = 30) -> Path:
    """A ledger of ``events`` events over ``days`` days, built with `huntaze costs import`
    (the raw events' retention raised to keep them all).

    ``extra`` goes to gen_events.py (``--experiment NAME`` tags every event with an arm).
    """
    db = data_dir / "huntaze" / "ledger.db"
    span = "" if days == 30 else f"-{days}d"
    stamp = data_dir / f"built-{events}{span}-{datetime.now(UTC).date()}"
    if stamp.exists() and db.exists():
        return db
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    print(f"building a {events:,}-event ledger with `costs import` (once)...", flush=True)
    start = time.perf_counter()
    gen = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "gen_events.py"),
            "--events",
            str(events),
            "--days",
            str(days - 0.1),
            "--accounts",
            "40",
            "--campaigns",
            "200",
            *extra,
        ],
        stdout=subprocess.PIPE,
    )
    env = _env(data_dir)
    env["HUNTAZE_LEDGER__RETENTION_DAYS"] = str(max(30, days + 1))
    subprocess.run(
        [sys.executable, "-m", "huntaze_cli", "costs", "import", "-", "--json"],
        stdin=gen.stdout,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    gen.wait()
    took = time.perf_counter() - start
    print(f"  imported in {took:.1f} s ({events / took:,.0f} events/s through the CLI)")
    stamp.touch()
    return db


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTAZE_")}
    env["XDG_DATA_HOME"] = str(data_dir)
    env["XDG_CONFIG_HOME"] = str(data_dir / "no-config")
    return env


def wall(args: list[str], env: dict[str, str], runs: int) -> float:
    """Median whole-process wall time of `huntaze ARGS` (the installed console script)."""
    exe = shutil.which("huntaze") or str(Path(sys.executable).parent / "huntaze")
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        subprocess.run([exe, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # first run warms the page cache


def line(name: str, value: float, target: float, *, higher_is_better: bool = False) -> None:
    if higher_is_better:
        ratio = value / target
        verdict = "meets" if ratio >= 1 else "MISSES"
        print(f"{name:<52} {value:>12,.0f}/s  target >= {target:,.0f}/s  x{ratio:.2f}  {verdict}")
    else:
        ratio = value / target
        verdict = "meets" if ratio <= 1 else "MISSES"
        print(
            f"{name:<52} {value * 1000:>10.1f} ms  target <= {target * 1000:.0f} ms"
            f"  x{ratio:.2f}  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    writes = bench_writes(args.writes)
    data_dir = HERE / ".data" / "ledger"
    build_ledger(args.events, data_dir)
    env = _env(data_dir)
    print()
    line(
        "ledger writes (SQLite, batches of 1,000)", writes, TARGETS["writes"], higher_is_better=True
    )
    line("huntaze --help", wall(["--help"], env, args.runs), TARGETS["help"])
    line(
        f"costs stats --json ({args.events:,} events)",
        wall(["costs", "stats", "--json"], env, args.runs),
        TARGETS["stats"],
    )
    line(
        f"costs breakdown --days 30 --by provider --by model ({args.events:,})",
        wall(
            ["costs", "breakdown", "--days", "30", "--by", "provider", "--by", "model", "--json"],
            env,
            args.runs,
        ),
        TARGETS["breakdown"],
    )


if __name__ == "__main__":
    main()
