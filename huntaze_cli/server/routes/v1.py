"""POST /v1/chat/completions and GET /v1/models: the OpenAI-compatible gateway.

Any OpenAI SDK pointed at ``http://host:8787/v1`` is routed by the daemon's orchestrator
(``services.gateway``). A non-streaming answer is the upstream's body as it came; a
stream is forwarded event by event (SSE, OpenAI's chunks, the usage chunk last). Either
way the response headers say who served it: ``X-Huntaze-Provider``, and for a complete
answer ``X-Huntaze-Cost-Usd`` (a stream's cost is known only at its end: it is in the
ledger). Errors are OpenAI's ``{"error": {message, type, param, code}}``, statuses from
``server.errors.gateway_error``.

The hot path stays lean: ``POST /v1/chat/completions`` is answered by ``direct`` straight
from the app's front door (``server.asgi.Guard``, which has authenticated the caller and
read the body), not through FastAPI's routing and dependencies; the FastAPI route below
answers the same through ``answer`` (the schema, and a request Guard does not divert).
The body is parsed once with ``json``, no model is built of it or of the answer, the
upstream clients are the orchestrator's pooled ones, and cost events go to its
batching ledger writer (written off the loop).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from huntaze_cli.errors import HuntazeError, InputError
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.money import nano_to_decimal
from huntaze_cli.server.auth import tenant_scope
from huntaze_cli.server.errors import gateway_error

if TYPE_CHECKING:
    from huntaze_cli.llm.types import GenerationResult, RecordedStream
    from huntaze_cli.server.asgi import Receive, Scope, Send
    from huntaze_cli.server.auth import Principal
    from huntaze_cli.server.runtime import Runtime

router = APIRouter(tags=["gateway"])

JSON = "application/json"
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _tenant(request: Request) -> str:
    """The tenant the request's attempts are booked to: its token's (the admin's, or
    no token at all, books to ``default``, the tenant of untagged spend)."""
    return tenant_scope(request) or "default"


def error_response(exc: HuntazeError) -> Response:
    status, body = gateway_error(exc)
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return Response(dump_json(body), status_code=status, media_type=JSON, headers=headers)


@router.post(
    "/v1/chat/completions",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["model", "messages"],
                        "properties": {
                            "model": {"type": "string"},
                            "messages": {"type": "array", "items": {"type": "object"}},
                            "stream": {"type": "boolean"},
                        },
                        "additionalProperties": True,
                    },
                    "example": {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": "Hi!"}],
                    },
                }
            },
        }
    },
    responses={
        200: {"description": "a chat.completion, or an SSE stream of chat.completion.chunk"},
        400: {"description": "invalid request (OpenAI error body)"},
        404: {"description": "no configured provider serves the model"},
        429: {"description": "rate limited upstream, or a budget's hard limit"},
        502: {"description": "every attempt failed"},
        503: {"description": "no provider could be tried"},
    },
)
async def chat_completions(request: Request) -> Response:
    """One chat completion through the orchestrator: OpenAI's request and answer."""
    headers = request.headers
    return await answer(
        request.app.state.runtime,
        await request.body(),
        tenant=_tenant(request),
        account=headers.get("x-huntaze-account"),
        campaign=headers.get("x-huntaze-campaign"),
    )


async def direct(scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    """``POST /v1/chat/completions`` as ``Guard`` hands it over (``asgi.DirectRoute``)."""
    from huntaze_cli.server.asgi import header

    principal: Principal = scope["huntaze.principal"]
    response = await answer(
        scope["app"].state.runtime,
        body,
        tenant=principal.tenant or "default",
        account=header(scope, b"x-huntaze-account"),
        campaign=header(scope, b"x-huntaze-campaign"),
    )
    await response(scope, receive, send)


async def answer(
    runtime: Runtime, raw: bytes, *, tenant: str, account: str | None, campaign: str | None
) -> Response:
    """The response to a chat-completions body booked to ``tenant``: the upstream's
    answer, its stream, or an error in OpenAI's shape."""
    from huntaze_cli.services import gateway

    try:
        body = json.loads(raw)
    except ValueError:
        return error_response(InputError("the request body is not valid JSON"))
    try:
        assert runtime.generator is not None
        result = await gateway.chat_completion(
            runtime.generator, body, tenant=tenant, account=account, campaign=campaign
        )
    except HuntazeError as exc:
        return error_response(exc)
    if result.stream is not None:
        return EventStream(result.stream, headers={"x-huntaze-provider": result.provider})
    assert result.raw is not None
    return Response(result.raw, media_type=JSON, headers=_served_headers(result))


def _served_headers(result: GenerationResult) -> dict[str, str]:
    headers = {"x-huntaze-provider": result.provider}
    if result.priced:
        headers["x-huntaze-cost-usd"] = format(nano_to_decimal(result.cost_nano), "f")
    return headers


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    """The models routable with the configured providers and deployments."""
    from huntaze_cli.services import gateway

    runtime: Runtime = request.app.state.runtime
    assert runtime.generator is not None
    return Response(dump_json(gateway.models(runtime.generator)), media_type=JSON)


class EventStream(Response):
    """An SSE response that forwards a pass-through stream and notices a hang-up at once.

    The stream is pumped to the client while the request's ``receive`` is watched; a
    disconnect cancels the pump and closes the stream, which closes the upstream
    connection (cancelling the call) and records the attempt. A stream that breaks
    after its first event ends with an ``{"error": ...}`` event, as OpenAI's does.
    """

    media_type = "text/event-stream"

    def __init__(self, stream: RecordedStream, *, headers: dict[str, str]) -> None:
        # Not Response.__init__: it would declare a Content-Length for the empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in {
                "content-type": "text/event-stream; charset=utf-8",
                **_SSE_HEADERS,
                **headers,
            }.items()
        ]
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        events: AsyncIterator[bytes] = aiter(self.stream)
        try:
            # The upstream's first events are read already: they go out from here, with
            # no task switch before the first byte (at 32 streams a switch waits for
            # every other ready callback of the loop).
            finished = await self._pump(send, events, pieces=1)
        except BaseException:
            await self.stream.aclose()
            raise
        if finished:
            await self.stream.aclose()
            return
        pump = asyncio.ensure_future(self._pump(send, events))
        watch = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
            await self.stream.aclose()
        if not pump.cancelled() and pump.exception() is not None:
            raise pump.exception()  # type: ignore[misc]  # Guard logs it

    @staticmethod
    async def _pump(send: Send, events: AsyncIterator[bytes], pieces: int | None = None) -> bool:
        """Forward the events (at most ``pieces`` of them); True once the response ended."""
        from huntaze_cli.llm.types import ProviderFailure

        try:
            async for event in events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
                if pieces is not None:
                    pieces -= 1
                    if not pieces:
                        return False
        except ProviderFailure as failure:
            error = {"message": failure.message, "type": "api_error", "code": failure.kind}
            event = b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True


async def _disconnect(receive: Receive) -> None:
    while True:
        message: dict[str, Any] = dict(await receive())
        if message["type"] == "http.disconnect":
            return
