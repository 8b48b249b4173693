"""GET /api/v2/costs/invoice: a tenant's monthly invoice, as `huntaze costs invoice`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from huntaze_cli.costs.invoice import Invoice, render_invoice
from huntaze_cli.server.routes import ERRORS, CurrentRuntime, ErrorDetail, Tenant
from huntaze_cli.server.routes.reports import MEDIA
from huntaze_cli.services import invoices

router = APIRouter(tags=["costs"])


@router.get(
    "/api/v2/costs/invoice",
    response_model=Invoice,
    responses={
        **ERRORS,
        404: {"model": ErrorDetail, "description": "another tenant's invoice"},
        422: {"model": ErrorDetail, "description": "invalid parameter"},
        200: {"content": {"text/csv": {}, "application/pdf": {}}, "description": "the invoice"},
    },
)
def costs_invoice(
    runtime: CurrentRuntime,
    scope: Tenant,
    month: Annotated[str, Query(description="YYYY-MM, or last (the month before this one)")],
    tenant: Annotated[
        str | None, Query(description="the tenant (a tenant token: its own, the default)")
    ] = None,
    format: Annotated[Literal["json", "csv", "pdf"], Query()] = "json",
) -> Response:
    """A tenant's invoice for a month: lines per provider and model, subtotal, markup,
    total; same JSON as `huntaze costs invoice --json`. A tenant token gets only its own."""
    bill = invoices.invoice(runtime.http, tenant=tenant, month=month, scope=scope)
    headers = {}
    if format != "json":
        name = f"{bill.tenant}-{bill.month}.{format}"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(render_invoice(bill, format), media_type=MEDIA[format], headers=headers)
