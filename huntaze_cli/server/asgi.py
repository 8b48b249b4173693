"""The daemon's front door: JSON logs, bearer-token auth, the body limit, the last-resort 500.

``Guard`` is one plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs a task
and a stream per request, which shows at 1,000 req/s) wrapped around the FastAPI app. For
each HTTP request, in this order:

1. starts the clock and, once the response is done, writes one JSON access-log line
   (method, path without the query, status, duration_ms, client) — never a header, so a
   token cannot reach the log;
2. when a token is configured, answers 401 to any ``/api``, ``/metrics`` or ``/v1`` request whose
   ``Authorization: Bearer`` matches no token (``server.auth.Tokens.authenticate``),
   before reading the body, and hands the principal it found to the app's dependency
   (``server.auth.current_principal``); ``/openapi.json`` and ``/docs`` stay open (they
   describe the API, hold no data);
3. answers 413 to a body over ``[server] max_body_bytes``, by its Content-Length or by
   counting a streamed (chunked) body, which is read here and replayed to the app;
4. turns any exception that escaped the app into ``500 {"detail": "internal error"}``
   and one log line, so no traceback ever reaches a client.

A request for one of the ``direct`` routes (method and path) then goes straight to its
handler with the body read here, instead of through FastAPI's routing, dependency
solving and exception middleware: that path costs more CPU than the whole /v1 gateway
call it leads to. The FastAPI route of the same path stays (the schema, and every other
method); the handler answers what it would, the principal found here (step 2) being
the one the app's dependency would have resolved.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huntaze_cli.server.auth import Tokens

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# A route Guard answers itself: the request's scope, its whole body, receive, send.
DirectRoute = Callable[[Scope, bytes, Receive, Send], Awaitable[None]]

log = logging.getLogger("huntaze.server")
access = logging.getLogger("huntaze.access")

PROTECTED = ("/api/", "/metrics", "/v1/")
# The OpenAI-compatible routes answer errors in OpenAI's shape, which its SDKs read.
_OPENAI_401 = {
    "error": {
        "message": "missing or wrong API key (Authorization: Bearer <token>)",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


# --- logging ---------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and key not in ("color_message", "message"):
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it per test)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # a closed or broken stderr must never fail a request
            self.handleError(record)


def configure_logging(level: str) -> None:
    """JSON lines on stderr: the daemon's and uvicorn's loggers at ``level``, and the
    core's warnings and errors (``huntaze.*`` such as ``huntaze.alerts``, the modules'
    own ``huntaze_cli.*``), so no line of the daemon's log is plain text."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    for name, propagate in (
        ("huntaze.server", False),
        ("huntaze.access", False),
        ("uvicorn", False),
        ("uvicorn.error", False),
        # The parents of everything else (their warnings and errors: the level stays the
        # root's). They keep propagating to the root, which has no handler in the daemon
        # (so nothing is written twice) and where a host application or a test listens.
        ("huntaze", True),
        ("huntaze_cli", True),
    ):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        if not propagate:
            logger.setLevel(level.upper())
            logger.propagate = False
    # uvicorn's own access log is replaced by ours (JSON, one line, duration included).
    logging.getLogger("uvicorn.access").disabled = True


# --- the middleware --------------------------------------------------------------------


class Guard:
    """Access log, auth, body limit and last-resort error handling around the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Callable[[], Tokens],
        max_body: Callable[[], int],
        direct: Mapping[tuple[str, str], DirectRoute] | None = None,
    ) -> None:
        self.app = app
        self.direct = dict(direct or {})
        # Callables, so a SIGHUP reload of the config applies to the next request.
        self.tokens = tokens
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 0}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, tracking_send)
        except Exception as exc:
            log.error(
                "unhandled error in a request",
                exc_info=exc,
                extra={"method": scope["method"], "path": scope["path"]},
            )
            if not state["status"]:
                await _send_json(tracking_send, 500, {"detail": "internal error"})
        finally:
            if access.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": state["status"],
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "client": f"{client[0]}:{client[1]}" if client else None,
                    },
                )

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith(PROTECTED):
            principal = self.tokens().authenticate(header(scope, b"authorization"))
            # The key the app's dependency (server.auth.current_principal) reads.
            scope["huntaze.principal"] = principal
        else:
            principal = None
        if scope["path"].startswith(PROTECTED) and principal is None:
            await _send_json(
                send,
                401,
                _OPENAI_401
                if scope["path"].startswith("/v1/")
                else {"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"},
                headers=[(b"www-authenticate", b"Bearer")],
            )
            return
        limit = self.max_body()
        length = header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                return
            if int(length) > limit:
                await _too_large(send, limit)
                return
        elif scope["method"] in _BODYLESS and header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, limit)
        if body is None:
            await _too_large(send, limit)
            return
        direct = self.direct.get((scope["method"], scope["path"]))
        if direct is not None and principal is not None:
            await direct(scope, body, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1")).strip()
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect as usual

    return replay


async def _too_large(send: Send, limit: int) -> None:
    await _send_json(
        send,
        413,
        {"detail": f"request body larger than {limit:,} bytes ([server] max_body_bytes)"},
        headers=[(b"connection", b"close")],
    )


async def _send_json(
    send: Send, status: int, content: Any, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
