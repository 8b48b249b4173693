"""With every provider's circuit open, a campaign stops at once, resumable, saying why."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from huntaze_cli.config import load_config
from huntaze_testing.fake_llm import FakeLLM
from tests.helpers import run

DEAD_URL = "http://127.0.0.1:9/v1"  # the discard port: connection refused


def _setup(tmp_path: Path, count: int) -> tuple[Path, Path]:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[providers.openai]\nkind = "openai"\nbase_url = "{DEAD_URL}"\n'
        "[routing]\ncircuit_failure_threshold = 3\ncircuit_cooldown_s = 600\nconcurrency = 4\n"
    )
    campaign = tmp_path / "campaign.json"
    campaign.write_text(
        json.dumps(
            {
                "name": "down",
                "account": "a",
                "prompt": "Hi {name}",
                "recipients": [{"id": f"f{n}", "name": f"N{n}"} for n in range(count)],
            }
        )
    )
    return config, campaign


def test_unreachable_provider_fails_fast_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    config, campaign = _setup(tmp_path, 200)
    env = {"OPENAI_API_KEY": "sk-test"}
    result = run(
        "--config", str(config), "send-campaign", str(campaign), "--no-wait", "--json", env=env
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)  # the campaign, with why it stopped
    assert "every provider's circuit is open" in report["error"] and DEAD_URL in report["error"]
    assert report["state"] == "generating"
    assert f"`huntaze resume {report['campaign_id']}`" in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1
    assert "every provider's circuit is open" in error[0]
    assert "openai: connection" in error[0] and DEAD_URL in error[0]
    # Stopped calling: a few attempts per concurrent slot, not 200 x max_attempts.
    stats = run("--config", str(config), "costs", "stats", "--json", env=env).json()
    assert stats["today"]["requests"] <= 3 * 4 + 4
    with sqlite3.connect(load_config(config).campaigns_path) as conn:
        states = dict(conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state"))
    assert states.get("pending", 0) >= 200 - stats["today"]["requests"]
    assert not states.get("queued") and not states.get("sent")


@pytest.mark.slow
def test_generation_failures_show_in_status_while_generating(tmp_path: Path) -> None:
    with FakeLLM(openai_keys=["sk-st"], latency_ms=40) as fake:
        fake.set_mix("*", {"400": 1.0})  # every message fails for good, one attempt each
        config, campaign = _setup(tmp_path, 200)
        config.write_text(
            f'[providers.openai]\nkind = "openai"\nbase_url = "{fake.openai_base_url}"\n'
            "[routing]\nconcurrency = 2\n"
        )
        env = {**os.environ, "OPENAI_API_KEY": "sk-st"}
        args = ["--config", str(config), "send-campaign", str(campaign), "--no-wait"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "huntaze_cli", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        seen_while_generating = False
        while proc.poll() is None and not seen_while_generating:
            time.sleep(0.2)
            overview = run("--config", str(config), "status", "--json", env={"OPENAI_API_KEY": "x"})
            for c in overview.json()["campaigns"] if overview.exit_code == 0 else []:
                if c["state"] == "generating" and c["counts"]["dead"] > 0:
                    seen_while_generating = True
        _, stderr = proc.communicate(timeout=60)
        assert seen_while_generating, stderr
