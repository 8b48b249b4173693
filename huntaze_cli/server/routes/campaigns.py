"""POST /api/v2/campaigns/hybrid, GET /api/v2/campaigns/status and /detail, and
POST /api/v2/campaigns/{id}/requeue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from huntaze_cli.campaigns.detail import CampaignDetail
from huntaze_cli.campaigns.file import CampaignSpec, LoadedCampaign
from huntaze_cli.errors import InputError
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.models import CampaignReport, RequeueReport, StatusOverview
from huntaze_cli.server.errors import body_error
from huntaze_cli.server.routes import (
    ERRORS,
    JSON,
    AdminOnly,
    CurrentRuntime,
    ErrorDetail,
    Tenant,
)
from huntaze_cli.services import Services, campaigns

router = APIRouter(tags=["campaigns"])


class CampaignBody(CampaignSpec):
    """A campaign POSTed to the daemon: the campaign file's keys, recipients inline.

    ``recipients_file`` is refused: the daemon must not read paths a client names.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "November PPV",
                    "account": "creator_123",
                    "tenant": "agency_a",
                    "prompt": "Write a two-line thank-you to {name}, who loves {interest}.",
                    "max_tokens": 120,
                    "recipients": [
                        {"id": "fan_1", "name": "Alex", "interest": "cosplay"},
                        {"id": "fan_2", "name": "Sam", "interest": "hiking"},
                    ],
                }
            ]
        }
    )

    recipients: list[dict[str, Any]] = Field(
        ...,
        min_length=1,
        description="one object per fan: a unique `id` plus every {field} the prompt uses",
    )

    @field_validator("recipients_file")
    @classmethod
    def _no_local_files(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("not accepted over HTTP (the daemon reads no local files); "
                             "send the recipients inline")  # fmt: skip
        return value

    @model_validator(mode="before")
    @classmethod
    def _utf8_text(cls, data: Any) -> Any:
        # JSON may carry lone surrogates ("\ud800"); no store or sink could encode them.
        _check_utf8(data)
        return data


def _check_utf8(node: Any) -> None:
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text is not valid Unicode (a lone surrogate)") from None
    elif isinstance(node, dict):
        for key, value in node.items():
            _check_utf8(key)
            _check_utf8(value)
    elif isinstance(node, list):
        for value in node:
            _check_utf8(value)


@router.post(
    "/api/v2/campaigns/hybrid",
    status_code=202,
    response_model=CampaignReport,
    responses={
        **ERRORS,
        409: {"model": ErrorDetail, "description": "Idempotency-Key used by another tenant"},
        413: {"model": ErrorDetail, "description": "body too large"},
    },
)
async def create_campaign(
    runtime: CurrentRuntime,
    tenant: Tenant,
    body: CampaignBody,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=256,
            description="a repeat with the same key answers the existing campaign "
            "(and resumes its generation) instead of creating another",
        ),
    ] = None,
) -> Response:
    """Store a campaign, generate its messages in the background, then deliver them.

    Answers 202 at once with the campaign as `huntaze status ID --json` shows it;
    poll the status route to follow it. Same as `huntaze send-campaign --no-wait`.
    A tenant token's campaign is its tenant's, whatever `tenant` the body names.
    """
    loaded = LoadedCampaign(body, Path.cwd(), "body")  # recipients are inline

    def start(services: Services) -> tuple[CampaignReport, bool]:
        started = campaigns.start(services, loaded, idempotency_key=idempotency_key, tenant=tenant)
        report = campaigns.report(
            services, started.campaign.id, resumed=started.resumed, tenant=tenant
        )
        return report, started.generate

    try:
        report, generate = await runtime.on_store(start)
    except InputError as exc:
        raise body_error(exc, CampaignBody) from None
    if generate:
        runtime.schedule_generation(report.campaign_id)
    return Response(dump_json(report), status_code=202, media_type=JSON)


@router.get(
    "/api/v2/campaigns/status",
    response_model=CampaignReport | StatusOverview,
    responses={**ERRORS, 404: {"model": ErrorDetail, "description": "unknown campaign"}},
)
async def campaign_status(
    runtime: CurrentRuntime,
    tenant: Tenant,
    campaign_id: Annotated[
        str | None, Query(min_length=1, max_length=512, description="omit for recent ones")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="how many recent ones")] = 20,
) -> Response:
    """One campaign in detail, or recent campaigns with queue depth per account; a
    tenant token sees its own campaigns (another tenant's is 404)."""

    def status(services: Services) -> BaseModel:
        if campaign_id is None:
            return campaigns.overview(services, limit=limit, tenant=tenant)
        return campaigns.report(services, campaign_id, tenant=tenant)

    return Response(dump_json(await runtime.on_store(status)), media_type=JSON)


_404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "unknown campaign"}
}


@router.get("/api/v2/campaigns/detail", response_model=CampaignDetail, responses={**ERRORS, **_404})
async def campaign_detail(
    runtime: CurrentRuntime,
    tenant: Tenant,
    campaign_id: Annotated[str, Query(min_length=1, max_length=512)],
    limit: Annotated[int, Query(ge=1, le=1000, description="dead letters shown")] = 50,
) -> Response:
    """One campaign in depth: message states, cost, failures, fallbacks and latency per
    provider, and its dead letters with their last error (the dashboard's drill-down).
    A tenant token sees its own campaigns (another tenant's is 404)."""

    def detail(services: Services) -> BaseModel:
        return campaigns.detail(services, campaign_id, limit=limit, tenant=tenant)

    return Response(dump_json(await runtime.on_store(detail)), media_type=JSON)


@router.post(
    "/api/v2/campaigns/{campaign_id}/requeue",
    response_model=RequeueReport,
    responses={**ERRORS, **_404},
    dependencies=[AdminOnly],
)
async def requeue_campaign(runtime: CurrentRuntime, campaign_id: str) -> Response:
    """Retry the campaign's dead messages; same as `huntaze requeue CAMPAIGN_ID --json`.
    Admin token only (a tenant token gets 403).

    Delivery dead letters go back in the queue (the daemon's worker delivers them);
    messages whose generation gave up are written again by the daemon.
    """

    def requeue(services: Services) -> RequeueReport:
        return campaigns.requeue(services, campaign_id)

    report = await runtime.on_store(requeue)
    if report.regenerate:
        runtime.schedule_generation(campaign_id)
    return Response(dump_json(report), media_type=JSON)
