"""Metrics to Amazon CloudWatch: cost gauges (``build_datums``) and call metrics.

Metrics, in ``[metrics] namespace``, each a gauge stamped with the time of the run:

* ``DailyCostUSD`` and ``MonthToDateCostUSD`` per ``Provider`` and once without a
  dimension (the total over every provider);
* ``Requests`` and ``Errors`` today per ``Provider`` (unit Count).

"Today" and "this month" are counted in ``[thresholds] timezone``, like the thresholds
they are meant to be alarmed on. Dollar values are floats made from the exact nano-dollar
sums at the very end. boto3 is imported only when publishing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from huntaze_cli.clock import SYSTEM_CLOCK
from huntaze_cli.config import Config
from huntaze_cli.errors import BackendError
from huntaze_cli.money import nano_to_decimal
from huntaze_cli.storage.ledger import Counters
from huntaze_cli.text import one_line

# PutMetricData accepts at most 1,000 datums per request.
MAX_DATUMS_PER_REQUEST = 1000

Datum = dict[str, Any]


def build_datums(
    today: dict[str, Counters], month_to_date: dict[str, Counters], *, timestamp: datetime
) -> list[Datum]:
    """The MetricData entries for today's and this month's spend per provider."""
    datums: list[Datum] = []
    for provider in sorted(month_to_date.keys() | today.keys()):
        daily = today.get(provider, Counters())
        monthly = month_to_date.get(provider, Counters())
        dims = [{"Name": "Provider", "Value": provider}]
        datums += [
            _datum("DailyCostUSD", _usd(daily.cost_nano), "None", timestamp, dims),
            _datum("MonthToDateCostUSD", _usd(monthly.cost_nano), "None", timestamp, dims),
            _datum("Requests", float(daily.requests), "Count", timestamp, dims),
            _datum("Errors", float(daily.errors), "Count", timestamp, dims),
        ]
    day_total = sum(c.cost_nano for c in today.values())
    month_total = sum(c.cost_nano for c in month_to_date.values())
    datums += [
        _datum("DailyCostUSD", _usd(day_total), "None", timestamp, []),
        _datum("MonthToDateCostUSD", _usd(month_total), "None", timestamp, []),
    ]
    return datums


def _usd(nano: int) -> float:
    # The nearest float to the exact amount: no rounding beyond the float itself.
    return float(nano_to_decimal(nano))


def _datum(
    name: str, value: float, unit: str, timestamp: datetime, dims: list[dict[str, str]]
) -> Datum:
    datum: Datum = {"MetricName": name, "Value": value, "Unit": unit, "Timestamp": timestamp}
    if dims:
        datum["Dimensions"] = dims
    return datum


def _chunks(datums: Sequence[Datum], size: int) -> Iterator[Sequence[Datum]]:
    for start in range(0, len(datums), size):
        yield datums[start : start + size]


def put_datums(config: Config, datums: Sequence[Datum], chunk_size: int) -> None:
    """PutMetricData in chunks of ``chunk_size``; BackendError naming namespace and region."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

    namespace = config.metrics.namespace
    region = config.metrics.region or "the default region"
    published = 0
    try:
        client = boto3.client("cloudwatch", region_name=config.metrics.region)
        region = client.meta.region_name or region
        for chunk in _chunks(datums, chunk_size):
            client.put_metric_data(Namespace=namespace, MetricData=list(chunk))
            published += len(chunk)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        raise BackendError(_failure(namespace, region, published, len(datums), detail)) from None
    except NoRegionError:
        raise BackendError(
            f"CloudWatch metrics to namespace {namespace} not published: no AWS region; "
            "set [metrics] region or AWS_DEFAULT_REGION"
        ) from None
    except BotoCoreError as exc:
        raise BackendError(_failure(namespace, region, published, len(datums), str(exc))) from None


def _failure(namespace: str, region: str, published: int, total: int, detail: str) -> str:
    done = f" after {published} of {total} datums" if published else ""
    where = f"CloudWatch metrics to namespace {namespace} in {region}"
    return f"{where} failed{done}: {one_line(detail)}"


class CallMetricsPublisher:
    """Orchestrator figures per provider and model, batched to CloudWatch off the hot path.

    ``observe`` only adds to in-memory totals (no I/O); ``flush`` sends what accumulated
    since the last flush as ``LLMRequests``, ``LLMFailures``, ``LLMCostUSD`` and a
    ``LLMLatency`` statistic set (milliseconds), dimensions ``Provider`` and ``Model``.
    The orchestrator flushes every ``interval_s`` in a worker thread and on close; a
    failed put is reported to ``warn`` and dropped, never raised into a generation.
    """

    def __init__(
        self,
        config: Config,
        *,
        interval_s: float = 60.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.interval_s = interval_s
        self._warn = warn
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], list[float]] = {}
        self.published = 0

    def observe(
        self, provider: str, model: str, *, latency_ms: float, cost_nano: int, failed: bool
    ) -> None:
        with self._lock:
            entry = self._totals.get((provider, model))
            if entry is None:
                # requests, failures, cost nano, latency count, sum, min, max
                entry = self._totals[(provider, model)] = [0, 0, 0, 0, 0.0, latency_ms, latency_ms]
            entry[0] += 1
            entry[1] += failed
            entry[2] += cost_nano
            entry[3] += 1
            entry[4] += latency_ms
            entry[5] = min(entry[5], latency_ms)
            entry[6] = max(entry[6], latency_ms)

    def flush(self) -> int:
        """Send and forget what accumulated; returns the datums published (0 on failure)."""
        with self._lock:
            totals, self._totals = self._totals, {}
        if not totals:
            return 0
        now = SYSTEM_CLOCK.now()
        datums: list[Datum] = []
        for (provider, model), (requests, failures, nano, count, total, low, high) in sorted(
            totals.items()
        ):
            dims = [{"Name": "Provider", "Value": provider}, {"Name": "Model", "Value": model}]
            datums += [
                _datum("LLMRequests", float(requests), "Count", now, dims),
                _datum("LLMFailures", float(failures), "Count", now, dims),
                _datum("LLMCostUSD", _usd(int(nano)), "None", now, dims),
                {
                    "MetricName": "LLMLatency",
                    "Unit": "Milliseconds",
                    "Timestamp": now,
                    "Dimensions": dims,
                    "StatisticValues": {
                        "SampleCount": float(count),
                        "Sum": total,
                        "Minimum": low,
                        "Maximum": high,
                    },
                },
            ]
        try:
            put_datums(self.config, datums, MAX_DATUMS_PER_REQUEST)
        except BackendError as exc:
            if self._warn:
                self._warn(exc.message)
            return 0
        self.published += len(datums)
        return len(datums)
