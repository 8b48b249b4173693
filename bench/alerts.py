"""Alert-rule evaluation benchmark, printed against the target in DESIGN.md.

    python bench/alerts.py                  # 1M-event ledger (built once, cached in bench/.data)
    python bench/alerts.py --events 200000 --rules 1000

Measures the whole-process wall time of `huntaze check-thresholds --no-alert --json` with
``--rules`` rules (a third on tenants, a third on accounts, a third on campaigns, half of
them monthly, levels 50/80/100) over the ledger bench/ledger.py builds. Target: <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ledger import _env, build_ledger, line  # noqa: E402

TARGET_S = 2.0


def write_config(path: Path, rules: int) -> None:
    lines = ["[thresholds]", "daily_usd = 50", "monthly_usd = 1000", ""]
    for n in range(rules):
        key = ("tenant", "account", "campaign")[n % 3]
        value = {
            "tenant": f"agency_{n % 5}",
            "account": f"creator_{n % 40}",
            "campaign": f"cmp-{n % 200}",
        }[key]
        lines += [
            "[[thresholds.rules]]",
            f'name = "rule-{n}"',
            f'scope = {{ {key} = "{value}" }}',
            f'period = "{("day", "month")[n % 2]}"',
            f"limit_usd = {5 + n % 50}",
            "levels = [50, 80, 100]",
            "",
        ]
    path.write_text("\n".join(lines))


def _wall(args: list[str], env: dict[str, str], runs: int) -> float:
    """Median whole-process wall time; exit 3 (a rule breached) is a normal answer."""
    exe = shutil.which("huntaze") or str(Path(sys.executable).parent / "huntaze")
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run([exe, *args], env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        if done.returncode not in (0, 3):
            raise SystemExit(f"huntaze {' '.join(args)} exited {done.returncode}")
    return statistics.median(times[1:])  # the first run warms the page cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data_dir = HERE / ".data" / f"ledger-{args.events}"
    build_ledger(args.events, data_dir)
    env = _env(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        write_config(config, args.rules)
        env["HUNTAZE_CONFIG"] = str(config)
        command = ["check-thresholds", "--no-alert", "--json"]
        out = subprocess.run(
            [sys.executable, "-m", "huntaze_cli", *command], env=env, capture_output=True
        )
        report = json.loads(out.stdout)
        breached = sum(r["breached"] for r in report["thresholds"])
        print(f"{len(report['thresholds'])} rules over {args.events:,} events: {breached} breached")
        took = _wall(command, env, args.runs)
    line(f"check-thresholds, {args.rules} rules, {args.events:,} events", took, TARGET_S)


if __name__ == "__main__":
    main()
