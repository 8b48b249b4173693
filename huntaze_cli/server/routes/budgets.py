"""GET /api/v2/costs/budgets: the same JSON as `huntaze budgets list --json`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from huntaze_cli.budgets.report import BudgetList
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.server.routes import ERRORS, JSON, CurrentRuntime, Tenant
from huntaze_cli.services.budgets import list_budgets

router = APIRouter(tags=["budgets"])


@router.get("/api/v2/costs/budgets", response_model=BudgetList, responses=ERRORS)
def budgets_list(runtime: CurrentRuntime, tenant: Tenant) -> Response:
    """Every budget in its current period: spent, reserved, remaining and state (a
    tenant token: the budgets scoped to its tenant only)."""
    return Response(dump_json(list_budgets(runtime.http, tenant=tenant)), media_type=JSON)
