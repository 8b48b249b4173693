"""Several processes racing for one rate limit: the drill the contention test and bench share.

Worker processes (spawned, so nothing is shared but the store) take slots for the same
accounts as fast as the limiter lets them, for ``run_s`` seconds, waiting
``retry_after_s`` after each refusal as the delivery worker does. Every grant is returned
with its time (the limiter's own stamp, in microseconds), per account, so a caller can
check the window rule (:func:`window_violations`) and count what the workers got against
what the limit allows over the run (:func:`allowed_grants`).
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huntaze_cli.clock import micros
from huntaze_cli.storage.ratelimit import RateLimiter

REGION = "us-east-1"
TABLE = "shared-ratelimit"


@dataclass(frozen=True)
class Drill:
    """One drill: which store, how many processes and accounts, what limit, how long."""

    backend: str  # "sqlite" (target: a file path) or "dynamodb" (target: an endpoint URL)
    target: str
    processes: int = 4
    accounts: tuple[str, ...] = ("creator_a", "creator_b", "creator_c")
    messages: int = 10
    per_seconds: float = 1.0
    run_s: float = 3.5


def open_limiter(drill: Drill, *, create_tables: bool = False) -> RateLimiter:
    """The drill's limiter in this process."""
    if drill.backend == "sqlite":
        from huntaze_cli.storage.sqlite.ratelimit import SQLiteRateLimiter

        return SQLiteRateLimiter(
            Path(drill.target), messages=drill.messages, per_seconds=drill.per_seconds
        )
    from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter

    return DynamoDBRateLimiter(
        TABLE,
        messages=drill.messages,
        per_seconds=drill.per_seconds,
        region=REGION,
        endpoint_url=drill.target,
        create_tables=create_tables,
    )


def _worker(drill: Drill, first: int, start_at: float, stop_at: float, results: Any) -> None:
    """One worker process: take slots until ``stop_at``, report (account, µs) grants."""
    try:
        limiter = open_limiter(drill)
        grants: list[tuple[str, int]] = []
        # When each account may be tried next: now after a grant, after the wait the
        # limiter named after a refusal. Workers start on different accounts, as delivery
        # workers holding different leases do; they all meet on every account soon.
        order = drill.accounts[first:] + drill.accounts[:first]
        due = dict.fromkeys(order, start_at)
        while True:
            account = min(order, key=due.__getitem__)
            pause = due[account] - time.time()
            if due[account] >= stop_at:
                break
            if pause > 0:
                time.sleep(pause)
            grant = limiter.acquire(account)
            if grant.granted:
                assert grant.at is not None
                grants.append((account, micros(grant.at)))
            else:
                due[account] = time.time() + grant.retry_after_s
            if time.time() >= stop_at:
                break
        limiter.close()
        results.put((grants, None))
    except BaseException as exc:  # reported to the parent, which raises it
        results.put(([], repr(exc)))


def run_drill(drill: Drill) -> dict[str, list[int]]:
    """Run the worker processes against one store; every grant time (µs) per account, sorted.

    Raises RuntimeError if a worker failed or a grant is stamped outside the run.
    """
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    # Spawning and importing takes a moment; every worker starts at the same instant.
    start_at = time.time() + 2.0
    stop_at = start_at + drill.run_s
    procs = [
        ctx.Process(
            target=_worker,
            args=(drill, n % len(drill.accounts), start_at, stop_at, results),
        )
        for n in range(drill.processes)
    ]
    for proc in procs:
        proc.start()
    try:
        outcomes = [results.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    errors = [error for _, error in outcomes if error is not None]
    if errors:
        raise RuntimeError(f"worker failed: {errors[0]}")
    per_account: dict[str, list[int]] = {account: [] for account in drill.accounts}
    for grants, _ in outcomes:
        for account, stamp in grants:
            per_account[account].append(stamp)
    for account, stamps in per_account.items():
        stamps.sort()
        if not all(start_at - 1 <= stamp / 1e6 <= stop_at + 1 for stamp in stamps):
            raise RuntimeError(f"{account}: a grant is stamped outside the run")
    return per_account


def window_violations(drill: Drill, stamps: list[int]) -> list[tuple[int, int]]:
    """(index, gap µs) wherever ``messages + 1`` sorted grants fall within one window."""
    per_us = round(drill.per_seconds * 1e6)
    n = drill.messages
    return [
        (i, stamps[i + n] - stamps[i])
        for i in range(len(stamps) - n)
        if stamps[i + n] - stamps[i] < per_us
    ]


def allowed_grants(drill: Drill) -> float:
    """The limit's long-run rate over the run, per account (a greedy run gets a little more:
    the first window's burst comes at once)."""
    return drill.messages * drill.run_s / drill.per_seconds
