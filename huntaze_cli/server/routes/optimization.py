"""GET /api/v2/costs/optimize, /api/v2/costs/roi and /api/v2/experiments/{name}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from huntaze_cli.costs.experiments import ExperimentReport
from huntaze_cli.costs.recommendations import OptimizeReport
from huntaze_cli.costs.roi import RoiReport
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.server.routes import ERRORS, JSON, CurrentRuntime, ErrorDetail, Tenant
from huntaze_cli.services import optimization

router = APIRouter()
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorDetail, "description": "invalid parameter"}
}


@router.get(
    "/api/v2/costs/optimize",
    response_model=OptimizeReport,
    responses={**ERRORS, **_INVALID},
    tags=["costs"],
)
def costs_optimize(
    runtime: CurrentRuntime,
    tenant: Tenant,
    days: Annotated[int, Query(ge=1, le=400, description="last N UTC days")] = 30,
) -> Response:
    """Recommendations with their monthly saving, evidence and action."""
    report = optimization.optimize_report(
        runtime.http, days=days, lock=runtime.store_lock, tenant=tenant
    )
    return Response(dump_json(report), media_type=JSON)


@router.get(
    "/api/v2/costs/roi",
    response_model=RoiReport,
    responses={**ERRORS, 404: {"model": ErrorDetail, "description": "unknown campaign"}},
    tags=["costs"],
)
def costs_roi(
    runtime: CurrentRuntime,
    tenant: Tenant,
    campaign: Annotated[
        str | None, Query(min_length=1, max_length=256, description="one campaign id")
    ] = None,
) -> Response:
    """Per campaign and arm: cost, revenue, conversions, cost per conversion, ROI %."""
    report = optimization.roi(
        runtime.http, campaign=campaign, lock=runtime.store_lock, tenant=tenant
    )
    return Response(dump_json(report), media_type=JSON)


@router.get(
    "/api/v2/experiments/{name}",
    response_model=ExperimentReport,
    responses={**ERRORS, **_INVALID, 404: {"model": ErrorDetail, "description": "unknown"}},
    tags=["experiments"],
)
def experiment(
    runtime: CurrentRuntime,
    tenant: Tenant,
    name: Annotated[str, Path(min_length=1, max_length=64, description="experiment name")],
    days: Annotated[int, Query(ge=1, le=400, description="last N UTC days")] = 30,
) -> Response:
    """Per arm figures and each difference to the baseline with its 95 % interval."""
    report = optimization.experiment_report(
        runtime.http, name, days=days, lock=runtime.store_lock, tenant=tenant
    )
    return Response(dump_json(report), media_type=JSON)
