"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from huntaze_cli.server.routes import ERRORS, AdminOnly, CurrentRuntime

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, 401: ERRORS[401], 403: ERRORS[403]},
    dependencies=[AdminOnly],  # process-wide counters: no tenant's view of them
)
def metrics_endpoint(runtime: CurrentRuntime) -> Response:
    """Prometheus metrics: provider calls, queue depth, deliveries, rate limit, ledger."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(runtime.metrics_text(), media_type=CONTENT_TYPE_LATEST)
