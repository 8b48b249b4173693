"""Campaign, rate-limiter and delivery benchmarks, printed against the targets in DESIGN.md.

    python bench/campaign.py                                  # 100k recipients, 1,000 x 10
    python bench/campaign.py --recipients 20000 --accounts 200 --no-worker
    python bench/campaign.py --skip-campaign --windows 5      # only limiter and worker

Every part runs in a fresh temp dir (XDG_DATA_HOME and XDG_CONFIG_HOME point there, so the
embedded defaults apply: the offline ``simulated`` provider, SQLite for the campaign
store, queue, rate limiter and ledger, the outbox sink).

1. ``huntaze send-campaign FILE --no-wait --json`` on ``--recipients`` (100,000) fans in a
   generated CSV, run as the installed console script in a subprocess. Printed: wall time,
   messages generated and queued per second (over the whole command, and over the part
   after the campaign and its recipients are stored, which the CLI marks on stderr), and
   the process's peak RSS against the target (<= 200 MB). Peak RSS is the kernel's
   high-water mark for the process (``ru_maxrss`` from ``wait4``, what ``/usr/bin/time
   -v`` prints as "Maximum resident set size"), so the SQLite page caches, allocator
   arenas and the ledger writer thread all count. The same campaign at a tenth of the size
   shows whether memory stays flat: the peak should barely move. Checked: the CSV size,
   every message queued, and one ledger event per generation (raw events in ledger.db).
   The 1,000 messages/s floor is this benchmark's own (DESIGN.md sets none for it).

2. The SQLite rate limiter (``[rate_limit]`` defaults: 10 per 60 s) with ``--accounts``
   (1,000) accounts:
   a. one process, real clock: acquire round-robin over the accounts until each has
      ``--messages`` (10) grants, then once more (every account must be refused: its
      window is full). Printed: grants per second against what the accounts need at full
      rate (accounts x messages / per_seconds), the extra grants (must be 0).
   b. ``--processes`` (2) processes on one fresh file, each doing the same rounds: the
      grants per account summed over processes must still be ``messages``.
   c. ``--windows`` (3) windows on a simulated clock (the limiter's injectable clock, the
      rest real SQLite): every account is retried at the instant its last refusal names,
      until it has windows x messages grants.
   Each part checks every account's grant times for window violations (sorted grants g:
   ``g[i + messages] - g[i] >= per_seconds``; must be 0).

4. With ``--aws-recipients N`` (0 = skip): part 1 again on DynamoDB + SQS, one moto
   server (bench/campaign_aws.py), its figures printed beside part 1's.

3. ``huntaze worker --once --json`` (subprocess) on ``--accounts`` accounts x
   ``--per-account`` (10) queued messages (one campaign per account, generated through the
   orchestrator beforehand), delivering to the outbox. Printed: deliveries per second end
   to end (process start included), peak RSS, and the outbox checked: every message once,
   per-account counts, window violations in ``sent_at`` (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import heapq
import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

RSS_TARGET_MB = 200.0  # DESIGN.md: 100k-recipient campaign
CAMPAIGN_FLOOR = 1_000.0  # messages/s; this benchmark's floor on the simulated provider
MESSAGES = 10  # [rate_limit] defaults
PER_SECONDS = 60.0

INTERESTS = ("cosplay", "live streams", "photo sets", "behind-the-scenes videos", "fitness")
NAMES = ("Alex", "Sam", "Riley", "Jordan", "Casey", "Morgan", "Avery", "Quinn", "Jamie")


# --- output ------------------------------------------------------------------------------


def line(
    name: str,
    value: float,
    unit: str,
    target: float | None = None,
    *,
    higher_is_better: bool = False,
    note: str = "",
) -> None:
    """``name value unit  target <= / >= T  xRATIO  meets|MISSES`` (the ledger.py style)."""
    shown = f"{value:>12,.0f} {unit}" if abs(value) >= 100 else f"{value:>12,.2f} {unit}"
    text = f"{name:<60} {shown:<16}"
    if target is not None:
        ratio = value / target
        ok = ratio >= 1 if higher_is_better else ratio <= 1
        sign = ">=" if higher_is_better else "<="
        text += f"  target {sign} {target:,.0f} {unit}  x{ratio:.2f}  {'meets' if ok else 'MISSES'}"
    if note:
        text += f"  ({note})"
    print(text, flush=True)


def check(name: str, value: int, expected: int, *, note: str = "") -> bool:
    ok = value == expected
    verdict = "meets" if ok else "MISSES"
    extra = f"  ({note})" if note else ""
    print(f"{name:<60} {value:>12,}       must be {expected:,}  {verdict}{extra}", flush=True)
    return ok


def info(name: str, text: str) -> None:
    print(f"{name:<60} {text}", flush=True)


# --- helpers -----------------------------------------------------------------------------


def cli_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTAZE_")}
    env["XDG_DATA_HOME"] = str(root / "data")
    env["XDG_CONFIG_HOME"] = str(root / "no-config")
    env.pop("NO_COLOR", None)
    return env


@contextlib.contextmanager
def in_env(env: dict[str, str]) -> Iterator[None]:
    """This process's environment set to ``env`` (data dir paths are read from it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def huntaze_exe() -> str:
    return shutil.which("huntaze") or str(Path(sys.executable).parent / "huntaze")


@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    first_stderr_s: float | None  # when the first stderr line arrived, from the start


def run_measured(args: Sequence[str], env: dict[str, str], timeout_s: float) -> Run:
    """Run ``args``; wall time and the process's own peak RSS (``wait4`` rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out: list[str] = []
    err: list[str] = []
    first: list[float] = []

    def read_err() -> None:
        assert proc.stderr is not None
        for text in proc.stderr:
            if not first:
                first.append(time.perf_counter() - start)
            err.append(text)

    def read_out() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    readers = [threading.Thread(target=read_err), threading.Thread(target=read_out)]
    for reader in readers:
        reader.start()
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    return Run(
        wall_s=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        returncode=proc.returncode,
        stdout="".join(out),
        stderr="".join(err),
        first_stderr_s=first[0] if first else None,
    )


def window_violations(grants_us: Sequence[int], messages: int, per_us: int) -> int:
    """How many i have ``g[i + messages] - g[i] < per_us`` (grants sorted)."""
    g = sorted(grants_us)
    return sum(1 for i in range(len(g) - messages) if g[i + messages] - g[i] < per_us)


# --- 1. the 100k campaign ----------------------------------------------------------------


def write_campaign(root: Path, recipients: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "fans.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "name", "interest"])
        for n in range(recipients):
            writer.writerow(
                [f"fan_{n:07d}", f"{NAMES[n % len(NAMES)]}{n}", INTERESTS[n % len(INTERESTS)]]
            )
    campaign = root / "campaign.toml"
    campaign.write_text(
        'name = "Bench thank-you"\n'
        'account = "creator_bench"\n'
        'tenant = "agency_bench"\n'
        'model = "gpt-4o-mini"\n'
        'system = "You write short, warm messages for a creator\'s fans."\n'
        'prompt = "Write a two-line thank-you to {name}, who loves {interest}."\n'
        "max_tokens = 60\n"
        "temperature = 0.8\n"
        'recipients_file = "fans.csv"\n',
        encoding="utf-8",
    )
    return campaign


@dataclass
class CampaignRun:
    recipients: int
    csv_bytes: int
    run: Run
    report: dict[str, Any]
    ledger_events: int


def run_campaign(work: Path, recipients: int, timeout_s: float) -> CampaignRun:
    root = work / f"campaign-{recipients}"
    campaign = write_campaign(root, recipients)
    env = cli_env(root)
    run = run_measured(
        [huntaze_exe(), "send-campaign", str(campaign), "--no-wait", "--json"], env, timeout_s
    )
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        raise SystemExit(f"send-campaign exited {run.returncode}")
    report = json.loads(run.stdout)
    with contextlib.closing(sqlite3.connect(root / "data" / "huntaze" / "ledger.db")) as conn:
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    return CampaignRun(recipients, (root / "fans.csv").stat().st_size, run, report, events)


def bench_campaign(work: Path, recipients: int, flat_check: bool, timeout_s: float) -> bool:
    print(f"\n1. send-campaign --no-wait, {recipients:,} recipients, simulated provider")
    small = None
    if flat_check and recipients >= 1000:
        small = run_campaign(work, recipients // 10, timeout_s)
    big = run_campaign(work, recipients, timeout_s)
    run = big.run
    info("recipients CSV", f"{big.csv_bytes / 1e6:,.1f} MB, {recipients:,} rows")
    line("wall time, whole command (Python start included)", run.wall_s, "s")
    line(
        "messages generated and queued per second, whole command",
        recipients / run.wall_s,
        "msg/s",
        CAMPAIGN_FLOOR,
        higher_is_better=True,
    )
    ok = recipients / run.wall_s >= CAMPAIGN_FLOOR
    if run.first_stderr_s is not None and run.wall_s > run.first_stderr_s:
        stored = run.first_stderr_s
        line(
            "  of which: validate, estimate and store the recipients",
            stored,
            "s",
            note="two streaming passes over the CSV",
        )
        line(
            "  of which: generate and enqueue (after the store)",
            recipients / (run.wall_s - stored),
            "msg/s",
        )
    line(
        f"peak RSS, {recipients:,}-recipient campaign",
        run.peak_rss_mb,
        "MB",
        RSS_TARGET_MB,
        note="ru_maxrss of the process",
    )
    ok &= run.peak_rss_mb <= RSS_TARGET_MB
    if small is not None:
        growth = run.peak_rss_mb - small.run.peak_rss_mb
        per_100k = growth / (recipients - small.recipients) * 100_000
        line(
            f"  peak RSS at {small.recipients:,} recipients (flatness check)",
            small.run.peak_rss_mb,
            "MB",
            note=f"+{per_100k:,.1f} MB per 100k more recipients",
        )
    counts = big.report["counts"]
    ok &= check("messages queued", counts["queued"], recipients)
    ok &= check("messages dead or failed", counts["dead"] + counts["failed"], 0)
    ok &= check("ledger events written (raw events in ledger.db)", big.ledger_events, recipients)
    requests = sum(p["requests"] for p in big.report["providers"].values())
    ok &= check("requests in the campaign report (daily rollups)", requests, recipients)
    return ok


# --- 2. the rate limiter -----------------------------------------------------------------


def _grant_rounds(path: str, accounts: int, messages: int, rounds: int) -> tuple[float, dict]:
    """Round-robin acquires; (seconds, {account: [grant us]}, refusals) for one process."""
    from huntaze_cli.clock import micros
    from huntaze_cli.storage.sqlite.ratelimit import SQLiteRateLimiter

    names = [f"creator_{n:05d}" for n in range(accounts)]
    grants: dict[str, list[int]] = defaultdict(list)
    refused = 0
    with SQLiteRateLimiter(Path(path), messages=messages, per_seconds=PER_SECONDS) as limiter:
        start = time.perf_counter()
        for _ in range(rounds):
            for name in names:
                grant = limiter.acquire(name)
                if grant.granted:
                    assert grant.at is not None
                    grants[name].append(micros(grant.at))
                else:
                    refused += 1
        took = time.perf_counter() - start
    return took, {"grants": dict(grants), "refused": refused}


def _grant_worker(args: tuple[str, int, int, int]) -> tuple[float, dict]:
    return _grant_rounds(*args)


def _warm_up() -> None:
    import huntaze_cli.storage.sqlite.ratelimit  # noqa: F401  (imports are not timed)


def bench_limiter(work: Path, accounts: int, messages: int, processes: int, windows: int) -> bool:
    from huntaze_cli.storage.ratelimit import window_micros

    per_us = window_micros(PER_SECONDS)
    needed = accounts * messages / PER_SECONDS
    print(
        f"\n2. SQLite rate limiter, {accounts:,} accounts x {messages} "
        f"({messages} per {PER_SECONDS:.0f} s)"
    )
    ok = True

    # a. one process, real clock: `messages` rounds that must all grant, one that must not.
    path = work / "limiter-a.db"
    took, result = _grant_rounds(str(path), accounts, messages, messages)
    grants: dict[str, list[int]] = result["grants"]
    total = sum(len(g) for g in grants.values())
    line(
        "grants per second, one process (each a BEGIN IMMEDIATE txn)",
        total / took,
        "grants/s",
        needed,
        higher_is_better=True,
        note=f"target: {accounts:,} accounts at full rate",
    )
    ok &= total / took >= needed
    ok &= check("grants", total, accounts * messages)
    if took > PER_SECONDS:
        info("  note", "the rounds outlasted one window: the refusal check below is skipped")
    else:
        _, extra = _grant_rounds(str(path), accounts, messages, 1)
        extra_grants = sum(len(g) for g in extra["grants"].values())
        ok &= check("grants beyond the full window (one more round)", extra_grants, 0)
        for name, more in extra["grants"].items():
            grants[name].extend(more)
    violations = sum(window_violations(g, messages, per_us) for g in grants.values())
    ok &= check(
        "window violations (g[i+10] - g[i] < 60 s)",
        violations,
        0,
        note="needs > 10 grants per account to bite: see the extra round and 2c",
    )

    # b. several processes on one file, each trying every account `messages` times.
    if processes > 1:
        path = work / "limiter-b.db"
        from huntaze_cli.storage.sqlite.ratelimit import SQLiteRateLimiter

        SQLiteRateLimiter(path).close()  # create the file before the processes race
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes, initializer=_warm_up) as pool:
            pool.map(abs, range(processes))  # every worker started
            start = time.perf_counter()
            results = pool.map(
                _grant_worker, [(str(path), accounts, messages, messages)] * processes
            )
            took = time.perf_counter() - start
        merged: dict[str, list[int]] = defaultdict(list)
        calls = processes * accounts * messages
        for _, part in results:
            for name, more in part["grants"].items():
                merged[name].extend(more)
        total = sum(len(g) for g in merged.values())
        line(
            f"acquires per second, {processes} processes sharing the file",
            calls / took,
            "calls/s",
            needed,
            higher_is_better=True,
            note=f"{total:,} granted, {calls - total:,} refused",
        )
        ok &= calls / took >= needed
        if took <= PER_SECONDS:
            most = max((len(g) for g in merged.values()), default=0)
            ok &= check("most grants of one account, all processes", most, messages)
        violations = sum(window_violations(g, messages, per_us) for g in merged.values())
        ok &= check(f"window violations across {processes} processes", violations, 0)

    # c. several windows on a simulated clock: retry at the instant each refusal names.
    if windows > 0:
        ok &= _limiter_windows(work / "limiter-c.db", accounts, messages, windows, per_us)
    return ok


def _limiter_windows(path: Path, accounts: int, messages: int, windows: int, per_us: int) -> bool:
    from huntaze_cli.clock import US_PER_S, ManualClock, micros
    from huntaze_cli.storage.sqlite.ratelimit import SQLiteRateLimiter

    clock = ManualClock(time.time())
    target = windows * messages
    grants: dict[str, list[int]] = defaultdict(list)
    ready = [(clock.time(), f"creator_{n:05d}") for n in range(accounts)]
    heapq.heapify(ready)
    calls = refused = early = 0
    with SQLiteRateLimiter(
        path, messages=messages, per_seconds=PER_SECONDS, clock=clock
    ) as limiter:
        start = time.perf_counter()
        while ready:
            at, name = heapq.heappop(ready)
            clock.advance(max(at - clock.time(), 0.0) + 1e-6)
            grant = limiter.acquire(name)
            calls += 1
            if grant.granted:
                assert grant.at is not None
                grants[name].append(micros(grant.at))
                if len(grants[name]) < target:
                    heapq.heappush(ready, (clock.time(), name))
            else:
                refused += 1
                now_us = round(clock.time() * US_PER_S)
                held = grants[name]
                if len(held) - bisect_right(held, now_us - per_us) < messages:
                    early += 1  # refused while its window had room: must not happen
                heapq.heappush(ready, (clock.time() + grant.retry_after_s, name))
        took = time.perf_counter() - start
    total = sum(len(g) for g in grants.values())
    line(
        f"acquires per second, {windows} windows on a simulated clock",
        calls / took,
        "calls/s",
        note=f"{total:,} granted, {refused:,} refused",
    )
    ok = check("grants", total, accounts * target)
    ok &= check("refusals while the window had room", early, 0)
    violations = sum(window_violations(g, messages, per_us) for g in grants.values())
    ok &= check(f"window violations over {windows} windows", violations, 0)
    return ok


# --- 3. the delivery worker --------------------------------------------------------------


def fill_queue(root: Path, accounts: int, per_account: int) -> None:
    """One campaign per account, generated through the orchestrator and queued."""
    from huntaze_cli.campaigns.file import from_data
    from huntaze_cli.campaigns.generation import generate_campaign, start_campaign
    from huntaze_cli.config import load_config
    from huntaze_cli.llm.orchestrator import Orchestrator
    from huntaze_cli.storage import open_ledger, open_queue
    from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore

    with in_env(cli_env(root)):
        config = load_config(None)
        store = SQLiteCampaignStore(config.campaigns_path)
        queue = open_queue(config)
        ledger = open_ledger(config)

        async def main() -> None:
            orchestrator = Orchestrator.from_config(config, ledger=ledger)
            try:
                for n in range(accounts):
                    loaded = from_data(
                        {
                            "name": f"bench {n}",
                            "account": f"creator_{n:05d}",
                            "prompt": "Write a two-line thank-you to {name}, who loves {interest}.",
                            "max_tokens": 60,
                            "recipients": [
                                {
                                    "id": f"fan_{k}",
                                    "name": NAMES[k % len(NAMES)],
                                    "interest": INTERESTS[k % len(INTERESTS)],
                                }
                                for k in range(per_account)
                            ],
                        },
                        source="bench",
                        base_dir=root,
                    )
                    campaign, _ = start_campaign(config, store, loaded, idempotency_key=None)
                    await generate_campaign(store, queue, orchestrator, campaign, concurrency=32)
            finally:
                await orchestrator.aclose()

        try:
            asyncio.run(main())
        finally:
            store.close()
            queue.close()
            ledger.close()


def bench_worker(work: Path, accounts: int, per_account: int, timeout_s: float) -> bool:
    print(f"\n3. worker --once, {accounts:,} accounts x {per_account} queued messages, outbox sink")
    root = work / "worker"
    start = time.perf_counter()
    fill_queue(root, accounts, per_account)
    info(
        "setup (not measured)",
        f"{accounts:,} campaigns generated and queued in {time.perf_counter() - start:.1f} s",
    )
    run = run_measured([huntaze_exe(), "worker", "--once", "--json"], cli_env(root), timeout_s)
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        raise SystemExit(f"worker exited {run.returncode}")
    result = json.loads(run.stdout)
    deliverable = accounts * min(per_account, MESSAGES)
    needed = accounts * MESSAGES / PER_SECONDS
    line(
        "deliveries per second, end to end (process start included)",
        result["delivered"] / run.wall_s,
        "msg/s",
        needed,
        higher_is_better=True,
        note=f"{result['delivered']:,} in {run.wall_s:.2f} s; target: accounts at full rate",
    )
    ok = result["delivered"] / run.wall_s >= needed
    line("peak RSS, worker --once", run.peak_rss_mb, "MB")
    ok &= check("delivered (worker report)", result["delivered"], deliverable)
    ok &= check("dead + retried", result["dead"] + result["retried"], 0)

    outbox = root / "data" / "huntaze" / "outbox.jsonl"
    sent: dict[str, list[int]] = defaultdict(list)
    keys: set[str] = set()
    lines = 0
    from huntaze_cli.clock import micros
    from huntaze_cli.storage.ratelimit import window_micros

    with outbox.open(encoding="utf-8") as fh:
        for text in fh:
            record = json.loads(text)
            lines += 1
            keys.add(record["idempotency_key"])
            sent[record["account"]].append(micros(datetime.fromisoformat(record["sent_at"])))
    ok &= check("outbox lines", lines, deliverable)
    ok &= check("duplicate keys in the outbox", lines - len(keys), 0)
    ok &= check(
        "accounts with a wrong count in the outbox",
        sum(
            1
            for n in range(accounts)
            if len(sent.get(f"creator_{n:05d}", [])) != min(per_account, MESSAGES)
        ),
        0,
    )
    per_us = window_micros(PER_SECONDS)
    violations = sum(window_violations(g, MESSAGES, per_us) for g in sent.values())
    ok &= check(
        "window violations in sent_at per account",
        violations,
        0,
        note="" if per_account > MESSAGES else "with <= 10 per account the counts above bind",
    )
    return ok


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=MESSAGES, help="grants per account")
    parser.add_argument("--processes", type=int, default=2, help="limiter processes (part 2b)")
    parser.add_argument("--windows", type=int, default=3, help="simulated windows (part 2c)")
    parser.add_argument("--per-account", type=int, default=10, help="queued messages (part 3)")
    parser.add_argument("--no-flat-check", action="store_true", help="skip the 1/10 campaign")
    parser.add_argument("--skip-campaign", action="store_true")
    parser.add_argument("--skip-limiter", action="store_true")
    parser.add_argument("--no-worker", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0, help="per subprocess, seconds")
    parser.add_argument(
        "--aws-recipients", type=int, default=0, help="part 4: DynamoDB + SQS on moto (0: skip)"
    )
    parser.add_argument("--keep", type=Path, help="work in this dir and keep it")
    args = parser.parse_args()

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work_cm: contextlib.AbstractContextManager[str] = contextlib.nullcontext(str(args.keep))
    else:
        work_cm = tempfile.TemporaryDirectory(prefix="huntaze-bench-")
    ok = True
    with work_cm as tmp:
        work = Path(tmp)
        if not args.skip_campaign:
            ok &= bench_campaign(work, args.recipients, not args.no_flat_check, args.timeout)
        if not args.skip_limiter:
            ok &= bench_limiter(work, args.accounts, args.messages, args.processes, args.windows)
        if not args.no_worker:
            ok &= bench_worker(work, args.accounts, args.per_account, args.timeout)
        if args.aws_recipients:
            from campaign_aws import bench_campaign_aws

            ok &= bench_campaign_aws(work, args.aws_recipients, args.timeout)
    print("\nall checks meet their targets" if ok else "\nsome checks MISS their targets")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
