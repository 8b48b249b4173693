"""Alert rules and history over HTTP: the same JSON as `thresholds` and `alerts` commands.

| route | CLI |
| --- | --- |
| GET /api/v2/costs/thresholds | thresholds list |
| PUT /api/v2/costs/thresholds/{name} | thresholds set NAME |
| DELETE /api/v2/costs/thresholds/{name} | thresholds delete NAME |
| GET /api/v2/costs/alerts | alerts list |
| POST /api/v2/costs/alerts/{alert_id}/ack | alerts ack ALERT_ID |
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from huntaze_cli.errors import InputError
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.models import AckReport, AlertList, RuleChange, ThresholdReport
from huntaze_cli.server.errors import body_error
from huntaze_cli.server.routes import ERRORS, JSON, CurrentRuntime, ErrorDetail, Tenant
from huntaze_cli.services import alerts

router = APIRouter(tags=["alerts"])

RuleName = Annotated[str, Path(description="rule name", max_length=100)]


class RuleBody(BaseModel):
    """A stored rule: the fields of a [[thresholds.rules]] table, without its name."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["spend", "forecast", "anomaly"] = "spend"
    scope: dict[str, str] = Field(default_factory=dict)
    period: Literal["day", "month"] = "day"
    limit_usd: Decimal
    levels: list[int] | None = None
    channels: list[str] | None = None


@router.get("/api/v2/costs/thresholds", response_model=ThresholdReport, responses=ERRORS)
def thresholds_list(runtime: CurrentRuntime, tenant: Tenant) -> Response:
    """Every rule with its spend in its current period; same JSON as `thresholds list`.
    A tenant token sees the rules scoped to its tenant."""
    return Response(dump_json(alerts.list_rules(runtime.http, tenant=tenant)), media_type=JSON)


@router.put(
    "/api/v2/costs/thresholds/{name}",
    response_model=RuleChange,
    responses={
        **ERRORS,
        409: {"model": ErrorDetail, "description": "a config rule of that name exists"},
    },
)
def thresholds_set(
    runtime: CurrentRuntime, tenant: Tenant, name: RuleName, body: RuleBody
) -> Response:
    """Create or replace a stored rule; a config or global rule is 409. A tenant token's
    rule is scoped to its tenant (another tenant in `scope` is 403)."""
    fields: dict[str, Any] = body.model_dump(exclude_none=True)
    try:
        change = alerts.set_rule(runtime.http, name, fields, tenant=tenant)
    except InputError as exc:
        raise body_error(exc, RuleBody) from None
    return Response(dump_json(change), media_type=JSON)


@router.delete(
    "/api/v2/costs/thresholds/{name}",
    response_model=RuleChange,
    responses={
        **ERRORS,
        404: {"model": ErrorDetail, "description": "no stored rule of that name"},
        409: {"model": ErrorDetail, "description": "a config rule cannot be deleted"},
    },
)
def thresholds_delete(runtime: CurrentRuntime, tenant: Tenant, name: RuleName) -> Response:
    """Delete a stored rule; a config rule is 409, an unknown one (or, for a tenant
    token, one not scoped to its tenant) 404."""
    change = alerts.delete_rule(runtime.http, name, tenant=tenant)
    return Response(dump_json(change), media_type=JSON)


@router.get(
    "/api/v2/costs/alerts",
    response_model=AlertList,
    responses={**ERRORS, 422: {"model": ErrorDetail, "description": "invalid parameter"}},
)
def alerts_list(
    runtime: CurrentRuntime,
    scope: Tenant,
    since: Annotated[
        str | None, Query(description="YYYY-MM-DD or ISO-8601; default 7 days")
    ] = None,
    rule: Annotated[str | None, Query(description="only this rule")] = None,
    tenant: Annotated[str | None, Query(description="only rules scoped to this tenant")] = None,
    limit: Annotated[int, Query(description="at most this many, newest first")] = 100,
) -> Response:
    """The alert history, newest first; same JSON as `alerts list --json`. A tenant
    token gets the alerts of rules scoped to its tenant, whatever `tenant` says."""
    if scope is not None:
        tenant = scope
    report = alerts.history(runtime.http, since=since, rule=rule, tenant=tenant, limit=limit)
    return Response(dump_json(report), media_type=JSON)


@router.post(
    "/api/v2/costs/alerts/{alert_id}/ack",
    response_model=AckReport,
    responses={**ERRORS, 404: {"model": ErrorDetail, "description": "no such alert"}},
)
def alerts_ack(
    runtime: CurrentRuntime, tenant: Tenant, alert_id: Annotated[str, Path(max_length=100)]
) -> Response:
    """Mark an alert read (in-app); same JSON as `alerts ack --json`."""
    return Response(dump_json(alerts.ack(runtime.http, alert_id, tenant=tenant)), media_type=JSON)
