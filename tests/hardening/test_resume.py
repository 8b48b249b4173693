"""Every campaign can finish by its id: resume, orphan pickup by worker, requeue of both deads."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from huntaze_cli.config import load_config
from huntaze_testing.fake_llm import FakeLLM
from tests.helpers import run

FAST = {"HUNTAZE_RATE_LIMIT__PER_SECONDS": "1", "HUNTAZE_RATE_LIMIT__MESSAGES": "1000"}


def _campaign(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "campaign.json"
    path.write_text(
        json.dumps(
            {
                "name": "resume me",
                "account": "acct_r",
                "prompt": "Hi {name}",
                "recipients": [{"id": f"f{n}", "name": f"N{n}"} for n in range(count)],
            }
        )
    )
    return path


def _stored_then_died(tmp_path: Path, count: int) -> str:
    """A campaign stored whose process then died before generating (kill -9, a failure
    right after storing): every message pending, the lease lapsed."""
    from huntaze_cli.campaigns.file import load_campaign
    from huntaze_cli.services import Services, campaigns

    services = Services()
    try:
        started = campaigns.start(services, load_campaign(str(_campaign(tmp_path, count))),
                                  idempotency_key=None)  # fmt: skip
    finally:
        services.close()
    with sqlite3.connect(load_config().campaigns_path) as conn:
        conn.execute(
            "UPDATE generation_leases SET until = '2000-01-01T00:00:00+00:00' "
            "WHERE campaign_id = ?",
            (started.campaign.id,),
        )
    return started.campaign.id


def test_resume_finishes_a_campaign_without_an_idempotency_key(tmp_path: Path) -> None:
    campaign_id = _stored_then_died(tmp_path, 20)
    status = run("status", campaign_id, "--json").json()
    assert status["state"] == "generating" and status["counts"]["pending"] == 20
    result = run("resume", campaign_id, "--json", env=FAST)
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["state"] == "completed" and report["counts"]["sent"] == 20
    assert report["resumed"] is True
    assert run("resume", "cmp_nope").exit_code == 1


def test_worker_once_picks_up_an_orphaned_generation(tmp_path: Path) -> None:
    campaign_id = _stored_then_died(tmp_path, 12)
    worker = run("worker", "--once", "--json", env=FAST)
    assert worker.exit_code == 0, worker.stderr
    assert "finished generating campaign" in worker.stderr
    final = run("status", campaign_id, "--json").json()
    assert final["counts"]["pending"] == 0 and final["counts"]["sent"] == 12
    assert final["state"] == "completed"


def test_a_live_generation_is_not_taken_over(tmp_path: Path) -> None:
    campaign_id = _stored_then_died(tmp_path, 6)
    until = "9999-01-01T00:00:00+00:00"
    with sqlite3.connect(load_config().campaigns_path) as conn:
        conn.execute(
            "UPDATE generation_leases SET owner = 'otherhost:1:abc', until = ? "
            "WHERE campaign_id = ?",
            (until, campaign_id),
        )
    assert run("worker", "--once", env=FAST).exit_code == 0
    assert run("status", campaign_id, "--json").json()["counts"]["pending"] == 6


def test_requeue_retries_generation_failures_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeLLM(openai_keys=["sk-rq"]) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-rq")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
        fake.set_mix("*", {"400": 1.0})
        first = run("send-campaign", str(_campaign(tmp_path, 3)), "--json", env=FAST)
        assert first.exit_code == 1
        campaign_id = first.json()["campaign_id"]
        assert first.json()["counts"]["dead"] == 3
        fake.clear_faults()
        requeued = run("requeue", campaign_id, "--json", env=FAST)
        assert requeued.json() == {"campaign_id": campaign_id, "requeued": 0, "regenerate": 3}
        said = run("requeue", campaign_id, env=FAST).stdout
        assert "dead in delivery" in said and "dead in generation" in said
        worker = run("worker", "--once", "--json", env=FAST)
        assert worker.exit_code == 0, worker.stderr
        final = run("status", campaign_id, "--json").json()
        assert final["counts"]["sent"] == 3 and final["state"] == "completed"


@pytest.mark.slow
def test_ctrl_c_during_generation_says_how_to_finish(tmp_path: Path) -> None:
    with FakeLLM(openai_keys=["sk-int"], latency_ms=200) as fake:
        env = {
            **os.environ,
            **FAST,
            "OPENAI_API_KEY": "sk-int",
            "OPENAI_BASE_URL": fake.openai_base_url,
            "HUNTAZE_ROUTING__CONCURRENCY": "2",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "huntaze_cli", "send-campaign", str(_campaign(tmp_path, 60))],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while fake.count("openai") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        line = next(x for x in stderr.splitlines() if x.startswith("interrupted:"))
        assert "`huntaze resume cmp_" in line
        campaign_id = line.split("`huntaze resume ")[1].split("`")[0]
        pending = run("status", campaign_id, "--json").json()["counts"]["pending"]
        assert pending > 0
        result = run("resume", campaign_id, "--json", env={k: env[k] for k in env if k[:1] != "_"})
        assert result.exit_code == 0, result.stderr
        assert result.json()["counts"]["sent"] == 60


@pytest.mark.slow
def test_resume_waits_for_a_live_generation_and_takes_over_when_it_lapses(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime, timedelta

    campaign_id = _stored_then_died(tmp_path, 5)
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    with sqlite3.connect(load_config().campaigns_path) as conn:
        conn.execute(
            "UPDATE generation_leases SET owner = 'otherhost:1:abc', until = ? "
            "WHERE campaign_id = ?",
            (soon, campaign_id),
        )
    done = subprocess.run(
        [sys.executable, "-m", "huntaze_cli", "resume", campaign_id, "--json"],
        env={**os.environ, **FAST},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["sent"] == 5
