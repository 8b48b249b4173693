"""The fake server itself: a small asyncio HTTP/1.1 server over the programmable state.

It serves in the current loop (``astart``/``astop``) or on a background thread with its
own loop (``start``/``stop``, or ``with FakeLLM() as srv``). Keep-alive, ``Content-Length``
and chunked request bodies, ``Connection: close``; nothing beyond the standard library, so
it is cheap per request and a benchmark measures the client, not the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

from huntaze_testing.fake_llm.controls import Controls, RecordedRequest
from huntaze_testing.fake_llm.faults import AUTH_MISSING, AUTH_WRONG, INVALID, Outcome
from huntaze_testing.fake_llm.wire import (
    BAD_HTTP,
    azure_error,
    completion_body,
    dumps,
    flat_query,
    missing_key_body,
    openai_error,
    read_chunked,
    response,
    sse_chunk,
    stream_events,
    stream_response,
    validate,
)


class _Cut(bytes):
    """Response bytes after which the connection is closed (a stream cut mid-answer)."""


class _Paced(bytes):
    """A streamed response written piece by piece, ``delay_s`` apart."""

    pieces: list[bytes]
    delay_s: float
    cut: bool


class FakeLLM(Controls):
    """The fake OpenAI / Azure OpenAI server (see the module docstring for the wire contract).

    Constructor arguments:

    * ``host`` / ``port``: where to bind (``127.0.0.1``, 0 = a free port; see ``.port``);
    * ``latency_ms`` / ``jitter_ms``: default latency for every response (the ``(*, *)`` scope);
    * ``openai_keys`` / ``azure_keys``: accepted keys per route; ``None`` accepts any non-empty
      key; a missing or wrong key gets a 401 in the provider's real error shape;
    * ``deployment_models``: Azure deployment -> model name put in responses (default: the
      deployment name itself);
    * ``reply_tokens``: completion tokens of a reply when ``max_tokens`` /
      ``max_completion_tokens`` does not cut it shorter (then ``finish_reason`` is ``length``);
    * ``cache_min_tokens`` / ``cache_block``: ``cached_tokens`` is ``prompt_tokens`` rounded
      down to a multiple of ``cache_block`` once ``prompt_tokens >= cache_min_tokens``, else 0
      (OpenAI's real rule is 1024 / 128; ``1`` / ``1`` makes every prompt token cached);
    * ``timeout_sleep_s``: how long the ``timeout`` fault holds the request before closing;
    * ``max_recorded``: how many requests ``.requests`` keeps (oldest dropped first);
    * ``seed``: seed of the default scope's mix and jitter RNGs.

    Usage is deterministic: ``prompt_tokens = ceil(1.3 * words in all messages)`` (at least 1),
    the reply is ``"Hi"`` followed by the words of the last user message, cycled, one word per
    completion token.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        openai_keys: Iterable[str] | None = None,
        azure_keys: Iterable[str] | None = None,
        deployment_models: Mapping[str, str] | None = None,
        reply_tokens: int = 24,
        cache_min_tokens: int = 1024,
        cache_block: int = 128,
        timeout_sleep_s: float = 30.0,
        max_recorded: int = 10_000,
        seed: int = 0,
    ) -> None:
        super().__init__(
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            openai_keys=openai_keys,
            azure_keys=azure_keys,
            deployment_models=deployment_models,
            reply_tokens=reply_tokens,
            cache_min_tokens=cache_min_tokens,
            cache_block=cache_block,
            timeout_sleep_s=timeout_sleep_s,
            max_recorded=max_recorded,
            seed=seed,
        )
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The bound port (only valid once started)."""
        if self._port is None:
            raise RuntimeError("FakeLLM is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``AsyncOpenAI``: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.base_url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """``azure_endpoint`` for ``AsyncAzureOpenAI``: ``http://127.0.0.1:PORT``."""
        return self.base_url

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Serve on a background thread with its own event loop; returns once bound."""
        if self._thread is not None:
            raise RuntimeError("FakeLLM already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="fake-llm", daemon=True)
        thread.start()
        ready.wait()
        if errors:
            thread.join()
            raise errors[0]
        self._loop = loop
        self._thread = thread
        return self

    def stop(self) -> None:
        """Stop the background server: cancel held requests, close connections, join."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.astop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def astart(self) -> None:
        """Bind and serve in the running event loop (the thread mode calls this too)."""
        self._server = await asyncio.start_server(
            self._on_connection,
            self.host,
            self._requested_port,
            limit=1 << 20,
            backlog=1024,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def astop(self) -> None:
        """Stop serving in the running event loop: close the listener and every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2)

    # ------------------------------------------------------------------ HTTP plumbing

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One client connection: serve requests until close, EOF, or a fault closes it."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._connections_total += 1
        try:
            await self._serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only astop() cancels these tasks; ending normally keeps asyncio's
            # connection callback from logging the cancellation as an error.
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """The HTTP/1.1 request loop of one connection (keep-alive until told otherwise)."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            except asyncio.LimitOverrunError:
                writer.write(response(431, BAD_HTTP, close=True))
                return
            lines = head[:-4].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                writer.write(response(400, BAD_HTTP, close=True))
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            try:
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await read_chunked(reader)
                else:
                    length = int(headers.get("content-length") or 0)
                    body = await reader.readexactly(length) if length > 0 else b""
            except (ValueError, asyncio.LimitOverrunError):
                writer.write(response(400, BAD_HTTP, close=True))
                return
            connection = headers.get("connection", "").lower()
            if version == "HTTP/1.0":
                keep_alive = connection == "keep-alive"
            else:
                keep_alive = connection != "close"
            out = await self._dispatch(method, target, headers, body, keep_alive)
            if out is None:  # timeout / drop: close without a response
                return
            if isinstance(out, _Paced):
                if not await self._write_paced(out, reader, writer):
                    return
                continue
            writer.write(out)
            if not keep_alive or isinstance(out, _Cut):
                if isinstance(out, _Cut):
                    await writer.drain()
                return
            if writer.transport.get_write_buffer_size() > 1 << 16:
                await writer.drain()

    async def _write_paced(
        self, out: _Paced, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Write a paced stream; False when the connection is to close (cut, or the
        client went away: counted as an abandoned stream)."""
        for n, piece in enumerate(out.pieces):
            if n and out.delay_s:
                await asyncio.sleep(out.delay_s)
            if reader.at_eof() or writer.is_closing():
                with self._lock:
                    self._streams_abandoned += 1
                return False
            writer.write(piece)
            await writer.drain()
        return not out.cut

    async def _dispatch(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, keep_alive: bool
    ) -> bytes | None:
        """Route one request; returns the response bytes, or None to close silently."""
        path, _, query = target.partition("?")
        close = not keep_alive
        if path == "/v1/chat/completions" and method == "POST":
            return await self._completion_route(
                "openai", None, method, path, query, headers, raw, close
            )
        if path.startswith("/openai/deployments/") and method == "POST":
            deployment, _, tail = path[len("/openai/deployments/") :].partition("/")
            if deployment and tail == "chat/completions":
                return await self._completion_route(
                    "azure", deployment, method, path, query, headers, raw, close
                )
        if path.startswith("/_"):
            return self._control_route(method, path, query, raw, close)
        self._record_other(method, path, query, headers)
        if path.startswith("/openai/"):
            body = azure_error("404", "Resource not found")
        else:
            body = openai_error(
                f"Invalid URL ({method} {path})", "invalid_request_error", None, None
            )
        return response(404, body, close=close)

    @staticmethod
    def _paced(
        events: list[bytes], event_ms: float, request_id: str, kind: str, close: bool, cut: bool
    ) -> _Paced:
        out = _Paced()
        head = stream_response(
            [], close=close or cut, request_id=request_id, kind=kind, complete=False
        )
        out.pieces = [head, *map(sse_chunk, events), *([] if cut else [b"0\r\n\r\n"])]
        out.delay_s = event_ms / 1000
        out.cut = cut or close
        return out

    def _control_route(self, method: str, path: str, query: str, raw: bytes, close: bool) -> bytes:
        """``/_control``, ``/_stats``, ``/_requests``, ``/_health``."""
        try:
            if path == "/_stats" and method == "GET":
                return response(200, dumps(self.stats()), close=close)
            if path == "/_health" and method == "GET":
                return response(200, b'{"ok":true}', close=close)
            if path == "/_requests" and method == "GET":
                limit_values = parse_qs(query).get("limit")
                records = self.requests
                if limit_values:
                    records = records[-int(limit_values[0]) :]
                return response(200, dumps([r.to_json() for r in records]), close=close)
            if path == "/_control" and method == "POST":
                payload = json.loads(raw or b"{}")
                if not isinstance(payload, dict):
                    raise ValueError("control body must be a JSON object")
                return response(200, dumps(self.control(payload)), close=close)
        except (ValueError, TypeError) as exc:
            return response(400, dumps({"error": str(exc)}), close=close)
        return response(404, dumps({"error": f"no such endpoint {method} {path}"}), close=close)

    def _record_other(self, method: str, path: str, query: str, headers: dict[str, str]) -> None:
        """Record a request to an unknown route (kind ``other``, outcome ``404``)."""
        rec = RecordedRequest(
            method, path, flat_query(query), headers, None, "other", "", "404", 404, time.time()
        )
        with self._lock:
            self._record(rec)

    def _check_auth(self, kind: str, headers: dict[str, str]) -> str | None:
        """None if the route's key is acceptable, else ``"missing"`` or ``"wrong"``."""
        if kind == "openai":
            value = headers.get("authorization", "")
            key = value[7:].strip() if value[:7].lower() == "bearer " else ""
            accepted = self._openai_keys
        else:
            key = headers.get("api-key", "")
            accepted = self._azure_keys
        if not key:
            return "missing"
        if accepted is not None and key not in accepted:
            return "wrong"
        return None

    async def _completion_route(
        self,
        kind: str,
        deployment: str | None,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        raw: bytes,
        close: bool,
    ) -> bytes | None:
        """A chat-completions request on either route: auth, validate, fault, answer."""
        arrival = time.time()
        q = flat_query(query) if query else {}
        body: Any = None
        invalid: str | None = None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            invalid = (
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)"
            )
        if kind == "azure":
            assert deployment is not None
            target = deployment
            if "api-version" not in q:
                rec = RecordedRequest(
                    method, path, q, headers, body, kind, target, "404", 404, arrival
                )
                with self._lock:
                    self._record(rec)
                return response(404, azure_error("404", "Resource not found"), close=close)
        else:
            model = body.get("model") if isinstance(body, dict) else None
            target = model if isinstance(model, str) else ""

        auth_problem = self._check_auth(kind, headers)
        if invalid is None and auth_problem is None:
            invalid = validate(kind, body)
        with self._lock:
            if auth_problem is not None:
                outcome: Outcome = AUTH_MISSING if auth_problem == "missing" else AUTH_WRONG
                latency = 0.0
            elif invalid is not None:
                outcome, latency = INVALID, 0.0
            else:
                outcome, latency = self._decide(kind, target)
            self._seq += 1
            seq = self._seq
            self._record(
                RecordedRequest(
                    method,
                    path,
                    q,
                    headers,
                    body,
                    kind,
                    target,
                    outcome.name,
                    outcome.status,
                    arrival,
                )
            )
            self._in_flight += 1
            if self._in_flight > self._max_in_flight:
                self._max_in_flight = self._in_flight
            reply_tokens = self.reply_tokens
            cache_min, cache_block = self.cache_min_tokens, self.cache_block
            model_name = self._deployment_models.get(target, target) if kind == "azure" else target
        try:
            if outcome is INVALID:
                assert invalid is not None
                return response(
                    400,
                    openai_error(invalid, "invalid_request_error", None, None),
                    close=close,
                )
            if outcome.name == "timeout":
                await asyncio.sleep(self.timeout_sleep_s)
                return None
            if latency > 0:
                await asyncio.sleep(latency)
            streamed = isinstance(body, dict) and body.get("stream") is True
            if outcome.name == "drop" or (outcome.name == "stream_drop" and not streamed):
                return None
            # Answered: the response is returned and written with no await in between,
            # so a client killed after this point may have been sent (and billed) it.
            with self._lock:
                self._answered[outcome.name] += 1
            request_id = f"req_fake{seq:012d}"
            if streamed and outcome.name in ("ok", "stream_drop"):
                events = stream_events(
                    kind, model_name, body, seq, reply_tokens, cache_min, cache_block
                )
                cut = outcome.name == "stream_drop"
                if cut:  # after the role chunk and some content: the client has had bytes
                    events = events[: max(2, len(events) // 2)]
                if outcome.event_ms:
                    return self._paced(events, outcome.event_ms, request_id, kind, close, cut)
                out = stream_response(
                    events, close=close or cut, request_id=request_id, kind=kind, complete=not cut
                )
                return _Cut(out) if cut else out
            if outcome.name == "ok" or outcome.name == "malformed":
                payload = completion_body(
                    kind, model_name, body, seq, reply_tokens, cache_min, cache_block
                )
                if outcome.name == "malformed":
                    payload = payload[: len(payload) // 2]
                return response(200, payload, close=close, request_id=request_id, kind=kind)
            err = missing_key_body(kind) if outcome is AUTH_MISSING else outcome.body_for(kind)
            return response(
                outcome.status,
                err,
                close=close,
                request_id=request_id,
                kind=kind,
                extra=outcome.headers,
            )
        finally:
            with self._lock:
                self._in_flight -= 1
