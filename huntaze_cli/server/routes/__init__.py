"""The daemon's routes, one module per area; each answers what the matching command's
``--json`` prints, by calling the same application service (``huntaze_cli.services``).

| route | service | CLI |
| --- | --- | --- |
| POST /api/v2/campaigns/hybrid | campaigns.start, campaigns.generate | send-campaign --no-wait |
| GET /api/v2/campaigns/status | campaigns.report / campaigns.overview | status [ID] |
| GET /api/v2/campaigns/detail | campaigns.detail | (the dashboard's drill-down) |
| POST /api/v2/campaigns/{id}/requeue | campaigns.requeue | requeue ID |
| GET /api/health/hybrid-orchestrator | health.check_health | health |
| GET /api/v2/costs/breakdown | costs.breakdown | costs breakdown |
| GET /api/v2/costs/stats | costs.stats (cached 1 s) | costs stats |
| GET /api/v2/costs/forecast | costs.forecast | costs forecast |
| GET /api/v2/costs/anomalies | costs.anomalies | costs anomalies |
| GET /api/v2/costs/compare | costs.compare | costs compare |
| GET /api/v2/costs/report | costs.finance_report, render_report | costs report |
| GET /api/v2/costs/optimize | optimization.optimize_report | costs optimize |
| GET /api/v2/costs/roi | optimization.roi | costs roi |
| GET /api/v2/costs/invoice | invoices.invoice | costs invoice |
| GET /api/v2/experiments/{name} | optimization.experiment_report | experiments report NAME |
| GET, PUT, DELETE /api/v2/costs/thresholds[/{name}] | alerts.*_rule(s) | thresholds ... |
| GET /api/v2/costs/alerts, POST .../{id}/ack | alerts.history, ack | alerts list/ack |
| GET /metrics | Metrics.exposition | |
| GET /dashboard[/campaigns[/{id}], /costs, /alerts, /export] | the routes' services, as HTML | |
| POST /v1/chat/completions, GET /v1/models | gateway.chat_completion, gateway.models | |

A new area (thresholds, alerts, forecast, budgets, dashboard, the /v1 gateway) is a new
module here with a ``router``, listed in ``ROUTERS``.

Every route says whose data it answers (``server.auth``): it takes ``tenant: Tenant``
(None for the admin) and passes it to its service as ``tenant=``, or it declares
``dependencies=[AdminOnly]`` when it has no tenant view (403 for a tenant token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from huntaze_cli.server.auth import require_admin, tenant_scope
from huntaze_cli.server.runtime import Runtime

if TYPE_CHECKING:
    from fastapi import APIRouter

JSON = "application/json"


class ErrorDetail(BaseModel):
    """The body of every error that is not a list of field errors."""

    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "missing or wrong bearer token"},
    403: {"model": ErrorDetail, "description": "a tenant token asked for more than its own"},
    503: {"model": ErrorDetail, "description": "a backend (ledger, queue, store) failed"},
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


CurrentRuntime = Annotated[Runtime, Depends(_runtime)]
# The tenant whose data a request may see; None for the admin (or no token configured).
Tenant = Annotated[str | None, Depends(tenant_scope)]
# For routes with no per-tenant view: a tenant token gets 403.
AdminOnly = Depends(require_admin)


def routers() -> list[APIRouter]:
    from huntaze_cli.server.routes import (
        alerts,
        budgets,
        campaigns,
        costs,
        dashboard,
        health,
        invoices,
        metrics,
        optimization,
        reports,
        v1,
    )

    return [
        campaigns.router,
        health.router,
        costs.router,
        reports.router,
        invoices.router,
        alerts.router,
        budgets.router,
        optimization.router,
        metrics.router,
        dashboard.router,
        v1.router,
    ]
