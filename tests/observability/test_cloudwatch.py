"""CloudWatch cost metrics through moto, from a real SQLite ledger."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import boto3
import pytest
from moto import mock_aws
from moto.cloudwatch.models import MetricDatum, cloudwatch_backends
from moto.core import DEFAULT_ACCOUNT_ID

from huntaze_cli.alerts.thresholds import evaluate_thresholds, publish_cloudwatch
from huntaze_cli.config import Config
from huntaze_cli.costs.cloudwatch import publish_costs
from huntaze_cli.errors import BackendError
from huntaze_cli.models import CostEvent
from huntaze_cli.money import usd_to_nano
from huntaze_cli.observability.cloudwatch import MAX_DATUMS_PER_REQUEST
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

REGION = "us-west-2"
NAMESPACE = "HuntazeTest"
# Yesterday at noon UTC: in the past, and the same UTC day whatever the hour of the run.
NOW = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SQLiteLedger]:
    with SQLiteLedger(tmp_path / "ledger.db") as opened:
        yield opened


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def put_calls() -> Iterator[list[int]]:
    """Datums per PutMetricData request, seen through botocore's own event hooks."""
    calls: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        calls.append(len(params["MetricData"]))

    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("provide-client-params.cloudwatch.PutMetricData", count)
    yield calls
    boto3.DEFAULT_SESSION = None


def config(**metrics: Any) -> Config:
    return Config.model_validate(
        {
            "metrics": {"cloudwatch": True, "namespace": NAMESPACE, "region": REGION} | metrics,
            "thresholds": {"timezone": "UTC"},
        }
    )


def record(
    ledger: SQLiteLedger, ts: datetime, cost_usd: str, provider: str, status: str = "ok"
) -> None:
    event = CostEvent(
        attempt_id=uuid4().hex,
        request_id=uuid4().hex,
        ts=ts,
        provider=provider,
        model="gpt-4o-mini",
        cost_nano=usd_to_nano(cost_usd),
        status=status,
    )
    assert ledger.record([event]).stored == 1


def published() -> dict[tuple[str, str | None], float]:
    """Every datum moto stored, keyed by (metric, provider or None for the total)."""
    # Read from moto's backend: moto's GetMetricData folds every dimension set into a
    # query without dimensions, so the provider-less totals cannot be read back apart.
    backend = cloudwatch_backends[DEFAULT_ACCOUNT_ID][REGION]
    found: dict[tuple[str, str | None], float] = {}
    for datum in backend.metric_data:
        assert isinstance(datum, MetricDatum) and datum.namespace == NAMESPACE
        dims = {d.name: d.value for d in datum.dimensions}
        key = (datum.name, dims.get("Provider"))
        assert key not in found, f"{key} published twice"
        found[key] = datum.value
    return found


def test_exact_dollar_values_per_provider_and_in_total(aws: Any, ledger: SQLiteLedger) -> None:
    month_start = NOW.replace(day=1, hour=0)
    record(ledger, NOW - timedelta(hours=2), "1.234567891", "azure")
    record(ledger, NOW - timedelta(hours=1), "0.000000123", "azure", status="error")
    record(ledger, NOW - timedelta(minutes=5), "2.5", "openai")
    earlier = NOW - timedelta(days=1)
    if earlier >= month_start:  # earlier this month: month-to-date only
        record(ledger, earlier, "10.000000001", "openai")
        record(ledger, earlier, "3", "simulated")
    count = publish_costs(config(), ledger, now=NOW)

    data = published()
    has_earlier = earlier >= month_start
    assert count == len(data) == (12 if has_earlier else 8) + 2
    assert data[("DailyCostUSD", "azure")] == float(Decimal("1.234568014"))
    assert data[("DailyCostUSD", "openai")] == 2.5
    assert data[("DailyCostUSD", None)] == float(Decimal("3.734568014"))
    assert data[("Requests", "azure")] == 2 and data[("Errors", "azure")] == 1
    assert data[("Requests", "openai")] == 1 and data[("Errors", "openai")] == 0
    if has_earlier:
        assert data[("MonthToDateCostUSD", "openai")] == float(Decimal("12.500000001"))
        assert data[("DailyCostUSD", "simulated")] == 0.0
        assert data[("MonthToDateCostUSD", "simulated")] == 3.0
        assert data[("MonthToDateCostUSD", None)] == float(Decimal("16.734568015"))
    else:
        assert data[("MonthToDateCostUSD", None)] == float(Decimal("3.734568014"))

    # Through the public API too: one provider's daily cost at the run's timestamp.
    stats = aws.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="DailyCostUSD",
        Dimensions=[{"Name": "Provider", "Value": "azure"}],
        StartTime=NOW - timedelta(minutes=5),
        EndTime=NOW + timedelta(minutes=5),
        Period=60,
        Statistics=["Maximum"],
    )
    [point] = stats["Datapoints"]
    assert point["Maximum"] == float(Decimal("1.234568014"))


def test_an_empty_ledger_still_publishes_zero_totals(aws: Any, ledger: SQLiteLedger) -> None:
    assert publish_costs(config(), ledger, now=NOW) == 2
    assert published() == {("DailyCostUSD", None): 0.0, ("MonthToDateCostUSD", None): 0.0}


def test_more_than_a_request_of_datums_is_split(
    aws: Any, ledger: SQLiteLedger, put_calls: list[int]
) -> None:
    providers = [f"p{i:03d}" for i in range(251)]  # 4 datums each, plus 2 totals: 1006
    ledger.record(
        [
            CostEvent(
                attempt_id=uuid4().hex,
                request_id=uuid4().hex,
                ts=NOW - timedelta(minutes=30),
                provider=name,
                model="m",
                cost_nano=1_000 + i,
            )
            for i, name in enumerate(providers)
        ]
    )
    assert publish_costs(config(), ledger, now=NOW) == 1006
    assert put_calls == [MAX_DATUMS_PER_REQUEST, 6]
    data = published()
    assert len(data) == 1006
    assert data[("DailyCostUSD", "p250")] == float(Decimal("0.000001250"))
    assert data[("DailyCostUSD", None)] == float(Decimal(sum(range(1_000, 1_251))).scaleb(-9))


def test_a_smaller_chunk_size_sends_more_requests(
    aws: Any, ledger: SQLiteLedger, put_calls: list[int]
) -> None:
    record(ledger, NOW, "1", "azure")
    record(ledger, NOW, "2", "openai")
    assert publish_costs(config(), ledger, now=NOW, chunk_size=4) == 10
    assert put_calls == [4, 4, 2]
    assert len(published()) == 10
    with pytest.raises(ValueError, match="chunk_size"):
        publish_costs(config(), ledger, now=NOW, chunk_size=MAX_DATUMS_PER_REQUEST + 1)


def test_an_unreachable_endpoint_is_a_backend_error(
    ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(BackendError) as caught:
        publish_costs(config(), ledger, now=NOW)
    message = str(caught.value)
    assert message.startswith(f"CloudWatch metrics to namespace {NAMESPACE} in {REGION} failed")
    assert f"127.0.0.1:{port}" in message and "\n" not in message


def test_a_refused_request_is_a_backend_error(aws: Any, ledger: SQLiteLedger) -> None:
    record(ledger, NOW, "1", "azure")
    # Config validation refuses an empty namespace; CloudWatch refusing one must still
    # come back as a one-line BackendError.
    refused = config()
    refused.metrics.namespace = ""
    with pytest.raises(BackendError, match=f"namespace  in {REGION} failed: .*Namespace"):
        publish_costs(refused, ledger, now=NOW)


def test_publish_cloudwatch_follows_the_config_and_fills_the_report(
    aws: Any, ledger: SQLiteLedger
) -> None:
    record(ledger, NOW, "60", "azure")
    off = Config.model_validate({"metrics": {"region": REGION}})
    report = evaluate_thresholds(off, ledger, now=NOW, send_alerts=False)
    assert publish_cloudwatch(off, ledger, report) is None
    assert report.cloudwatch_published is None
    assert published() == {}

    on = config()
    report = evaluate_thresholds(on, ledger, now=NOW, send_alerts=False)
    assert publish_cloudwatch(on, ledger, report) == 6
    assert report.cloudwatch_published == 6
    assert report.model_dump(mode="json")["cloudwatch_published"] == 6


def test_a_cloudwatch_failure_leaves_the_evaluation_intact(
    ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(ledger, NOW, "60", "azure")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    report = evaluate_thresholds(config(), ledger, now=NOW, send_alerts=False)
    with pytest.raises(BackendError):
        publish_cloudwatch(config(), ledger, report)
    assert report.breached and report.cloudwatch_published is None


def test_orchestrator_publishes_call_metrics_batched_off_the_request_path(
    aws: Any, tmp_path: Path, put_calls: list[int]
) -> None:
    import asyncio

    from huntaze_cli.llm.orchestrator import Orchestrator
    from huntaze_cli.llm.types import GenerationRequest, Message

    config = Config.model_validate(
        {
            "ledger": {"path": str(tmp_path / "l.db")},
            "metrics": {"cloudwatch": True, "namespace": NAMESPACE, "region": REGION},
        }
    )

    async def scenario() -> Orchestrator:
        orch = Orchestrator.from_config(config, ledger=None)
        assert orch.cloudwatch is not None
        for n in range(5):
            await orch.generate(
                GenerationRequest(f"r{n}", "gpt-4o-mini", [Message("user", "hello there")])
            )
        assert put_calls == []  # nothing sent while generating
        await orch.aclose()
        return orch

    orch = asyncio.run(scenario())
    assert put_calls == [4]  # one batched request at close: 4 datums for one provider/model
    assert orch.cloudwatch is not None and orch.cloudwatch.published == 4
    now = datetime.now(UTC)
    stats = aws.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="LLMRequests",
        Dimensions=[
            {"Name": "Provider", "Value": "simulated"},
            {"Name": "Model", "Value": "gpt-4o-mini"},
        ],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(point["Sum"] for point in stats["Datapoints"]) == 5


def test_a_cloudwatch_failure_never_fails_a_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huntaze_cli.observability.cloudwatch import CallMetricsPublisher

    warnings: list[str] = []
    config = Config.model_validate(
        {"metrics": {"cloudwatch": True, "namespace": NAMESPACE, "region": REGION}}
    )
    publisher = CallMetricsPublisher(config, warn=warnings.append)
    publisher.observe("azure", "gpt-4o", latency_ms=12.5, cost_nano=10, failed=False)
    # No moto here and an unreachable endpoint: the put fails, is reported, and dropped.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert publisher.flush() == 0
    assert warnings and "CloudWatch" in warnings[0]
    assert publisher.flush() == 0  # the failed batch was dropped, not retried forever
