"""A local OpenAI / Azure OpenAI chat-completions server with injectable latency and faults.

Tests and benchmarks point the real ``openai`` SDK (``AsyncOpenAI``, ``AsyncAzureOpenAI``) at
this server over loopback, so provider calls, retries, failover and cost accounting are
exercised against the real wire format instead of mocks. It is a small hand-written HTTP/1.1
server on ``asyncio.start_server`` (keep-alive, ``Content-Length`` and chunked request bodies,
``Connection: close``) with no dependency beyond the standard library, and it is cheap per
request so a benchmark at 2,000 requests x concurrency 32 measures the client, not the server.

Ways to run it:

* in-process, on a background thread with its own event loop::

      with FakeLLM(latency_ms=50) as srv:
          client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)

* in the current event loop: ``await srv.astart()`` / ``await srv.astop()``;
* as a separate process (so its CPU is not in the measured process)::

      python tests/fake_llm.py --port 0 --latency-ms 50     # prints FAKE_LLM_PORT=<port>

  or ``with FakeLLMProcess(latency_ms=50) as srv: ...``, programmed over HTTP through
  ``POST /_control`` (same settings as :meth:`FakeLLM.control`) and read through
  ``GET /_stats`` and ``GET /_requests``.

Routes:

* ``POST /v1/chat/completions``: OpenAI; auth ``Authorization: Bearer <key>``; the response
  model is the request's ``model``; faults are targeted by that model name.
* ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``: Azure; auth
  ``api-key: <key>``; a missing ``api-version`` is a 404 like Azure's; the response model is
  ``deployment_models.get(deployment, deployment)``; faults are targeted by deployment name.
* ``POST /_control``, ``GET /_stats``, ``GET /_requests?limit=N``, ``GET /_health``.

Outcome specs (strings, used in scripts and in probability mixes):

* ``ok``: a ``chat.completion`` (``200`` is an alias);
* ``429`` with optional retry hints ``429:retry-after=1``, ``429:retry-after-ms=200``,
  ``429:x-ms-retry-after-ms=200`` (several may be combined with commas);
* ``500``, ``503``, ``400`` (invalid_request_error), ``401``, ``403``, or any other 4xx/5xx
  code with a generic error body;
* ``content_filter``: Azure's 400 body with ``code: content_filter`` and the
  ``ResponsibleAIPolicyViolation`` inner error (sent on either route);
* ``timeout``: reads the request, sends nothing for ``timeout_sleep_s``, then closes;
* ``drop``: reads the request, waits the latency, then closes without a response;
* ``malformed``: ``200`` with ``Content-Type: application/json`` and a truncated JSON body.

Every spec also takes ``latency-ms=N`` to override the latency for that one response, e.g.
``"429:retry-after-ms=200,latency-ms=0"``.

Fault rules live in scopes ``(kind, target)`` where kind is ``openai``, ``azure`` or ``*`` and
target is a model (OpenAI), a deployment (Azure) or ``*``. For a request the scopes are tried
most specific first: ``(kind, target)``, ``(kind, *)``, ``(*, target)``, ``(*, *)``; each
setting is resolved on its own:

1. the first scope with a non-empty FIFO script gives the outcome (and consumes it);
2. otherwise the first scope with a probability mix draws from it (its own seeded RNG, so the
   sequence of outcomes drawn from one scope is reproducible; which request gets which one
   follows arrival order);
3. otherwise ``ok``.

Latency (``latency_ms`` + uniform ``[0, jitter_ms]``) comes from the first scope that sets it;
the constructor's ``latency_ms`` / ``jitter_ms`` are the ``(*, *)`` scope. Latency applies to
every outcome (errors included) except ``timeout``.

Requests that fail auth (401) or validation (400) never reach the fault rules, so they do not
consume scripted outcomes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import http.client
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import cycle, islice
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qs

__all__ = [
    "FakeLLM",
    "FakeLLMClient",
    "FakeLLMProcess",
    "Outcome",
    "RecordedRequest",
    "count_in_stats",
    "parse_outcome",
]

KINDS: Final = ("openai", "azure")
ANY: Final = "*"

_REASONS: Final[dict[int, str]] = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_RETRY_HEADERS: Final = ("retry-after", "retry-after-ms", "x-ms-retry-after-ms")

_SAFE_FILTER: Final[dict[str, Any]] = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}

_CONTENT_FILTER_MESSAGE: Final = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


def _dumps(obj: Any) -> bytes:
    """Compact JSON bytes (what every response body is made of)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def _openai_error(message: str, type_: str | None, code: str | None, param: str | None) -> bytes:
    """The OpenAI error envelope: ``{"error": {message, type, param, code}}``."""
    return _dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _azure_error(code: str, message: str) -> bytes:
    """The Azure gateway error envelope: ``{"error": {code, message}}``."""
    return _dumps({"error": {"code": code, "message": message}})


def _content_filter_body() -> bytes:
    """Azure's real 400 body for a prompt blocked by the content filter."""
    result = dict(_SAFE_FILTER)
    result["sexual"] = {"filtered": True, "severity": "medium"}
    result["jailbreak"] = {"filtered": False, "detected": False}
    return _dumps(
        {
            "error": {
                "message": _CONTENT_FILTER_MESSAGE,
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": result,
                },
            }
        }
    )


def _error_bodies(name: str, status: int) -> tuple[bytes, bytes]:
    """The (OpenAI, Azure) error bodies for an outcome, in each provider's real shape."""
    if name == "content_filter":
        body = _content_filter_body()
        return body, body
    if status == 429:
        return (
            _openai_error(
                "Rate limit reached for requests in organization org-fake on requests per min "
                "(RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                "rate_limit_exceeded",
                None,
            ),
            _azure_error(
                "429",
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                "version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 "
                "pricing tier. Please retry after 1 second. Please go here: "
                "https://aka.ms/oai/quotaincrease if you would like to further increase the "
                "default rate limit.",
            ),
        )
    if status == 401:
        return (
            _openai_error(
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
                None,
            ),
            _azure_error(
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource.",
            ),
        )
    if status == 400:
        body = _openai_error(
            "Invalid value for 'messages': the request could not be processed.",
            "invalid_request_error",
            None,
            "messages",
        )
        return body, body
    if status == 403:
        return (
            _openai_error(
                "You are not allowed to sample from this model",
                "invalid_request_error",
                "model_not_allowed",
                None,
            ),
            _azure_error(
                "403",
                "Access denied due to Virtual Network/Firewall rules.",
            ),
        )
    if status == 503:
        return (
            _openai_error("The server is overloaded or not ready yet.", "server_error", None, None),
            _azure_error(
                "ServiceUnavailable",
                "The service is temporarily unable to process your request. Please try again "
                "later.",
            ),
        )
    if status >= 500:
        body = _openai_error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        )
        return body, body
    body = _openai_error(
        f"Request failed with status {status}.", "invalid_request_error", None, None
    )
    return body, body


@dataclass(frozen=True, slots=True)
class Outcome:
    """A parsed outcome spec: what the server answers to one request.

    ``status`` is 200 for ``ok`` and ``malformed``, 0 for ``timeout`` and ``drop`` (no
    response), else the HTTP error status. ``latency_ms`` overrides the scope's latency.
    """

    spec: str
    name: str
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    latency_ms: float | None = None
    bodies: tuple[bytes, bytes] = (b"", b"")

    def body_for(self, kind: str) -> bytes:
        """The error body in the shape of route ``kind`` (``openai`` or ``azure``)."""
        return self.bodies[1] if kind == "azure" else self.bodies[0]


def parse_outcome(spec: str) -> Outcome:
    """Parse an outcome spec such as ``"ok"``, ``"429:retry-after-ms=200"`` or ``"drop"``.

    Raises ``ValueError`` for an unknown outcome or parameter.
    """
    text = spec.strip()
    head, _, raw_params = text.partition(":")
    name = head.strip().lower()
    params: dict[str, str] = {}
    if raw_params.strip():
        for item in raw_params.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"bad parameter {item!r} in outcome {spec!r} (want key=value)")
            params[key.strip().lower()] = value.strip()
    latency: float | None = None
    if "latency-ms" in params:
        latency = float(params.pop("latency-ms"))
        if latency < 0:
            raise ValueError(f"negative latency-ms in outcome {spec!r}")
    headers: list[tuple[str, str]] = []
    if name == "200":
        name = "ok"
    if name == "429":
        for header in _RETRY_HEADERS:
            if header in params:
                value = params.pop(header)
                float(value)  # must be numeric, like the real headers
                headers.append((header, value))
    if params:
        raise ValueError(f"unknown parameter(s) {sorted(params)} in outcome {spec!r}")
    if name in ("ok", "malformed"):
        return Outcome(text, name, 200, (), latency)
    if name in ("timeout", "drop"):
        return Outcome(text, name, 0, (), latency)
    if name == "content_filter":
        return Outcome(text, name, 400, (), latency, _error_bodies(name, 400))
    if len(name) == 3 and name.isdigit() and 400 <= int(name) <= 599:
        status = int(name)
        return Outcome(text, name, status, tuple(headers), latency, _error_bodies(name, status))
    raise ValueError(
        f"unknown outcome {spec!r}: use ok, 429[:retry-after=S|retry-after-ms=MS|"
        "x-ms-retry-after-ms=MS], 500, 503, 400, 401, 403, <4xx/5xx>, timeout, drop, "
        "content_filter or malformed"
    )


_OK: Final = parse_outcome("ok")
_BAD_HTTP: Final = _openai_error("Malformed HTTP request.", "invalid_request_error", None, None)


@dataclass(slots=True)
class RecordedRequest:
    """One request seen on a chat-completions route (or an unknown route, kind ``other``).

    ``target`` is the model (OpenAI) or deployment (Azure); ``outcome`` is the outcome name
    chosen (``ok``, ``429``, ``timeout``...); ``status`` the HTTP status sent (0 = none);
    ``time`` is ``time.time()`` at arrival.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    kind: str
    target: str
    outcome: str
    status: int
    time: float

    def to_json(self, *, redact: bool = True) -> dict[str, Any]:
        """A JSON-able dict; auth header values are replaced by ``***`` when ``redact``."""
        headers = dict(self.headers)
        if redact:
            for name in ("authorization", "api-key"):
                if name in headers:
                    headers[name] = "***"
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "body": self.body,
            "kind": self.kind,
            "target": self.target,
            "outcome": self.outcome,
            "status": self.status,
            "time": self.time,
        }


@dataclass(slots=True)
class _Scope:
    """Fault settings for one ``(kind, target)`` scope."""

    script: deque[Outcome] = field(default_factory=deque)
    mix: list[tuple[float, Outcome]] | None = None
    mix_spec: dict[str, float] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    latency_ms: float | None = None
    jitter_ms: float | None = None
    jitter_rng: random.Random = field(default_factory=lambda: random.Random(1))


class _Unset(enum.Enum):
    """Sentinel type for "leave this setting unchanged"."""

    UNSET = 0


UNSET: Final = _Unset.UNSET

_RULE_KEYS: Final = frozenset(
    {"kind", "target", "script", "script_append", "mix", "seed", "latency_ms", "jitter_ms"}
)
_SETTING_KEYS: Final = frozenset(
    {
        "openai_keys",
        "azure_keys",
        "deployment_models",
        "reply_tokens",
        "cache_min_tokens",
        "cache_block",
        "timeout_sleep_s",
    }
)


def count_in_stats(
    stats: Mapping[str, Any],
    kind: str | None = None,
    target: str | None = None,
    outcome: str | None = None,
) -> int:
    """Sum ``stats["counts"]`` rows matching the given kind/target/outcome (None = any)."""
    total = 0
    for row in stats["counts"]:
        if kind is not None and row["kind"] != kind:
            continue
        if target is not None and row["target"] != target:
            continue
        if outcome is not None and row["outcome"] != outcome:
            continue
        total += int(row["count"])
    return total


def _content_text(content: Any) -> str:
    """The text of a message's ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class FakeLLM:
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
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._seed = seed
        self._lock = threading.Lock()
        self._defaults: dict[str, Any] = {
            "latency_ms": latency_ms,
            "jitter_ms": jitter_ms,
            "openai_keys": None if openai_keys is None else list(openai_keys),
            "azure_keys": None if azure_keys is None else list(azure_keys),
            "deployment_models": dict(deployment_models or {}),
            "reply_tokens": reply_tokens,
            "cache_min_tokens": cache_min_tokens,
            "cache_block": cache_block,
            "timeout_sleep_s": timeout_sleep_s,
        }
        self._records: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._answered: Counter[str] = Counter()  # responses sent, by outcome
        self._scopes: dict[tuple[str, str], _Scope] = {}
        self._openai_keys: frozenset[str] | None = None
        self._azure_keys: frozenset[str] | None = None
        self._deployment_models: dict[str, str] = {}
        self.reply_tokens = reply_tokens
        self.cache_min_tokens = cache_min_tokens
        self.cache_block = cache_block
        self.timeout_sleep_s = timeout_sleep_s
        self._seq = 0
        self._connections_total = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._apply_defaults()

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

    # ------------------------------------------------------------------ programming

    def _apply_defaults(self) -> None:
        """Restore the constructor's settings and fault scopes."""
        self._reset_scopes()
        d = self._defaults
        self.update_settings(
            openai_keys=d["openai_keys"],
            azure_keys=d["azure_keys"],
            deployment_models=d["deployment_models"],
            reply_tokens=d["reply_tokens"],
            cache_min_tokens=d["cache_min_tokens"],
            cache_block=d["cache_block"],
            timeout_sleep_s=d["timeout_sleep_s"],
        )

    def _reset_scopes(self) -> None:
        """Back to the single default ``(*, *)`` scope built from the constructor."""
        d = self._defaults
        with self._lock:
            self._scopes = {
                (ANY, ANY): _Scope(
                    rng=random.Random(self._seed),
                    latency_ms=float(d["latency_ms"]),
                    jitter_ms=float(d["jitter_ms"]),
                    jitter_rng=random.Random(self._seed + 1),
                )
            }

    def update_settings(
        self,
        *,
        openai_keys: Iterable[str] | _Unset | None = UNSET,
        azure_keys: Iterable[str] | _Unset | None = UNSET,
        deployment_models: Mapping[str, str] | _Unset = UNSET,
        reply_tokens: int | _Unset = UNSET,
        cache_min_tokens: int | _Unset = UNSET,
        cache_block: int | _Unset = UNSET,
        timeout_sleep_s: float | _Unset = UNSET,
    ) -> None:
        """Change server-wide settings (same meaning as the constructor); UNSET = unchanged.

        ``deployment_models`` replaces the whole mapping; keys ``None`` = any non-empty key.
        """
        with self._lock:
            if not isinstance(openai_keys, _Unset):
                self._openai_keys = None if openai_keys is None else frozenset(openai_keys)
            if not isinstance(azure_keys, _Unset):
                self._azure_keys = None if azure_keys is None else frozenset(azure_keys)
            if not isinstance(deployment_models, _Unset):
                self._deployment_models = dict(deployment_models)
            if not isinstance(reply_tokens, _Unset):
                if reply_tokens < 1:
                    raise ValueError("reply_tokens must be >= 1")
                self.reply_tokens = int(reply_tokens)
            if not isinstance(cache_min_tokens, _Unset):
                self.cache_min_tokens = int(cache_min_tokens)
            if not isinstance(cache_block, _Unset):
                if cache_block < 1:
                    raise ValueError("cache_block must be >= 1")
                self.cache_block = int(cache_block)
            if not isinstance(timeout_sleep_s, _Unset):
                self.timeout_sleep_s = float(timeout_sleep_s)

    def configure(
        self,
        kind: str = ANY,
        target: str = ANY,
        *,
        script: Sequence[str] | None = None,
        script_append: Sequence[str] | None = None,
        mix: Mapping[str, float] | None = None,
        seed: int | None = None,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
    ) -> None:
        """Program the fault scope ``(kind, target)``; arguments left ``None`` are unchanged.

        * ``script`` replaces the scope's FIFO of next outcomes, ``script_append`` appends;
        * ``mix`` maps outcome specs to probabilities (sum <= 1, the rest is ``ok``); ``{}``
          removes the mix; ``seed`` (re)seeds the scope's mix RNG (default seed 0);
        * ``latency_ms`` / ``jitter_ms`` set the scope's latency.

        Specs are validated here, so a typo raises ``ValueError`` at once.
        """
        if kind not in (*KINDS, ANY):
            raise ValueError(f"kind must be 'openai', 'azure' or '*', not {kind!r}")
        new_script = None if script is None else [parse_outcome(s) for s in script]
        appended = None if script_append is None else [parse_outcome(s) for s in script_append]
        new_mix: list[tuple[float, Outcome]] | None = None
        if mix is not None:
            cumulative = 0.0
            new_mix = []
            for spec, prob in mix.items():
                if prob < 0:
                    raise ValueError(f"negative probability for {spec!r}")
                cumulative += float(prob)
                new_mix.append((cumulative, parse_outcome(spec)))
            if cumulative > 1.0 + 1e-9:
                raise ValueError(f"mix probabilities sum to {cumulative} > 1")
        if latency_ms is not None and latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if jitter_ms is not None and jitter_ms < 0:
            raise ValueError("jitter_ms must be >= 0")
        with self._lock:
            scope = self._scopes.get((kind, target))
            if scope is None:
                scope = self._scopes[(kind, target)] = _Scope()
            if new_script is not None:
                scope.script = deque(new_script)
            if appended is not None:
                scope.script.extend(appended)
            if new_mix is not None:
                scope.mix = new_mix or None
                scope.mix_spec = {k: float(v) for k, v in mix.items()} if mix else None
                scope.rng = random.Random(0 if seed is None else seed)
            elif seed is not None:
                scope.rng = random.Random(seed)
            if latency_ms is not None:
                scope.latency_ms = float(latency_ms)
            if jitter_ms is not None:
                scope.jitter_ms = float(jitter_ms)
                scope.jitter_rng = random.Random(0 if seed is None else seed + 1)

    def script(self, kind: str, outcomes: Iterable[str], target: str = ANY) -> None:
        """Append outcomes to the FIFO of scope ``(kind, target)``: ``script("azure", ["429",
        "ok"])`` makes the next Azure request a 429 and the one after a success."""
        self.configure(kind, target, script_append=list(outcomes))

    def set_mix(
        self, kind: str, mix: Mapping[str, float], *, seed: int = 0, target: str = ANY
    ) -> None:
        """Give scope ``(kind, target)`` a seeded probabilistic mix of outcomes."""
        self.configure(kind, target, mix=mix, seed=seed)

    def set_latency(
        self, latency_ms: float, jitter_ms: float = 0.0, *, kind: str = ANY, target: str = ANY
    ) -> None:
        """Set the latency of scope ``(kind, target)`` (default: every request)."""
        self.configure(kind, target, latency_ms=latency_ms, jitter_ms=jitter_ms)

    def clear_faults(self) -> None:
        """Drop every scope's script, mix and latency, back to the constructor's latency.

        Server-wide settings (keys, deployment models...) and counters are kept.
        """
        self._reset_scopes()

    def clear_stats(self) -> None:
        """Forget recorded requests and counters (faults stay as programmed)."""
        with self._lock:
            self._records.clear()
            self._counts.clear()
            self._answered.clear()
            self._connections_total = 0
            self._max_in_flight = self._in_flight

    def reset(self) -> None:
        """Back to a fresh server: constructor settings, no faults, no records or counters."""
        self._apply_defaults()
        self.clear_stats()

    def control(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a control document (what ``POST /_control`` takes); returns :meth:`stats`.

        Keys, applied in this order, all optional:

        * ``"reset": true`` -> :meth:`reset`; ``"clear_faults": true``;
          ``"clear_stats": true``;
        * settings of :meth:`update_settings` (``openai_keys``, ``azure_keys``,
          ``deployment_models``, ``reply_tokens``, ``cache_min_tokens``, ``cache_block``,
          ``timeout_sleep_s``);
        * one rule given inline (``kind``, ``target``, ``script``, ``script_append``, ``mix``,
          ``seed``, ``latency_ms``, ``jitter_ms``), then ``"rules": [rule, ...]``, each
          passed to :meth:`configure`.

        Raises ``ValueError`` for unknown keys or bad specs.
        """
        allowed = _RULE_KEYS | _SETTING_KEYS | {"reset", "clear_faults", "clear_stats", "rules"}
        unknown = set(payload) - allowed
        if unknown:
            raise ValueError(f"unknown control key(s): {sorted(unknown)}")
        rules: list[Mapping[str, Any]] = []
        inline = {k: v for k, v in payload.items() if k in _RULE_KEYS}
        if inline:
            rules.append(inline)
        extra = payload.get("rules") or []
        if not isinstance(extra, list):
            raise ValueError("'rules' must be a list")
        rules.extend(extra)
        for rule in rules:
            if not isinstance(rule, Mapping) or set(rule) - _RULE_KEYS:
                raise ValueError(f"bad rule {rule!r}: keys must be among {sorted(_RULE_KEYS)}")
        if payload.get("reset"):
            self.reset()
        if payload.get("clear_faults"):
            self.clear_faults()
        if payload.get("clear_stats"):
            self.clear_stats()
        settings = {k: v for k, v in payload.items() if k in _SETTING_KEYS}
        if settings:
            self.update_settings(**settings)
        for rule in rules:
            self.configure(**rule)
        return self.stats()

    # ------------------------------------------------------------------ observation

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first (bounded by ``max_recorded``)."""
        with self._lock:
            return list(self._records)

    def count(
        self, kind: str | None = None, target: str | None = None, outcome: str | None = None
    ) -> int:
        """How many requests matched ``kind`` / ``target`` / ``outcome`` (None = any).

        Counted at arrival, so a request still held by latency is already counted.
        """
        with self._lock:
            return sum(
                n
                for (k, t, o), n in self._counts.items()
                if (kind is None or k == kind)
                and (target is None or t == target)
                and (outcome is None or o == outcome)
            )

    def stats(self) -> dict[str, Any]:
        """Counters as JSON (what ``GET /_stats`` returns)."""
        with self._lock:
            counts = [
                {"kind": k, "target": t, "outcome": o, "count": n}
                for (k, t, o), n in sorted(self._counts.items())
            ]
            by_kind: Counter[str] = Counter()
            for (k, _t, _o), n in self._counts.items():
                by_kind[k] += n
            scopes = [
                {
                    "kind": k,
                    "target": t,
                    "script_remaining": [o.spec for o in s.script],
                    "mix": s.mix_spec,
                    "latency_ms": s.latency_ms,
                    "jitter_ms": s.jitter_ms,
                }
                for (k, t), s in self._scopes.items()
            ]
            return {
                "requests_total": sum(self._counts.values()),
                # Requests counted above at arrival; these got a response (by outcome).
                "answered_total": sum(self._answered.values()),
                "answered": dict(self._answered),
                "by_kind": dict(by_kind),
                "counts": counts,
                "connections_total": self._connections_total,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "scopes": scopes,
            }

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
                writer.write(_response(431, _BAD_HTTP, close=True))
                return
            lines = head[:-4].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                writer.write(_response(400, _BAD_HTTP, close=True))
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            try:
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await _read_chunked(reader)
                else:
                    length = int(headers.get("content-length") or 0)
                    body = await reader.readexactly(length) if length > 0 else b""
            except (ValueError, asyncio.LimitOverrunError):
                writer.write(_response(400, _BAD_HTTP, close=True))
                return
            connection = headers.get("connection", "").lower()
            if version == "HTTP/1.0":
                keep_alive = connection == "keep-alive"
            else:
                keep_alive = connection != "close"
            out = await self._dispatch(method, target, headers, body, keep_alive)
            if out is None:  # timeout / drop: close without a response
                return
            writer.write(out)
            if not keep_alive:
                return
            if writer.transport.get_write_buffer_size() > 1 << 16:
                await writer.drain()

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
            body = _azure_error("404", "Resource not found")
        else:
            body = _openai_error(
                f"Invalid URL ({method} {path})", "invalid_request_error", None, None
            )
        return _response(404, body, close=close)

    def _control_route(self, method: str, path: str, query: str, raw: bytes, close: bool) -> bytes:
        """``/_control``, ``/_stats``, ``/_requests``, ``/_health``."""
        try:
            if path == "/_stats" and method == "GET":
                return _response(200, _dumps(self.stats()), close=close)
            if path == "/_health" and method == "GET":
                return _response(200, b'{"ok":true}', close=close)
            if path == "/_requests" and method == "GET":
                limit_values = parse_qs(query).get("limit")
                records = self.requests
                if limit_values:
                    records = records[-int(limit_values[0]) :]
                return _response(200, _dumps([r.to_json() for r in records]), close=close)
            if path == "/_control" and method == "POST":
                payload = json.loads(raw or b"{}")
                if not isinstance(payload, dict):
                    raise ValueError("control body must be a JSON object")
                return _response(200, _dumps(self.control(payload)), close=close)
        except (ValueError, TypeError) as exc:
            return _response(400, _dumps({"error": str(exc)}), close=close)
        return _response(404, _dumps({"error": f"no such endpoint {method} {path}"}), close=close)

    def _record_other(self, method: str, path: str, query: str, headers: dict[str, str]) -> None:
        """Record a request to an unknown route (kind ``other``, outcome ``404``)."""
        rec = RecordedRequest(
            method, path, _flat_query(query), headers, None, "other", "", "404", 404, time.time()
        )
        with self._lock:
            self._records.append(rec)
            self._counts[("other", "", "404")] += 1

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

    def _decide(self, kind: str, target: str) -> tuple[Outcome, float]:
        """Pick the outcome and latency (seconds) for one request; caller holds the lock."""
        scopes = self._scopes
        chain = [
            s
            for s in (
                scopes.get((kind, target)),
                scopes.get((kind, ANY)),
                scopes.get((ANY, target)),
                scopes.get((ANY, ANY)),
            )
            if s is not None
        ]
        outcome: Outcome | None = None
        for scope in chain:
            if scope.script:
                outcome = scope.script.popleft()
                break
        if outcome is None:
            for scope in chain:
                if scope.mix is not None:
                    r = scope.rng.random()
                    for threshold, candidate in scope.mix:
                        if r < threshold:
                            outcome = candidate
                            break
                    break
        if outcome is None:
            outcome = _OK
        latency_ms = 0.0
        for scope in chain:
            if scope.latency_ms is not None:
                latency_ms = scope.latency_ms
                break
        for scope in chain:
            if scope.jitter_ms is not None:
                if scope.jitter_ms > 0:
                    latency_ms += scope.jitter_rng.uniform(0.0, scope.jitter_ms)
                break
        if outcome.latency_ms is not None:
            latency_ms = outcome.latency_ms
        return outcome, latency_ms / 1000.0

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
        q = _flat_query(query) if query else {}
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
                    self._records.append(rec)
                    self._counts[(kind, target, "404")] += 1
                return _response(404, _azure_error("404", "Resource not found"), close=close)
        else:
            model = body.get("model") if isinstance(body, dict) else None
            target = model if isinstance(model, str) else ""

        auth_problem = self._check_auth(kind, headers)
        if invalid is None and auth_problem is None:
            invalid = _validate(kind, body)
        with self._lock:
            if auth_problem is not None:
                outcome: Outcome = _AUTH_MISSING if auth_problem == "missing" else _AUTH_WRONG
                latency = 0.0
            elif invalid is not None:
                outcome, latency = _INVALID, 0.0
            else:
                outcome, latency = self._decide(kind, target)
            self._seq += 1
            seq = self._seq
            self._records.append(
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
            self._counts[(kind, target, outcome.name)] += 1
            self._in_flight += 1
            if self._in_flight > self._max_in_flight:
                self._max_in_flight = self._in_flight
            reply_tokens = self.reply_tokens
            cache_min, cache_block = self.cache_min_tokens, self.cache_block
            model_name = self._deployment_models.get(target, target) if kind == "azure" else target
        try:
            if outcome is _INVALID:
                assert invalid is not None
                return _response(
                    400,
                    _openai_error(invalid, "invalid_request_error", None, None),
                    close=close,
                )
            if outcome.name == "timeout":
                await asyncio.sleep(self.timeout_sleep_s)
                return None
            if latency > 0:
                await asyncio.sleep(latency)
            if outcome.name == "drop":
                return None
            # Answered: the response is returned and written with no await in between,
            # so a client killed after this point may have been sent (and billed) it.
            with self._lock:
                self._answered[outcome.name] += 1
            request_id = f"req_fake{seq:012d}"
            if outcome.name == "ok" or outcome.name == "malformed":
                payload = _completion_body(
                    kind, model_name, body, seq, reply_tokens, cache_min, cache_block
                )
                if outcome.name == "malformed":
                    payload = payload[: len(payload) // 2]
                return _response(200, payload, close=close, request_id=request_id, kind=kind)
            err = _missing_key_body(kind) if outcome is _AUTH_MISSING else outcome.body_for(kind)
            return _response(
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


_AUTH_WRONG: Final = parse_outcome("401")
_AUTH_MISSING: Final = Outcome("401", "401", 401, (), 0.0, _AUTH_WRONG.bodies)
_INVALID: Final = Outcome("400", "400", 400, (), 0.0, _error_bodies("400", 400))


def _missing_key_body(kind: str) -> bytes:
    """The provider's 401 body when no key was sent at all."""
    if kind == "azure":
        return _azure_error(
            "401",
            "Access denied due to missing subscription key. Make sure to include subscription "
            "key when making requests to an API.",
        )
    return _openai_error(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "invalid_request_error",
        None,
        None,
    )


def _validate(kind: str, body: Any) -> str | None:
    """A 400 message if the chat-completions body is unusable, else None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if kind == "openai" and not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Missing required parameter: 'messages'."
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return "Invalid type for 'messages': each message needs a 'role'."
    if body.get("stream"):
        return "This server only supports stream=false."
    return None


def _completion_template(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``chat.completion`` JSON of route ``kind``, serialized once and split at its slots.

    Returns ``(literals, slot_names)``; a response is ``literals[0] + value(slot_names[0]) +
    literals[1] + ...``, so per request only the reply text and model are JSON-encoded.
    """

    def slot(name: str) -> str:
        return f"@@{name}@@"

    choice: dict[str, Any] = {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": slot("content"),
            "refusal": None,
            "annotations": [],
        },
        "logprobs": None,
        "finish_reason": slot("finish_reason"),
    }
    result: dict[str, Any] = {
        "id": slot("id"),
        "object": "chat.completion",
        "created": slot("created"),
        "model": slot("model"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": slot("prompt_tokens"),
            "completion_tokens": slot("completion_tokens"),
            "total_tokens": slot("total_tokens"),
            "prompt_tokens_details": {"cached_tokens": slot("cached_tokens"), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "system_fingerprint": "fp_fake",
    }
    if kind == "azure":
        choice["content_filter_results"] = _SAFE_FILTER
        result["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": _SAFE_FILTER}
        ]
    else:
        result["service_tier"] = "default"
    parts = re.split(r'"@@(\w+)@@"', json.dumps(result, separators=(",", ":")))
    return tuple(parts[0::2]), tuple(parts[1::2])


_TEMPLATES: Final = {kind: _completion_template(kind) for kind in KINDS}


def _completion_body(
    kind: str,
    model: str,
    body: dict[str, Any],
    seq: int,
    reply_tokens: int,
    cache_min: int,
    cache_block: int,
) -> bytes:
    """The ``chat.completion`` JSON for a request, with deterministic text and usage."""
    words = 0
    last_user = ""
    for message in body["messages"]:
        text = _content_text(message.get("content"))
        words += len(text.split())
        if message.get("role") == "user":
            last_user = text
    prompt_tokens = max(1, (words * 13 + 9) // 10)
    n = reply_tokens
    finish = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < n:
        n, finish = limit, "length"
    source = last_user.split() or ["there"]
    content = " ".join(["Hi", *islice(cycle(source), n - 1)])
    cached = prompt_tokens - prompt_tokens % cache_block if prompt_tokens >= cache_min else 0
    values = {
        "id": f'"chatcmpl-fake{seq:012d}"',
        "created": str(int(time.time())),
        "model": json.dumps(model),
        "content": json.dumps(content),
        "finish_reason": f'"{finish}"',
        "prompt_tokens": str(prompt_tokens),
        "completion_tokens": str(n),
        "total_tokens": str(prompt_tokens + n),
        "cached_tokens": str(cached),
    }
    literals, names = _TEMPLATES[kind]
    out = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        out.append(values[name])
        out.append(literal)
    return "".join(out).encode()


def _response(
    status: int,
    body: bytes,
    *,
    close: bool,
    request_id: str | None = None,
    kind: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    """Serialize one HTTP/1.1 response with a JSON body."""
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    if request_id is not None:
        head.append(f"x-request-id: {request_id}")
        if kind == "azure":
            head.append(f"apim-request-id: {request_id}")
    for name, value in extra:
        head.append(f"{name}: {value}")
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _flat_query(query: str) -> dict[str, str]:
    """A query string as a dict (last value wins)."""
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Read a chunked request body (trailers are read and ignored)."""
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


# ---------------------------------------------------------------------- other processes


class FakeLLMClient:
    """Programs and reads a FakeLLM on another process over its HTTP control endpoints.

    Mirrors the in-process API: ``configure``, ``script``, ``set_mix``, ``set_latency``,
    ``update_settings`` (as control keys), ``reset``, ``clear_faults``, ``clear_stats``,
    ``stats``, ``count`` and ``requests`` (JSON dicts, auth headers redacted).
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``AsyncOpenAI``."""
        return f"{self.base_url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """``azure_endpoint`` for ``AsyncAzureOpenAI``."""
        return self.base_url

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        """One JSON request to the control endpoints (no proxies: plain loopback socket)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            body = None if payload is None else json.dumps(payload).encode()
            headers = {"content-type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = json.loads(resp.read() or b"null")
            if resp.status != 200:
                raise ValueError(f"{method} {path} -> {resp.status}: {data}")
            return data
        finally:
            conn.close()

    def control(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /_control`` (see :meth:`FakeLLM.control`); returns the stats."""
        result: dict[str, Any] = self._call("POST", "/_control", dict(payload))
        return result

    def configure(self, kind: str = ANY, target: str = ANY, **rule: Any) -> None:
        """Same as :meth:`FakeLLM.configure`."""
        self.control({"kind": kind, "target": target, **rule})

    def script(self, kind: str, outcomes: Iterable[str], target: str = ANY) -> None:
        """Same as :meth:`FakeLLM.script` (appends)."""
        self.configure(kind, target, script_append=list(outcomes))

    def set_mix(
        self, kind: str, mix: Mapping[str, float], *, seed: int = 0, target: str = ANY
    ) -> None:
        """Same as :meth:`FakeLLM.set_mix`."""
        self.configure(kind, target, mix=dict(mix), seed=seed)

    def set_latency(
        self, latency_ms: float, jitter_ms: float = 0.0, *, kind: str = ANY, target: str = ANY
    ) -> None:
        """Same as :meth:`FakeLLM.set_latency`."""
        self.configure(kind, target, latency_ms=latency_ms, jitter_ms=jitter_ms)

    def reset(self) -> None:
        """Same as :meth:`FakeLLM.reset`."""
        self.control({"reset": True})

    def clear_faults(self) -> None:
        """Same as :meth:`FakeLLM.clear_faults`."""
        self.control({"clear_faults": True})

    def clear_stats(self) -> None:
        """Same as :meth:`FakeLLM.clear_stats`."""
        self.control({"clear_stats": True})

    def stats(self) -> dict[str, Any]:
        """``GET /_stats``."""
        result: dict[str, Any] = self._call("GET", "/_stats")
        return result

    def count(
        self, kind: str | None = None, target: str | None = None, outcome: str | None = None
    ) -> int:
        """Same as :meth:`FakeLLM.count`."""
        return count_in_stats(self.stats(), kind, target, outcome)

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """``GET /_requests``: the last ``limit`` recorded requests (all if None)."""
        path = "/_requests" if limit is None else f"/_requests?limit={limit}"
        result: list[dict[str, Any]] = self._call("GET", path)
        return result


class FakeLLMProcess(FakeLLMClient):
    """Runs ``python tests/fake_llm.py`` as a child process on a free port.

    Keyword arguments are the command-line options (``latency_ms``, ``jitter_ms``,
    ``openai_keys``, ``azure_keys``, ``deployment_models``, ``reply_tokens``, ``seed``,
    ``timeout_sleep_s``); everything else is programmed through the control endpoint.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        openai_keys: Sequence[str] = (),
        azure_keys: Sequence[str] = (),
        deployment_models: Mapping[str, str] | None = None,
        reply_tokens: int = 24,
        seed: int = 0,
        timeout_sleep_s: float = 30.0,
    ) -> None:
        super().__init__(0)
        args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            "--jitter-ms",
            str(jitter_ms),
            "--reply-tokens",
            str(reply_tokens),
            "--seed",
            str(seed),
            "--timeout-sleep-s",
            str(timeout_sleep_s),
        ]
        for key in openai_keys:
            args += ["--openai-key", key]
        for key in azure_keys:
            args += ["--azure-key", key]
        for dep, model in (deployment_models or {}).items():
            args += ["--deployment-model", f"{dep}={model}"]
        self._args = args
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        """Start the child and wait for it to report its port."""
        proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("FAKE_LLM_PORT="):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"fake LLM process did not start (got {line!r})")
        self.port = int(line.strip().split("=", 1)[1])
        self._proc = proc
        return self

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._proc is None:
            raise RuntimeError("FakeLLMProcess is not started")
        return self._proc.pid

    def stop(self) -> None:
        """Terminate the child (by its pid) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------- command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options of the standalone server."""
    p = argparse.ArgumentParser(description="Fake OpenAI / Azure OpenAI chat-completions server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = a free port (printed at start)")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--openai-key", action="append", default=[], help="accepted key (repeat)")
    p.add_argument("--azure-key", action="append", default=[], help="accepted key (repeat)")
    p.add_argument(
        "--deployment-model", action="append", default=[], help="DEPLOYMENT=MODEL (repeat)"
    )
    p.add_argument("--reply-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout-sleep-s", type=float, default=30.0)
    p.add_argument("--control", default=None, help="a JSON control document applied at start")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server in this process until interrupted; prints ``FAKE_LLM_PORT=<port>``."""
    args = _parse_args(argv)
    models = dict(item.split("=", 1) for item in args.deployment_model)
    server = FakeLLM(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        openai_keys=args.openai_key or None,
        azure_keys=args.azure_key or None,
        deployment_models=models,
        reply_tokens=args.reply_tokens,
        seed=args.seed,
        timeout_sleep_s=args.timeout_sleep_s,
    )
    if args.control:
        server.control(json.loads(args.control))

    async def run() -> None:
        await server.astart()
        print(f"FAKE_LLM_PORT={server.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.astop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
