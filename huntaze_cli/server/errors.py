"""The one map from errors and outcomes to HTTP statuses (CONTRACT.md, "HTTP API").

Errors of the HuntazeError tree become ``{"detail": message}`` with the status below,
parameters named as their query fields; an ``InputError`` about the request body
becomes FastAPI's usual 422 list of field errors, located by the error's ``field``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from huntaze_cli.errors import (
    AlertError,
    BackendError,
    BudgetExceeded,
    ConfigError,
    ConflictError,
    DeliveryError,
    ForbiddenError,
    HuntazeError,
    InputError,
    NotFoundError,
    ProviderError,
    UsageError,
)
from huntaze_cli.server.asgi import log

if TYPE_CHECKING:
    from pydantic import BaseModel

# Most specific first; anything else in the tree (ConfigError included) is a 500.
_STATUS: tuple[tuple[type[HuntazeError], int], ...] = (
    (ConflictError, 409),
    (ForbiddenError, 403),
    (UsageError, 422),
    (InputError, 422),
    (NotFoundError, 404),
    (BackendError, 503),
    (ProviderError, 502),
    (DeliveryError, 502),
    (AlertError, 502),
    (BudgetExceeded, 429),
)


def status_for(exc: HuntazeError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def health_status(status: str) -> int:
    """200 healthy or degraded (another provider serves), 503 unhealthy."""
    return 503 if status == "unhealthy" else 200


# The /v1 gateway answers in OpenAI's error shape, ``{"error": {message, type, code}}``.
# Why the last attempt of a failed completion failed -> (status, type, code).
_GATEWAY: dict[str, tuple[int, str, str]] = {
    "rate_limited": (429, "rate_limit_error", "rate_limit_exceeded"),
    "content_filter": (400, "invalid_request_error", "content_filter"),
    "bad_request": (400, "invalid_request_error", "invalid_request"),
    "auth": (502, "api_error", "upstream_auth_failed"),
    "circuit_open": (503, "api_error", "providers_unavailable"),
}
_GATEWAY_OTHER = (502, "api_error", "upstream_failed")


def gateway_error(exc: HuntazeError) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI-shaped body for an error of a /v1 request.

    400 for a body that cannot be routed, 404 for a model no provider serves, 429 when
    the last provider tried was rate limited or a budget in scope is full
    (``budget_exceeded``), the upstream's own 4xx status when it
    refused the request, 502 when every attempt failed, 503 when no provider could be
    tried at all (circuits open, none configured). Messages are the scrubbed ones of
    the HuntazeError tree: never a key.
    """
    from huntaze_cli.llm.orchestrator import GenerationFailed

    param: str | None = exc.field
    if isinstance(exc, InputError):
        status, type_, code = 400, "invalid_request_error", "invalid_value"
    elif isinstance(exc, NotFoundError):
        status, type_, code = 404, "invalid_request_error", "model_not_found"
    elif isinstance(exc, GenerationFailed):
        status, type_, code = _GATEWAY.get(exc.kind, _GATEWAY_OTHER)
        upstream = exc.status
        if exc.kind == "bad_request" and upstream is not None and 400 <= upstream < 500:
            status = upstream
            if upstream == 404:
                code = "model_not_found"
    elif isinstance(exc, BudgetExceeded):
        # OpenAI answers a spent quota with 429 too; the code names our cause.
        status, type_, code = 429, "insufficient_quota", "budget_exceeded"
    elif isinstance(exc, ConfigError):
        status, type_, code = 503, "api_error", "no_provider_configured"
    else:
        status = status_for(exc)
        type_ = "invalid_request_error" if status < 500 else "api_error"
        code = "internal_error" if status >= 500 else "invalid_request"
    error = {"message": exc.message, "type": type_, "param": param, "code": code}
    return status, {"error": error}


def body_error(exc: InputError, body: type[BaseModel]) -> RequestValidationError:
    """A core InputError about the body as FastAPI's field-error list."""
    loc: list[str] = ["body"]
    if exc.field is not None and exc.field in body.model_fields:
        loc.append(exc.field)
    return RequestValidationError([{"loc": loc, "msg": exc.message, "type": "value_error"}])


async def _huntaze_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HuntazeError)  # registered for HuntazeError only
    status = status_for(exc)
    if status >= 500:
        log.warning(
            "request failed",
            extra={"path": request.url.path, "status": status, "error": exc.message},
        )
    return JSONResponse({"detail": exc.message}, status_code=status)


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 field errors, with any echoed input made encodable.

    The default handler echoes the input, and a lone surrogate in it ("\\ud800", valid
    JSON but not UTF-8) made the 422 itself fail with a 500.
    """
    from fastapi.encoders import jsonable_encoder

    assert isinstance(exc, RequestValidationError)
    detail = _encodable(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": detail}, status_code=422)


def _encodable(node: Any) -> Any:
    if isinstance(node, str):
        return node.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(node, dict):
        return {_encodable(k): _encodable(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_encodable(v) for v in node]
    return node


def install(app: FastAPI) -> None:
    """Answer every HuntazeError a route raises through the map above, and field errors."""
    app.add_exception_handler(HuntazeError, _huntaze_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
