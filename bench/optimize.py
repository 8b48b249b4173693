"""Whole-process wall time of `costs optimize` and `experiments report` on a 1M-event ledger.

    python bench/optimize.py                 # 1M events (built once, cached in bench/.data)
    python bench/optimize.py --events 200000 --runs 3

The ledger is 30 days of synthetic traffic over 200 campaigns, every event tagged with
experiment "bench" and an arm (control or cheaper), imported with `costs import`.
DESIGN.md's targets: 2 s each, Python start-up included.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ledger import _env, build_ledger, line  # noqa: E402

TARGET_S = 2.0
CONFIG = """\
[providers.azure]
kind = "azure"
endpoint = "https://example.openai.azure.com"

[providers.openai]
kind = "openai"

[pricing.overrides."azure/gpt-4o"]
input = 2.0
output = 8.0

[experiments.bench]
split = { control = 50, cheaper = 50 }
arms = { control = {}, cheaper = { model = "gpt-4o-mini" } }
"""


def wall_and_cpu(args: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of `huntaze ARGS`.

    CPU time shows the cost apart from other load on a shared machine.
    """
    exe = shutil.which("huntaze", path=str(Path(sys.executable).parent)) or "huntaze"
    walls, cpus = [], []
    for _ in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([exe, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls[1:]), statistics.median(cpus[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data_dir = HERE / ".data" / "optimize"
    build_ledger(args.events, data_dir, extra=["--experiment", "bench"])
    env = _env(data_dir)
    config = data_dir / "config.toml"
    config.write_text(CONFIG)
    env["HUNTAZE_CONFIG"] = str(config)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")
    for name, command in (
        ("costs optimize --json", ["costs", "optimize", "--json"]),
        ("experiments report bench --json", ["experiments", "report", "bench", "--json"]),
    ):
        wall_s, cpu_s = wall_and_cpu(command, env, args.runs)
        line(f"{name} ({args.events:,} events), wall", wall_s, TARGET_S)
        line(f"{name} ({args.events:,} events), CPU", cpu_s, TARGET_S)


if __name__ == "__main__":
    main()
