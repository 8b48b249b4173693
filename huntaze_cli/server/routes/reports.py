"""GET /api/v2/costs/compare and /api/v2/costs/report: period comparison and the finance
report, the same documents as `costs compare --json` and `costs report`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from huntaze_cli.costs.compare import CompareReport
from huntaze_cli.costs.finance import FinanceReport
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.server.routes import ERRORS, JSON, CurrentRuntime, ErrorDetail, Tenant
from huntaze_cli.services import costs

router = APIRouter(tags=["costs"])

_422: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorDetail, "description": "invalid parameter"}
}
MEDIA = {"json": JSON, "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@router.get("/api/v2/costs/compare", response_model=CompareReport, responses={**ERRORS, **_422})
def costs_compare(
    runtime: CurrentRuntime,
    tenant: Tenant,
    by: Annotated[
        list[str] | None,
        Query(description="provider|model|account|campaign|tenant|day; repeat to nest"),
    ] = None,
    a_since: Annotated[
        str | None, Query(description="start of period a (default: this UTC month)")
    ] = None,
    a_until: Annotated[str | None, Query(description="end of a; a date is inclusive")] = None,
    b_since: Annotated[
        str | None,
        Query(description="start of period b (default: the period before a, or last month)"),
    ] = None,
    b_until: Annotated[str | None, Query(description="end of b; a date is inclusive")] = None,
) -> Response:
    """Cost per group in period a against period b: ``delta = a - b``, ``delta_pct`` in
    percent of b (null when b cost nothing). Same JSON as `huntaze costs compare --json`."""
    report = costs.compare(
        runtime.http,
        by=by,
        a_since=a_since,
        a_until=a_until,
        b_since=b_since,
        b_until=b_until,
        tenant=tenant,
    )
    return Response(dump_json(report), media_type=JSON)


def report_response(report: FinanceReport, fmt: str) -> Response:
    """The report as a download (CSV, PDF) or a JSON body; the dashboard's export too."""
    body = costs.render_report(report, fmt)
    headers = {}
    if fmt != "json":
        name = f"huntaze-costs-{report.since.date()}-{report.until.date()}.{fmt}"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(body, media_type=MEDIA[fmt], headers=headers)


@router.get(
    "/api/v2/costs/report",
    response_model=FinanceReport,
    responses={
        **ERRORS,
        **_422,
        200: {"content": {"text/csv": {}, "application/pdf": {}}, "description": "the report"},
    },
)
def costs_report(
    runtime: CurrentRuntime,
    tenant: Tenant,
    since: Annotated[str | None, Query(description="YYYY-MM-DD or ISO-8601 time")] = None,
    until: Annotated[str | None, Query(description="a date is inclusive")] = None,
    format: Annotated[Literal["json", "csv", "pdf"], Query()] = "json",
) -> Response:
    """The finance report: total, spend per day, breakdowns by provider, model, tenant and
    campaign, and the previous period of equal length; same as `huntaze costs report`."""
    report = costs.finance_report(runtime.http, since=since, until=until, tenant=tenant)
    return report_response(report, format)
