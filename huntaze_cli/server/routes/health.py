"""GET /api/health/hybrid-orchestrator: the checks of `huntaze health`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from huntaze_cli.errors import ForbiddenError
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.models import HealthReport
from huntaze_cli.server.errors import health_status
from huntaze_cli.server.routes import ERRORS, JSON, CurrentRuntime, Tenant

router = APIRouter(tags=["health"])


@router.get(
    "/api/health/hybrid-orchestrator",
    response_model=HealthReport,
    responses={
        401: ERRORS[401],
        403: ERRORS[403],
        503: {"model": HealthReport, "description": "unhealthy"},
    },
)
def health(
    runtime: CurrentRuntime,
    tenant: Tenant,
    deep: Annotated[bool, Query(description="also send each provider a live probe")] = False,
    timeout: Annotated[float, Query(ge=0.1, le=60, description="seconds per probe")] = 5.0,
) -> Response:
    """Config, ledger and each provider; 200 healthy or degraded, 503 unhealthy.

    Tenant-safe: it reports the daemon, not any tenant's figures; a deep probe (which
    pays for a call to each provider) needs the admin token.
    """
    from huntaze_cli.services.health import check_health

    if deep and tenant is not None:
        raise ForbiddenError("<deep> needs the admin token ([server] token_env)", field="deep")

    http = runtime.http
    report = check_health(http.config(), http.ledger, deep=deep, probe_timeout_s=timeout)
    return Response(dump_json(report), status_code=health_status(report.status), media_type=JSON)
