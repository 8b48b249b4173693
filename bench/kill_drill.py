"""Kill -9 drill: does every answered provider call reach the cost ledger?

    python bench/kill_drill.py                  # 20 kills, 400 recipients per round
    python bench/kill_drill.py --kills 5 --huntaze /path/to/other/venv/bin/huntaze

The fake OpenAI upstream runs as its own process (40 ms per call) and counts every
response it sends (``answered_total`` in its stats). Each round starts
``huntaze send-campaign FILE --no-wait --json`` (a new campaign of ``--recipients``
fans, concurrency 32) in a fresh data dir shared by all rounds, waits until the
upstream has answered some of its calls, and kills it with SIGKILL mid-generation. A
last, one-recipient campaign opens the ledger writer once more, which is when a huntaze
process recovers the journals of dead ones. Printed: calls the upstream answered, cost
events in the ledger, and **missing** = answered calls with no event (target 0);
``interrupted`` counts events recovered from a journal with no outcome (calls in flight
at the kill: answered or not, they are in the ledger, unpriced).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from huntaze_testing.fake_llm import FakeLLMProcess  # noqa: E402

KEY = "sk-drill-0000"


@dataclass
class DrillResult:
    kills: int
    answered: int
    events: int
    interrupted: int

    @property
    def missing(self) -> int:
        return max(0, self.answered - self.events)


def _campaign(directory: Path, name: str, recipients: int) -> Path:
    csv_path = directory / f"{name}.csv"
    with csv_path.open("w") as fh:
        fh.write("id,name,interest\n")
        for n in range(recipients):
            fh.write(f"fan_{n},Fan {n},cosplay\n")
    path = directory / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\naccount = "creator_1"\nmodel = "gpt-4o-mini"\n'
        'prompt = "Write a two-line thank-you to {name}, who loves {interest}."\n'
        f'max_tokens = 40\nrecipients_file = "{csv_path.name}"\n'
    )
    return path


def _env(base: Path, upstream: FakeLLMProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUNTAZE_", "OPENAI_"))}
    env.update(
        {
            "XDG_DATA_HOME": str(base / "data"),
            "XDG_CONFIG_HOME": str(base / "config"),
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": upstream.openai_base_url,
            "HUNTAZE_ROUTING__CONCURRENCY": "32",
        }
    )
    return env


def _answered(upstream: FakeLLMProcess) -> int:
    return int(upstream.stats()["answered_total"])


def run_drill(
    *, kills: int, recipients: int, huntaze: str, seed: int = 1, verbose: bool = False
) -> DrillResult:
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="huntaze-kill-drill-"))
    try:
        with FakeLLMProcess(latency_ms=40, openai_keys=[KEY]) as upstream:
            env = _env(base, upstream)
            for n in range(kills):
                before = _answered(upstream)
                campaign = _campaign(base, f"drill-{n}", recipients)
                proc = subprocess.Popen(
                    [huntaze, "send-campaign", str(campaign), "--no-wait", "--json"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                # Kill after a random share of the round's calls were answered.
                target = before + rng.randint(recipients // 10, recipients * 8 // 10)
                deadline = time.monotonic() + 60
                while _answered(upstream) < target and proc.poll() is None:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                if verbose:
                    print(f"  kill {n + 1}: upstream had answered {_answered(upstream)}")
            # Let in-flight upstream responses finish before counting them.
            time.sleep(0.5)
            final = _campaign(base, "after", 1)
            subprocess.run(
                [huntaze, "send-campaign", str(final), "--no-wait", "--json"],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            answered = _answered(upstream)
        ledger = base / "data" / "huntaze" / "ledger.db"
        conn = sqlite3.connect(ledger)
        try:
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            interrupted = conn.execute(
                "SELECT count(*) FROM events WHERE error_kind = 'interrupted'"
            ).fetchone()[0]
        finally:
            conn.close()
        return DrillResult(kills, answered, events, interrupted)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--huntaze",
        default=shutil.which("huntaze") or str(Path(sys.executable).parent / "huntaze"),
        help="The huntaze executable under test (another checkout's, to compare).",
    )
    args = parser.parse_args()
    result = run_drill(
        kills=args.kills,
        recipients=args.recipients,
        huntaze=args.huntaze,
        seed=args.seed,
        verbose=True,
    )
    print(
        json.dumps(
            {
                "kills": result.kills,
                "answered_calls": result.answered,
                "ledger_events": result.events,
                "interrupted_events": result.interrupted,
                "missing_events": result.missing,
            }
        )
    )
    verdict = "meets" if result.missing == 0 else "MISSES"
    print(f"missing cost events after {result.kills} kills: {result.missing}  target 0  {verdict}")


if __name__ == "__main__":
    main()
