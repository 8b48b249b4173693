"""`huntaze health --deep` probe_ms against the upstream's own latency.

    python bench/health_probe.py                 # fake upstream at 20 ms, 3 runs

Starts the fake OpenAI/Azure upstream (huntaze_testing.fake_llm) with a fixed latency,
configures both providers against it, and runs the installed `huntaze health --deep
--json` in a subprocess several times. Printed: each provider's probe_ms and its ratio
to the upstream latency. The probe should report the round trip a generation sees, so
the ratio should sit near 1 (loopback HTTP and the SDK's own parsing add a few ms); it
was 49x (~980 ms at 20 ms) when the probe timed the SDK's set-up and imports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from huntaze_testing.fake_llm import FakeLLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    huntaze = shutil.which("huntaze") or str(Path(sys.executable).with_name("huntaze"))
    with FakeLLM(openai_keys=["k1"], azure_keys=["k2"], latency_ms=args.latency_ms) as fake:
        root = Path(tempfile.mkdtemp(prefix="huntaze-bench-"))
        config = root / "config.toml"
        config.write_text(
            f'[providers.azure]\nkind = "azure"\nendpoint = "{fake.azure_endpoint}"\n'
            f'[providers.openai]\nkind = "openai"\nbase_url = "{fake.openai_base_url}"\n'
        )
        env = {
            **os.environ,
            "OPENAI_API_KEY": "k1",
            "AZURE_OPENAI_API_KEY": "k2",
            "XDG_DATA_HOME": str(root),
            "XDG_CONFIG_HOME": str(root),
        }
        print(f"upstream latency {args.latency_ms:.0f} ms")
        for run in range(1, args.runs + 1):
            out = subprocess.run(
                [huntaze, "--config", str(config), "health", "--deep", "--json"],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            providers = json.loads(out.stdout)["providers"]
            figures = ", ".join(
                f"{name} {p['probe_ms']:.1f} ms ({p['probe_ms'] / args.latency_ms:.2f} x)"
                for name, p in providers.items()
            )
            print(f"run {run}: {figures}")


if __name__ == "__main__":
    main()
