"""A hard budget pauses a campaign (exit 3, paused_budget, the rest pending) and a worker
finishes it once the limit is raised: nothing lost, nothing generated twice. `serve`
logs such a pause as a warning, not as a failed generation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_campaigns_cli import FAST, write_campaign
from tests.helpers import run
from tests.server.conftest import Served, campaign, wait_for


def budget_env(limit: str) -> dict[str, str]:
    rule = {"name": "tight", "scope": {"tenant": "agency_t"}, "limit_usd": limit}
    return {**FAST, "HUNTAZE_BUDGETS__RULES": json.dumps([rule])}


def test_a_hard_budget_pauses_then_a_raised_limit_resumes(tmp_path: Path) -> None:
    campaign = write_campaign(tmp_path, 12)
    # The simulated provider is priced as gpt-4o-mini: a 40-token answer's worst case is
    # about 30 000 nano-dollars, so $0.0001 holds three calls at once.
    first = run("send-campaign", str(campaign), "--no-wait", "--json", env=budget_env("0.0001"))
    assert first.exit_code == 3, first.stderr
    assert "budget 'tight' has no room" in first.stderr
    report = first.json()
    assert report["state"] == "paused_budget"
    assert report["paused_by"] == "tight"
    counts = report["counts"]
    assert 0 < counts["pending"] < 12
    assert counts["generated"] + counts["queued"] == 12 - counts["pending"]
    assert counts["dead"] == 0

    status = run("status", report["campaign_id"], "--json", env=budget_env("0.0001"))
    assert status.json()["state"] == "paused_budget"
    assert status.json()["paused_by"] == "tight"
    listed = run("budgets", "list", "--json", env=budget_env("0.0001")).json()
    (tight,) = listed["budgets"]
    assert tight["state"] in ("soft", "hard") and tight["reserved_nano"] == 0
    assert tight["spent_nano"] == run("costs", "stats", "--json").json()["today"]["cost_nano"]

    # Still no room: the worker tries, the campaign stays paused, nothing is lost.
    again = run("worker", "--once", "--json", env=budget_env("0.0001"))
    assert again.exit_code == 0, again.stderr
    assert run("status", report["campaign_id"], "--json").json()["state"] == "paused_budget"

    resumed = run("worker", "--once", "--json", env=budget_env("1"))
    assert resumed.exit_code == 0, resumed.stderr
    final = run("status", report["campaign_id"], "--json", env=budget_env("1")).json()
    assert final["state"] != "paused_budget" and final["paused_by"] is None
    assert final["counts"]["pending"] == 0 and final["counts"]["dead"] == 0
    # One provider call per message, whatever the pauses: none written twice.
    assert run("costs", "stats", "--json").json()["today"]["requests"] == 12


PAUSED = "campaign generation paused by its budget"


def test_serve_logs_a_budget_pause_as_a_warning_not_an_error(
    serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]
) -> None:
    client = serve(worker=False, env=budget_env("0.0001")).client()
    response = client.post("/api/v2/campaigns/hybrid", json=campaign(12))
    assert response.status_code == 202, response.text
    cid = response.json()["campaign_id"]

    def paused() -> bool:
        got = client.get("/api/v2/campaigns/status", params={"campaign_id": cid})
        return bool(got.json()["state"] == "paused_budget")

    wait_for(paused, timeout=20)

    def pause_logged() -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
        logged.extend(line for line in lines if line.get("campaign_id") == cid)
        return [line for line in logged if line["msg"] == PAUSED]

    logged: list[dict[str, Any]] = []
    (pause,) = wait_for(pause_logged, timeout=10)
    assert pause["level"] == "warning" and pause["budget"] == "tight"
    assert "has no room" in pause["error"] and "traceback" not in pause
    assert not [line for line in logged if line["level"] == "error"]
