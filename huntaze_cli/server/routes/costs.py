"""GET /api/v2/costs/breakdown, forecast, anomalies and stats: the `costs` reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from huntaze_cli.costs.anomaly_report import AnomalyReport
from huntaze_cli.costs.forecast_report import ForecastReport
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.models import BreakdownReport, StatsReport
from huntaze_cli.server.routes import ERRORS, JSON, CurrentRuntime, ErrorDetail, Tenant
from huntaze_cli.services import costs

router = APIRouter(tags=["costs"])


@router.get(
    "/api/v2/costs/breakdown",
    response_model=BreakdownReport,
    responses={**ERRORS, 422: {"model": ErrorDetail, "description": "invalid parameter"}},
)
def costs_breakdown(
    runtime: CurrentRuntime,
    tenant: Tenant,
    by: Annotated[
        list[str] | None,
        Query(description="provider|model|account|campaign|tenant|day; repeat to nest"),
    ] = None,
    since: Annotated[str | None, Query(description="YYYY-MM-DD or ISO-8601 time")] = None,
    until: Annotated[str | None, Query(description="a date is inclusive")] = None,
    days: Annotated[int | None, Query(le=100_000, description="last N UTC days")] = None,
) -> Response:
    """Cost grouped by provider, model, account, campaign, tenant or day (UTC days)."""
    report = costs.breakdown(
        runtime.http, by=by, since=since, until=until, days=days, tenant=tenant
    )
    return Response(dump_json(report), media_type=JSON)


@router.get(
    "/api/v2/costs/forecast",
    response_model=ForecastReport,
    responses={**ERRORS, 422: {"model": ErrorDetail, "description": "invalid parameter"}},
)
def costs_forecast(
    runtime: CurrentRuntime,
    tenant: Tenant,
    by: Annotated[
        str | None, Query(description="also forecast per provider|tenant|account|model")
    ] = None,
    level: Annotated[
        float, Query(description="prediction interval, percent (0 < level < 100)")
    ] = 80.0,
) -> Response:
    """Month-end spend with an interval, the chance of crossing the monthly limit and a
    backtest; same JSON as `huntaze costs forecast --json`."""
    report = costs.forecast(runtime.http, by=by, level=level, tenant=tenant)
    return Response(dump_json(report), media_type=JSON)


@router.get(
    "/api/v2/costs/anomalies",
    response_model=AnomalyReport,
    responses={**ERRORS, 422: {"model": ErrorDetail, "description": "invalid parameter"}},
)
def costs_anomalies(
    runtime: CurrentRuntime,
    tenant: Tenant,
    since: Annotated[
        str | None, Query(description="YYYY-MM-DD or ISO-8601 time; default 7 days ago")
    ] = None,
    by: Annotated[
        list[str] | None,
        Query(description="also per provider|tenant|account|model; repeat for several"),
    ] = None,
) -> Response:
    """Hourly and daily spend spikes against a seasonal baseline; same JSON as
    `huntaze costs anomalies --json`."""
    report = costs.anomalies(runtime.http, since=since, by=by, tenant=tenant)
    return Response(dump_json(report), media_type=JSON)


@router.get("/api/v2/costs/stats", response_model=StatsReport, responses=ERRORS)
async def costs_stats(runtime: CurrentRuntime, tenant: Tenant) -> Response:
    """Last hour, today, yesterday, month to date, per provider; cached for 1 s (the
    admin's; a tenant's own figures are computed per request)."""
    if tenant is None:
        body = await runtime.stats.get(runtime.stats_json)
    else:
        report = await run_in_threadpool(costs.stats, runtime.http, tenant=tenant)
        body = dump_json(report)
    return Response(body, media_type=JSON)
