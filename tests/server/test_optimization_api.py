"""Optimization routes answer the same JSON as their commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.costs.test_optimize_interfaces import seed_short_outputs
from tests.helpers import run
from tests.server.conftest import Served, campaign, wait_for


def test_http_answers_the_same_json_as_the_cli(serve: Callable[..., Served]) -> None:
    seed_short_outputs()
    client = serve(worker=False).client()
    # serve finishes the seeded campaign's one pending message: compare once its cost
    # event is in the ledger, or the two answers could straddle that write.
    wait_for(lambda: len(run("costs", "export").stdout.splitlines()) == 121)
    http = client.get("/api/v2/costs/optimize", params={"days": "7"})
    assert http.status_code == 200
    cli = run("costs", "optimize", "--days", "7", "--json").json()
    body = http.json()
    body.pop("generated_at"), cli.pop("generated_at")
    assert body == cli
    assert client.get("/api/v2/costs/optimize", params={"days": "0"}).status_code == 422


def test_experiment_and_roi_routes_answer_like_the_cli(
    serve: Callable[..., Served], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[experiments.mini]\nscope = { account = "creator_t" }\n'
        'arms = { control = {}, cheaper = { model = "gpt-4o-mini" } }\n'
    )
    monkeypatch.setenv("HUNTAZE_CONFIG", str(config))
    client = serve(worker=False).client()
    cid = client.post("/api/v2/campaigns/hybrid", json=campaign(40, model="gpt-4o")).json()[
        "campaign_id"
    ]
    # Generation done and every cost event written.
    wait_for(lambda: sum(a["attempts"] for a in report(client)["arms"]) == 40)
    http = report(client)
    assert sum(a["messages"] for a in http["arms"]) == 40
    assert http == run("experiments", "report", "mini", "--json").json()
    assert client.get("/api/v2/experiments/nope").status_code == 404
    outcomes = tmp_path / "o.csv"
    outcomes.write_text(f"campaign_id,recipient_id,revenue_usd,converted\n{cid},fan_1,9.5,true\n")
    assert run("campaigns", "outcomes", "import", str(outcomes)).exit_code == 0
    roi = client.get("/api/v2/costs/roi")
    assert roi.status_code == 200
    cli = run("costs", "roi", "--json").json()
    body = roi.json()
    body.pop("generated_at"), cli.pop("generated_at")
    assert body == cli
    assert body["campaigns"][0]["campaign_id"] == cid
    assert body["campaigns"][0]["revenue_usd"] == 9.5
    assert client.get("/api/v2/costs/roi", params={"campaign": "nope"}).status_code == 404


def report(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/api/v2/experiments/mini")
    assert response.status_code == 200
    return response.json()
