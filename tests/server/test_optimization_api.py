"""Optimization routes answer the same JSON as their commands."""

from __future__ import annotations

from collections.abc import Callable

from tests.costs.test_optimize_interfaces import seed_short_outputs
from tests.helpers import run
from tests.server.conftest import Served


def test_http_answers_the_same_json_as_the_cli(serve: Callable[..., Served]) -> None:
    seed_short_outputs()
    client = serve(worker=False).client()
    http = client.get("/api/v2/costs/optimize", params={"days": "7"})
    assert http.status_code == 200
    cli = run("costs", "optimize", "--days", "7", "--json").json()
    body = http.json()
    body.pop("generated_at"), cli.pop("generated_at")
    assert body == cli
    assert client.get("/api/v2/costs/optimize", params={"days": "0"}).status_code == 422
