"""The HTTP API of `huntaze serve`: the CLI's core functions behind FastAPI routes.

Each route parses its input, calls the same core function as the matching command and
answers the same JSON as that command's ``--json`` (the same pydantic model, dumped by
the same code), so a script can move between the two without noticing. Errors of the
HuntazeError tree become ``{"detail": message}`` with the class's ``http_status`` in one
handler; bad request fields are FastAPI's usual 422 list of field errors.

| route | core | CLI |
| --- | --- | --- |
| POST /api/v2/campaigns/hybrid | start_campaign, generate_campaign | send-campaign --no-wait |
| GET /api/v2/campaigns/status | campaign_report / the status overview | status [ID] |
| GET /api/health/hybrid-orchestrator | check_health | health |
| GET /api/v2/costs/breakdown | breakdown | costs breakdown |
| GET /api/v2/costs/stats | stats (cached 1 s) | costs stats |
| GET /api/v2/costs/forecast | forecast_report | costs forecast |
| GET /api/v2/costs/anomalies | anomaly_report | costs anomalies |
| GET /metrics | Metrics.exposition | |

Authentication, the body limit and the access log live in ``server_asgi.Guard``; the
shared orchestrator, worker and backends in ``server.runtime.Runtime``; starting and
stopping the process in ``server.daemon``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from huntaze_cli import __version__
from huntaze_cli.campaigns.file import CampaignSpec
from huntaze_cli.config import Config
from huntaze_cli.costs.anomaly_report import AnomalyReport
from huntaze_cli.costs.forecast_report import ForecastReport
from huntaze_cli.errors import HuntazeError, InputError, UsageError
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.models import (
    BreakdownReport,
    CampaignReport,
    HealthReport,
    StatsReport,
    StatusOverview,
)
from huntaze_cli.observability.metrics import Metrics
from huntaze_cli.server.asgi import PROTECTED, Guard, log
from huntaze_cli.server.runtime import Runtime

JSON = "application/json"


class ErrorDetail(BaseModel):
    """The body of every error that is not a list of field errors."""

    detail: str


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


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "missing or wrong bearer token"},
    503: {"model": ErrorDetail, "description": "a backend (ledger, queue, store) failed"},
}


def create_app(
    config: Config,
    *,
    worker: bool = True,
    config_path: Path | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The daemon's ASGI app; its lifespan starts and stops the worker and the core."""
    runtime = Runtime(config, config_path=config_path, worker=worker, metrics=metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="huntaze",
        version=__version__,
        summary="AI-written creator message campaigns: hybrid routing, delivery, exact costs.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.add_exception_handler(HuntazeError, _huntaze_error)
    app.add_middleware(
        Guard,
        token=lambda: runtime.token,
        max_body=lambda: runtime.config.server.max_body_bytes,
    )

    @app.post(
        "/api/v2/campaigns/hybrid",
        status_code=202,
        response_model=CampaignReport,
        responses={**_ERRORS, 413: {"model": ErrorDetail, "description": "body too large"}},
        tags=["campaigns"],
    )
    async def create_campaign(
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
        """
        try:
            report, generate = await run_in_threadpool(
                runtime.start_campaign, body, idempotency_key
            )
        except InputError as exc:
            raise _field_error(exc) from None
        if generate:
            runtime.schedule_generation(report.campaign_id)
        return Response(dump_json(report), status_code=202, media_type=JSON)

    @app.get(
        "/api/v2/campaigns/status",
        response_model=CampaignReport | StatusOverview,
        responses={**_ERRORS, 404: {"model": ErrorDetail, "description": "unknown campaign"}},
        tags=["campaigns"],
    )
    def campaign_status(
        campaign_id: Annotated[
            str | None, Query(min_length=1, max_length=512, description="omit for recent ones")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="how many recent ones")] = 20,
    ) -> Response:
        """One campaign in detail, or recent campaigns with queue depth per account."""
        from huntaze_cli.campaigns.generation import campaign_report, status_overview

        with runtime.store_lock:
            if campaign_id is None:
                http = runtime.http
                result: BaseModel = status_overview(
                    runtime.config, http.store(), http.ledger(), http.queue(), limit=limit
                )
            else:
                result = campaign_report(
                    runtime.config, runtime.http.store(), runtime.http.ledger(), campaign_id
                )
        return Response(dump_json(result), media_type=JSON)

    @app.get(
        "/api/health/hybrid-orchestrator",
        response_model=HealthReport,
        responses={401: _ERRORS[401], 503: {"model": HealthReport, "description": "unhealthy"}},
        tags=["health"],
    )
    def health(
        deep: Annotated[bool, Query(description="also send each provider a live probe")] = False,
        timeout: Annotated[float, Query(ge=0.1, le=60, description="seconds per probe")] = 5.0,
    ) -> Response:
        """Config, ledger and each provider; 200 healthy or degraded, 503 unhealthy."""
        from huntaze_cli.services.health import check_health

        report = check_health(
            runtime.config, runtime.http.ledger, deep=deep, probe_timeout_s=timeout
        )
        status = 503 if report.status == "unhealthy" else 200
        return Response(dump_json(report), status_code=status, media_type=JSON)

    @app.get(
        "/api/v2/costs/breakdown",
        response_model=BreakdownReport,
        responses={**_ERRORS, 422: {"model": ErrorDetail, "description": "invalid parameter"}},
        tags=["costs"],
    )
    def costs_breakdown(
        by: Annotated[
            list[str] | None,
            Query(description="provider|model|account|campaign|tenant|day; repeat to nest"),
        ] = None,
        since: Annotated[str | None, Query(description="YYYY-MM-DD or ISO-8601 time")] = None,
        until: Annotated[str | None, Query(description="a date is inclusive")] = None,
        days: Annotated[int | None, Query(le=100_000, description="last N UTC days")] = None,
    ) -> Response:
        """Cost grouped by provider, model, account, campaign, tenant or day (UTC days)."""
        from huntaze_cli.costs.reports import breakdown, time_range, validate_group_by

        keys = validate_group_by(by or [])
        try:
            start, end = time_range(since=since, until=until, days=days, now=datetime.now(UTC))
        except OverflowError:
            raise UsageError("--since/--until: date out of range") from None
        report = breakdown(runtime.http.ledger(), start=start, end=end, group_by=keys)
        return Response(dump_json(report), media_type=JSON)

    @app.get("/api/v2/costs/stats", response_model=StatsReport, responses=_ERRORS, tags=["costs"])
    async def costs_stats() -> Response:
        """Last hour, today, yesterday, month to date, per provider; cached for 1 s."""
        body = await runtime.stats.get(runtime.stats_json)
        return Response(body, media_type=JSON)

    @app.get(
        "/api/v2/costs/forecast",
        response_model=ForecastReport,
        responses={**_ERRORS, 422: {"model": ErrorDetail, "description": "invalid parameter"}},
        tags=["costs"],
    )
    def costs_forecast(
        by: Annotated[
            str | None, Query(description="also forecast per provider|tenant|account|model")
        ] = None,
        level: Annotated[
            float, Query(description="prediction interval, percent (0 < level < 100)")
        ] = 80.0,
    ) -> Response:
        """Month-end spend with an interval, the chance of crossing the monthly limit and a
        backtest; same JSON as `huntaze costs forecast --json`."""
        from huntaze_cli.costs.forecast_report import forecast_report

        report = forecast_report(runtime.config, runtime.http.ledger(), by=by, level_pct=level)
        return Response(dump_json(report), media_type=JSON)

    @app.get(
        "/api/v2/costs/anomalies",
        response_model=AnomalyReport,
        responses={**_ERRORS, 422: {"model": ErrorDetail, "description": "invalid parameter"}},
        tags=["costs"],
    )
    def costs_anomalies(
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
        from huntaze_cli.costs.anomaly_report import anomaly_report, parse_since

        start = parse_since(since, runtime.config.thresholds.tz)
        report = anomaly_report(runtime.config, runtime.http.ledger(), since=start, by=by or [])
        return Response(dump_json(report), media_type=JSON)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, 401: _ERRORS[401]},
        tags=["operations"],
    )
    def metrics_endpoint() -> Response:
        """Prometheus metrics: provider calls, queue depth, deliveries, rate limit, ledger."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(runtime.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _huntaze_error(request: Request, exc: Exception) -> Response:
    """The one mapping of the HuntazeError tree to HTTP: ``http_status`` and the message."""
    assert isinstance(exc, HuntazeError)  # registered for HuntazeError only
    if exc.http_status >= 500:
        log.warning(
            "request failed",
            extra={"path": request.url.path, "status": exc.http_status, "error": exc.message},
        )
    return JSONResponse({"detail": exc.message}, status_code=exc.http_status)


def _field_error(exc: InputError) -> RequestValidationError:
    """A core InputError about the body as FastAPI's field-error list (loc from its text)."""
    message = exc.message.removeprefix("body: ")
    field = message.split(":", 1)[0].split("[", 1)[0].strip()
    loc: list[str] = ["body"]
    if field in CampaignBody.model_fields:
        loc.append(field)
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the bearer scheme on the routes Guard protects."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "required on /api and /metrics when [server] token_env is set",
        }
    }
    for path, operations in schema["paths"].items():
        if path.startswith(PROTECTED):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema
