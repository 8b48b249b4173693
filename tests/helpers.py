"""Helpers shared by tests: run the CLI in-process and parse its JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from typer.testing import CliRunner

from huntaze_cli.cli import app
from huntaze_cli.models import CostEvent


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Run:
    """Invoke `huntaze ARGS` in-process with separate stdout and stderr."""
    runner = CliRunner()
    result = runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def assert_gives_up_quickly(client: Any) -> None:
    """A boto3 client that fails within seconds on an unreachable endpoint: a short connect
    timeout and at most three tries in all (what make_client sets), not boto3's default
    60 s timeouts over more retries."""
    config = client.meta.config
    assert config.connect_timeout <= 3, config.connect_timeout
    assert config.retries["total_max_attempts"] <= 3, config.retries


def make_event(n: int, **overrides: Any) -> CostEvent:
    """A valid cost event; ``n`` makes the attempt id unique."""
    data: dict[str, Any] = {
        "attempt_id": f"att-{n}",
        "request_id": f"req-{n}",
        "ts": datetime.now(UTC) - timedelta(minutes=1),
        "provider": "azure",
        "deployment": "gpt4o-mini-prod",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "cached_input_tokens": 0,
        "output_tokens": 50,
        "cost_nano": 45_000,
        "priced": True,
        "latency_ms": 120.0,
        "status": "ok",
        "route_reason": "priority",
        "campaign_id": "cmp-1",
        "account": "creator_1",
        "tenant": "agency_a",
    }
    data.update(overrides)
    return CostEvent.model_validate(data)
