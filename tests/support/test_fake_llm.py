"""The fake LLM server, proven with the real ``openai`` SDK over loopback.

These tests pin down what the production code will see from the SDK for every fault the
server can inject (which exception class, which status, which headers and body fields), so
the orchestrator's retry / failover tests can rely on the fake behaving like the providers.

What the SDK (3.x, ``max_retries=0``) raises, as asserted below:

* ``429`` -> ``openai.RateLimitError``; retry hints in ``exc.response.headers``;
* ``500`` and ``503`` -> ``openai.InternalServerError`` (an ``APIStatusError``; check
  ``exc.status_code``);
* ``400`` and ``content_filter`` -> ``openai.BadRequestError`` (``exc.code`` is
  ``"content_filter"`` for the latter, ``exc.body["innererror"]`` carries the filter result);
* ``401`` -> ``openai.AuthenticationError``; ``403`` -> ``openai.PermissionDeniedError``;
* ``timeout`` -> ``openai.APITimeoutError`` (cause ``httpx2.ReadTimeout``);
* ``drop`` -> ``openai.APIConnectionError``, not a timeout (cause
  ``httpx2.RemoteProtocolError``);
* ``malformed`` -> ``json.JSONDecodeError`` straight out of ``create()``: it is *not* an
  ``openai.OpenAIError``, so code that only catches the SDK's exceptions will miss it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from huntaze_testing.fake_llm import (
    FakeLLM,
    FakeLLMClient,
    FakeLLMProcess,
    count_in_stats,
    parse_outcome,
)

API_VERSION = "2024-10-21"
USER_MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Write to Alice"}]


class Sdk:
    """Real SDK clients for one fake server, driven from sync tests through one event loop.

    Clients are built like production builds them (``max_retries=0``) and reused, because
    building one costs tens of milliseconds; per-call keys go through ``with_options``.
    """

    def __init__(self, runner: asyncio.Runner, server: FakeLLM | FakeLLMClient) -> None:
        self.runner = runner
        self.openai = openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="sk-test", max_retries=0, timeout=5.0
        )
        self.azure = openai.AsyncAzureOpenAI(
            azure_endpoint=server.azure_endpoint,
            api_key="az-test",
            api_version=API_VERSION,
            max_retries=0,
            timeout=5.0,
        )

    async def acreate(
        self,
        kind: str,
        *,
        target: str | None = None,
        key: str | None = None,
        messages: list[ChatCompletionMessageParam] | None = None,
        **kwargs: Any,
    ) -> ChatCompletion:
        """One chat completion on route ``kind`` (``openai`` / ``azure``)."""
        client: openai.AsyncOpenAI = self.openai if kind == "openai" else self.azure
        if key is not None:
            client = client.with_options(api_key=key)
        default_target = "gpt-4o-mini" if kind == "openai" else "gpt4o-prod"
        return await client.chat.completions.create(
            model=target or default_target, messages=messages or USER_MSG, **kwargs
        )

    def create(self, kind: str, **kwargs: Any) -> ChatCompletion:
        """:meth:`acreate`, from sync code."""
        return self.runner.run(self.acreate(kind, **kwargs))

    def outcome(self, kind: str, **kwargs: Any) -> str:
        """One call, named by what came back: ``ok`` or the exception class name."""
        return self.outcomes(kind, 1, **kwargs)[0]

    def outcomes(self, kind: str, n: int, **kwargs: Any) -> list[str]:
        """``n`` sequential calls, each named like :meth:`outcome`."""

        async def scenario() -> list[str]:
            names = []
            for _ in range(n):
                try:
                    await self.acreate(kind, **kwargs)
                except Exception as exc:
                    names.append(type(exc).__name__)
                else:
                    names.append("ok")
            return names

        return self.runner.run(scenario())

    def close(self) -> None:
        """Close both clients' connection pools."""
        self.runner.run(self.openai.close())
        self.runner.run(self.azure.close())


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the module's SDK calls."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLM]:
    """One in-process server for the module (accepts any non-empty key)."""
    with FakeLLM(timeout_sleep_s=5) as fake:
        yield fake


@pytest.fixture(scope="module")
def module_sdk(runner: asyncio.Runner, server: FakeLLM) -> Iterator[Sdk]:
    """SDK clients pointed at the module's server."""
    clients = Sdk(runner, server)
    yield clients
    clients.close()


@pytest.fixture
def srv(server: FakeLLM) -> FakeLLM:
    """The module's server, reset to its constructor settings for this test."""
    server.reset()
    return server


@pytest.fixture
def sdk(module_sdk: Sdk, srv: FakeLLM) -> Sdk:
    """SDK clients for ``srv`` (which is reset first)."""
    return module_sdk


@contextlib.contextmanager
def own_server(runner: asyncio.Runner, **kwargs: Any) -> Iterator[tuple[FakeLLM, Sdk]]:
    """A dedicated server (for constructor-only settings) with its own SDK clients."""
    with FakeLLM(**kwargs) as fake:
        clients = Sdk(runner, fake)
        try:
            yield fake, clients
        finally:
            clients.close()


def raw_request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A plain ``http.client`` request (for what the SDK cannot send: no key, no api-version)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- success


def test_openai_success_has_the_real_shape(srv: FakeLLM, sdk: Sdk) -> None:
    result = sdk.create("openai", target="gpt-4o-mini")
    assert result.object == "chat.completion"
    assert result.model == "gpt-4o-mini"
    assert result.id.startswith("chatcmpl-")
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hi " + " ".join((["Write", "to", "Alice"] * 8)[:23])
    assert choice.finish_reason == "stop"
    usage = result.usage
    assert usage is not None
    assert usage.prompt_tokens == 4  # ceil(3 words x 1.3)
    assert usage.completion_tokens == 24
    assert usage.total_tokens == 28
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0

    (rec,) = srv.requests
    assert (rec.method, rec.path, rec.kind, rec.target, rec.outcome, rec.status) == (
        "POST",
        "/v1/chat/completions",
        "openai",
        "gpt-4o-mini",
        "ok",
        200,
    )
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert rec.body["messages"] == USER_MSG
    assert srv.count(kind="openai") == 1
    assert srv.count(kind="azure") == 0


def test_azure_success_maps_deployment_to_model(srv: FakeLLM, sdk: Sdk) -> None:
    srv.update_settings(deployment_models={"gpt4o-prod": "gpt-4o-2024-08-06"})
    assert sdk.create("azure", target="gpt4o-prod").model == "gpt-4o-2024-08-06"
    assert sdk.create("azure", target="mini-dev").model == "mini-dev"  # default: the name
    rec = srv.requests[0]
    assert rec.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert rec.query == {"api-version": API_VERSION}
    assert rec.headers["api-key"] == "az-test"
    assert "authorization" not in rec.headers
    assert srv.count(kind="azure", target="gpt4o-prod") == 1
    assert srv.count(kind="azure") == 2
    assert srv.count(kind="openai") == 0


def test_usage_is_deterministic_and_max_tokens_cuts_the_reply(sdk: Sdk) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "one two three"},
        {"role": "user", "content": [{"type": "text", "text": "four five six seven"}]},
        {"role": "assistant", "content": "eight nine ten"},
        {"role": "user", "content": "Bob"},
    ]
    a = sdk.create("openai", messages=messages, max_tokens=3)
    b = sdk.create("azure", messages=messages, max_completion_tokens=3)
    for result in (a, b):
        assert result.usage is not None
        assert result.usage.prompt_tokens == 15  # 11 words x 1.3 = 14.3 -> 15
        assert result.usage.completion_tokens == 3
        assert result.choices[0].finish_reason == "length"
        assert result.choices[0].message.content == "Hi Bob Bob"
    srv_reply = sdk.create("openai", messages=messages, max_tokens=100)
    assert srv_reply.usage is not None and srv_reply.usage.completion_tokens == 24


def test_cached_tokens_follow_the_cache_rule(srv: FakeLLM, sdk: Sdk) -> None:
    long_prompt: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": " ".join(["word"] * 1000)}  # 1,300 prompt tokens
    ]
    usage = sdk.create("openai", messages=long_prompt).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens == 1300
    assert usage.prompt_tokens_details.cached_tokens == 1280  # 10 blocks of 128

    srv.update_settings(cache_min_tokens=1, cache_block=1)
    short = [{"role": "user", "content": "a b c d e f g h i j"}]
    usage = sdk.create("azure", messages=short).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens == 13


# --------------------------------------------------------------------------- routing, auth


def test_azure_route_needs_api_version(srv: FakeLLM, runner: asyncio.Runner) -> None:
    status, _, body = raw_request(
        srv.port,
        "POST",
        "/openai/deployments/d1/chat/completions",
        json.dumps({"messages": USER_MSG}).encode(),
        {"api-key": "k", "content-type": "application/json"},
    )
    assert status == 404
    assert json.loads(body) == {"error": {"code": "404", "message": "Resource not found"}}

    async def through_sdk() -> None:
        base = f"{srv.azure_endpoint}/openai/deployments/d1"
        async with openai.AsyncOpenAI(base_url=base, api_key="k", max_retries=0) as oc:
            await oc.chat.completions.create(model="d1", messages=USER_MSG)

    with pytest.raises(openai.NotFoundError):
        runner.run(through_sdk())
    assert srv.count(kind="azure", target="d1", outcome="404") == 2


def test_unknown_route_is_404(srv: FakeLLM) -> None:
    status, _, body = raw_request(srv.port, "POST", "/v1/embeddings", b"{}")
    assert status == 404
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert srv.count(kind="other", outcome="404") == 1


def test_wrong_or_missing_key_is_401_in_each_providers_shape(srv: FakeLLM, sdk: Sdk) -> None:
    srv.update_settings(openai_keys=["sk-good"], azure_keys=["az-good"])
    assert sdk.create("openai", key="sk-good").choices
    assert sdk.create("azure", key="az-good").choices

    with pytest.raises(openai.AuthenticationError) as oerr:
        sdk.create("openai", key="sk-bad")
    assert oerr.value.status_code == 401
    assert oerr.value.code == "invalid_api_key"
    assert oerr.value.type == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError) as aerr:
        sdk.create("azure", key="az-bad")
    assert aerr.value.code == "401"
    assert "sk-bad" not in str(oerr.value) and "az-bad" not in str(aerr.value)

    body = json.dumps({"model": "m", "messages": USER_MSG}).encode()
    status, _, raw = raw_request(srv.port, "POST", "/v1/chat/completions", body)
    assert status == 401
    assert "didn't provide an API key" in json.loads(raw)["error"]["message"]
    azure_path = f"/openai/deployments/d/chat/completions?api-version={API_VERSION}"
    status, _, raw = raw_request(srv.port, "POST", azure_path, body)
    assert status == 401
    assert "missing subscription key" in json.loads(raw)["error"]["message"]

    # Requests refused for auth do not consume scripted outcomes.
    srv.script("openai", ["500"])
    assert sdk.outcome("openai", key="sk-bad") == "AuthenticationError"
    assert sdk.outcome("openai", key="sk-good") == "InternalServerError"
    assert srv.count(kind="openai", outcome="401") == 3
    assert srv.count(kind="azure", outcome="401") == 2


def test_invalid_requests_are_400(srv: FakeLLM) -> None:
    def post(body: bytes) -> tuple[int, dict[str, Any]]:
        status, _, raw = raw_request(
            srv.port, "POST", "/v1/chat/completions", body, {"authorization": "Bearer k"}
        )
        return status, json.loads(raw)

    for body in (
        b"{not json",
        b"[]",
        json.dumps({"messages": USER_MSG}).encode(),  # no model
        json.dumps({"model": "m", "messages": []}).encode(),
        json.dumps({"model": "m", "messages": USER_MSG, "stream": "yes"}).encode(),
    ):
        status, payload = post(body)
        assert status == 400, body
        assert payload["error"]["type"] == "invalid_request_error"
    srv.script("*", ["500"])
    assert post(b"[]")[0] == 400  # validation comes before faults...
    assert post(json.dumps({"model": "m", "messages": USER_MSG}).encode())[0] == 500


# --------------------------------------------------------------------------- faults -> SDK


KINDS = ["openai", "azure"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("spec", "header", "value"),
    [
        ("429", None, None),
        ("429:retry-after=1", "retry-after", "1"),
        ("429:retry-after-ms=200", "retry-after-ms", "200"),
        ("429:x-ms-retry-after-ms=250", "x-ms-retry-after-ms", "250"),
    ],
)
def test_429_is_rate_limit_error_with_retry_header(
    srv: FakeLLM, sdk: Sdk, kind: str, spec: str, header: str | None, value: str | None
) -> None:
    srv.script(kind, [spec])
    with pytest.raises(openai.RateLimitError) as err:
        sdk.create(kind)
    exc = err.value
    assert exc.status_code == 429
    assert exc.request_id is not None and exc.request_id.startswith("req_fake")
    headers = exc.response.headers
    for name in ("retry-after", "retry-after-ms", "x-ms-retry-after-ms"):
        assert headers.get(name) == (value if name == header else None)
    assert exc.code == ("rate_limit_exceeded" if kind == "openai" else "429")
    assert srv.count(kind=kind, outcome="429") == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("spec", "exc_type", "status"),
    [
        ("500", openai.InternalServerError, 500),
        ("503", openai.InternalServerError, 503),
        ("502", openai.InternalServerError, 502),
        ("400", openai.BadRequestError, 400),
        ("401", openai.AuthenticationError, 401),
        ("403", openai.PermissionDeniedError, 403),
    ],
)
def test_status_faults_map_to_sdk_exceptions(
    srv: FakeLLM,
    sdk: Sdk,
    kind: str,
    spec: str,
    exc_type: type[openai.APIStatusError],
    status: int,
) -> None:
    srv.script(kind, [spec])
    with pytest.raises(openai.APIStatusError) as err:
        sdk.create(kind)
    assert type(err.value) is exc_type
    assert err.value.status_code == status
    assert isinstance(err.value.body, dict) and "message" in err.value.body


@pytest.mark.parametrize("kind", KINDS)
def test_content_filter_is_bad_request_with_code(srv: FakeLLM, sdk: Sdk, kind: str) -> None:
    srv.script(kind, ["content_filter"])
    with pytest.raises(openai.BadRequestError) as err:
        sdk.create(kind)
    exc = err.value
    assert exc.status_code == 400
    assert exc.code == "content_filter"
    assert exc.param == "prompt"
    assert isinstance(exc.body, dict)
    assert exc.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert exc.body["innererror"]["content_filter_result"]["sexual"]["filtered"] is True
    assert exc.body["status"] == 400


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_is_api_timeout_error(srv: FakeLLM, sdk: Sdk, kind: str) -> None:
    srv.script(kind, ["timeout"])
    with pytest.raises(openai.APITimeoutError) as err:
        sdk.create(kind, timeout=0.3)
    assert isinstance(err.value.__cause__, httpx2.TimeoutException)
    assert srv.count(kind=kind, outcome="timeout") == 1
    assert sdk.create(kind).choices  # the client and server are fine afterwards


@pytest.mark.parametrize("kind", KINDS)
def test_drop_is_connection_error_not_timeout(srv: FakeLLM, sdk: Sdk, kind: str) -> None:
    srv.script(kind, ["drop"])
    with pytest.raises(openai.APIConnectionError) as err:
        sdk.create(kind)
    assert not isinstance(err.value, openai.APITimeoutError)
    assert isinstance(err.value.__cause__, httpx2.RemoteProtocolError)
    assert sdk.create(kind).choices


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_body_raises_json_decode_error_not_an_sdk_error(
    srv: FakeLLM, sdk: Sdk, kind: str
) -> None:
    srv.script(kind, ["malformed"])
    with pytest.raises(json.JSONDecodeError) as err:
        sdk.create(kind)
    assert not isinstance(err.value, openai.OpenAIError)
    assert isinstance(err.value, ValueError)
    assert srv.requests[-1].status == 200


# --------------------------------------------------------------------------- programming


def test_script_is_fifo_per_kind(srv: FakeLLM, sdk: Sdk) -> None:
    srv.script("azure", ["429", "500", "ok", "503"])
    got = [sdk.outcome("azure"), sdk.outcome("openai")]  # OpenAI is not scripted
    got += sdk.outcomes("azure", 4)
    assert got == [
        "RateLimitError",
        "ok",
        "InternalServerError",
        "ok",
        "InternalServerError",
        "ok",
    ]
    assert [r.outcome for r in srv.requests if r.kind == "azure"] == [
        "429",
        "500",
        "ok",
        "503",
        "ok",
    ]
    assert srv.count(kind="azure") == 5
    assert srv.count(kind="openai", outcome="ok") == 1


def test_most_specific_scope_wins(srv: FakeLLM, sdk: Sdk) -> None:
    srv.script("azure", ["503", "503"])
    srv.script("azure", ["429"], target="dep-a")
    srv.script("*", ["400"])
    assert sdk.outcome("azure", target="dep-a") == "RateLimitError"  # (azure, dep-a)
    assert sdk.outcome("azure", target="dep-a") == "InternalServerError"  # (azure, *)
    assert sdk.outcome("azure", target="dep-b") == "InternalServerError"  # (azure, *)
    assert sdk.outcome("openai") == "BadRequestError"  # (*, *)
    assert sdk.outcome("azure", target="dep-a") == "ok"
    srv.script("openai", ["500"], target="gpt-4o")
    assert sdk.outcome("openai", target="gpt-4o-mini") == "ok"
    assert sdk.outcome("openai", target="gpt-4o") == "InternalServerError"
    assert all(scope["script_remaining"] == [] for scope in srv.stats()["scopes"])


def test_mix_with_seed_is_reproducible(srv: FakeLLM, sdk: Sdk) -> None:
    mix = {"429": 0.15, "500": 0.15, "503": 0.1, "content_filter": 0.1}

    def run_sequence(seed: int) -> list[str]:
        srv.reset()
        srv.set_mix("openai", mix, seed=seed)
        sdk.outcomes("openai", 40)
        return [r.outcome for r in srv.requests]

    first = run_sequence(7)
    assert run_sequence(7) == first
    assert run_sequence(8) != first
    assert set(first) - {"ok"}, "a 50% fault mix over 40 calls produced no fault"
    assert set(first) <= {"ok", "429", "500", "503", "content_filter"}
    assert "ok" in first
    assert sdk.outcome("azure") == "ok"  # Azure has no mix


def test_script_takes_precedence_over_mix(srv: FakeLLM, sdk: Sdk) -> None:
    srv.set_mix("azure", {"500": 1.0})
    srv.script("azure", ["ok"])
    assert sdk.outcomes("azure", 2) == ["ok", "InternalServerError"]
    srv.configure("azure", mix={})
    assert sdk.outcome("azure") == "ok"


def test_latency_applies_per_scope_and_per_outcome(srv: FakeLLM, sdk: Sdk) -> None:
    # A held answer shows as the client's timeout firing first: 0.3 s against 30 s.
    srv.set_latency(30_000, kind="azure")
    assert sdk.outcome("azure", timeout=0.3) == "APITimeoutError"
    srv.script("azure", ["503"])
    assert sdk.outcome("azure", timeout=0.3) == "APITimeoutError"  # errors wait too
    assert srv.count(kind="azure", outcome="503") == 1
    srv.script("azure", ["429:latency-ms=0"])
    assert sdk.outcome("azure", timeout=0.3) == "RateLimitError"  # its own latency: none
    assert sdk.outcome("openai", timeout=0.3) == "ok"  # another scope is not held
    srv.set_latency(50, jitter_ms=30)
    scopes = {(s["kind"], s["target"]): s for s in srv.stats()["scopes"]}
    assert scopes[("*", "*")]["latency_ms"] == 50
    assert scopes[("*", "*")]["jitter_ms"] == 30
    srv.clear_faults()
    assert srv.stats()["scopes"] == [
        {
            "kind": "*",
            "target": "*",
            "script_remaining": [],
            "mix": None,
            "latency_ms": 0.0,
            "jitter_ms": 0.0,
        }
    ]


def test_concurrent_requests_overlap_their_latency(
    srv: FakeLLM, sdk: Sdk, runner: asyncio.Runner
) -> None:
    srv.set_latency(100)

    async def scenario() -> None:
        await asyncio.gather(*(sdk.acreate("openai") for _ in range(16)))

    runner.run(scenario())
    assert srv.stats()["max_in_flight"] >= 2  # requests were held at the same time


def test_bad_specs_are_rejected_up_front(srv: FakeLLM) -> None:
    for spec in ("nope", "429:retry-after=soon", "500:retry-after=1", "429:bogus=1", "302"):
        with pytest.raises(ValueError):
            parse_outcome(spec)
    with pytest.raises(ValueError):
        parse_outcome("429:x")
    with pytest.raises(ValueError):
        srv.set_mix("openai", {"429": 0.7, "500": 0.5})
    with pytest.raises(ValueError):
        srv.script("bedrock", ["ok"])
    with pytest.raises(ValueError):
        srv.control({"kind": "azure", "scrip": ["429"]})
    outcome = parse_outcome("429:retry-after-ms=200,retry-after=1,latency-ms=0")
    assert outcome.status == 429
    assert dict(outcome.headers) == {"retry-after-ms": "200", "retry-after": "1"}
    assert outcome.latency_ms == 0


def test_records_are_bounded_but_counters_are_not(runner: asyncio.Runner) -> None:
    with own_server(runner, max_recorded=3) as (fake, clients):
        assert clients.outcomes("openai", 5) == ["ok"] * 5
        assert len(fake.requests) == 3
        assert fake.count() == 5
        fake.clear_stats()
        assert fake.requests == [] and fake.count() == 0


def test_reset_restores_constructor_settings(srv: FakeLLM, sdk: Sdk) -> None:
    srv.script("*", ["500"])
    srv.update_settings(azure_keys=["other"], reply_tokens=2)
    assert sdk.outcome("azure") == "AuthenticationError"
    srv.reset()
    assert srv.count() == 0
    result = sdk.create("azure")  # key list, reply length and script are back to defaults
    assert result.usage is not None and result.usage.completion_tokens == 24


# --------------------------------------------------------------------------- HTTP plumbing


def test_keep_alive_reuses_one_connection(srv: FakeLLM, sdk: Sdk) -> None:
    sdk.outcomes("openai", 10)
    assert srv.stats()["connections_total"] <= 1  # 0 if the pool kept one from before


def test_connection_close_and_chunked_body(srv: FakeLLM) -> None:
    body = json.dumps({"model": "m", "messages": USER_MSG}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked
    )
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):  # the server closes after the response
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in head.lower()
    assert json.loads(payload)["object"] == "chat.completion"


def test_control_and_stats_over_http_on_the_in_process_server(srv: FakeLLM, sdk: Sdk) -> None:
    remote = FakeLLMClient(srv.port)
    stats = remote.control(
        {
            "rules": [
                {"kind": "azure", "script": ["429:retry-after=2"]},
                {"kind": "openai", "target": "gpt-4o", "latency_ms": 5},
            ],
            "deployment_models": {"dep": "gpt-4o-mini"},
        }
    )
    assert stats["requests_total"] == 0
    assert sdk.outcome("azure", target="dep") == "RateLimitError"
    assert sdk.create("azure", target="dep").model == "gpt-4o-mini"
    assert remote.count(kind="azure", outcome="429") == 1
    assert remote.count(kind="azure") == 2
    (last,) = remote.requests(limit=1)
    assert last["headers"]["api-key"] == "***"
    assert last["body"]["messages"] == USER_MSG
    with pytest.raises(ValueError, match="400"):
        remote.control({"mix": {"429": 2.0}})
    remote.reset()
    assert srv.count() == 0


# --------------------------------------------------------------------------- other process


@pytest.mark.slow
def test_separate_process_is_programmed_over_http(runner: asyncio.Runner) -> None:
    with FakeLLMProcess(openai_keys=["sk-test"], deployment_models={"d": "gpt-4o"}) as proc:
        clients = Sdk(runner, proc)
        try:
            proc.script("azure", ["content_filter", "429:x-ms-retry-after-ms=300"])
            proc.script("openai", ["503"])
            assert clients.outcome("openai") == "InternalServerError"
            assert clients.outcome("openai", key="sk-wrong") == "AuthenticationError"
            with pytest.raises(openai.BadRequestError) as err:
                clients.create("azure", target="d")
            assert err.value.code == "content_filter"
            with pytest.raises(openai.RateLimitError) as rl:
                clients.create("azure", target="d")
            assert rl.value.response.headers["x-ms-retry-after-ms"] == "300"
            assert clients.create("azure", target="d").model == "gpt-4o"

            assert proc.count(kind="openai") == 2
            assert proc.count(kind="openai", outcome="401") == 1
            assert proc.count(kind="azure", target="d") == 3
            assert [r["outcome"] for r in proc.requests()] == [
                "503",
                "401",
                "content_filter",
                "429",
                "ok",
            ]
            proc.set_mix("openai", {"500": 1.0}, seed=3)
            assert clients.outcome("openai") == "InternalServerError"
            proc.reset()
            assert proc.count() == 0
            assert clients.outcome("openai") == "ok"
        finally:
            clients.close()


@pytest.mark.slow
def test_a_separate_process_keeps_the_pool_warm(runner: asyncio.Runner) -> None:
    """300 requests at concurrency 32 through AsyncOpenAI reuse the pool's connections.

    How fast it goes is a figure for ``python bench/fake_llm.py``, not a test.
    """
    total, concurrency = 300, 32
    with FakeLLMProcess() as proc:
        clients = Sdk(runner, proc)

        async def scenario() -> None:
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with sem:
                    await clients.acreate(
                        "openai", messages=[{"role": "user", "content": f"Hello fan {i}"}]
                    )

            await one(-1)  # warm up the first connection
            await asyncio.gather(*(one(i) for i in range(total)))

        try:
            runner.run(scenario())
        finally:
            clients.close()
        stats = proc.stats()
    assert stats["requests_total"] == total + 1
    assert count_in_stats(stats, outcome="ok") == total + 1
    assert stats["connections_total"] <= concurrency + 1  # the pool stays warm
