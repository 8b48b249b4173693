"""Provider adapters: the real openai SDK against the local fake server, and the simulator."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import httpx2
import openai
import pytest

from huntaze_cli.config import DEFAULT_AZURE_API_VERSION, Config, ProviderConfig
from huntaze_cli.errors import ConfigError
from huntaze_cli.llm.providers import (
    AzureProvider,
    OpenAIProvider,
    SimulatedProvider,
    build_providers,
    classify,
    effective_provider_configs,
    parse_completion,
)
from huntaze_cli.llm.types import Completion, GenerationRequest, Message, ProviderFailure
from huntaze_testing.fake_llm import FakeLLM

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
AZURE_KEY = "az-test-azure-fedcba9876543210"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLM]:
    # Every prompt token counts as cached, so cached usage is visible on small prompts.
    with FakeLLM(
        openai_keys=[OPENAI_KEY],
        azure_keys=[AZURE_KEY],
        cache_min_tokens=8,
        cache_block=4,
        timeout_sleep_s=2.0,
    ) as srv:
        yield srv


@pytest.fixture
def fake(server: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    server.reset()
    monkeypatch.setenv("TEST_OPENAI_KEY", OPENAI_KEY)
    monkeypatch.setenv("TEST_AZURE_KEY", AZURE_KEY)
    return server


def openai_provider(fake: FakeLLM, **kwargs: Any) -> OpenAIProvider:
    cfg = ProviderConfig(
        kind="openai", base_url=fake.openai_base_url, api_key_env="TEST_OPENAI_KEY"
    )
    return OpenAIProvider("openai", cfg, **kwargs)


def azure_provider(fake: FakeLLM, **settings: Any) -> AzureProvider:
    cfg = ProviderConfig(
        kind="azure", endpoint=fake.azure_endpoint, api_key_env="TEST_AZURE_KEY", **settings
    )
    return AzureProvider("azure", cfg)


def request(text: str = "Write a thank-you to Alex, who loves cosplay.", **kw: Any) -> Any:
    messages = [Message("system", "You write short, warm messages."), Message("user", text)]
    return GenerationRequest(request_id="req-1", model="gpt-4o-mini", messages=messages, **kw)


async def attempt(provider: Any, req: GenerationRequest, *, timeout: float = 5.0) -> Any:
    """One attempt, then close the client: a Completion or the ProviderFailure."""
    try:
        return await provider.complete(req, timeout=timeout)
    except ProviderFailure as failure:
        return failure
    finally:
        await provider.aclose()


# --- success on both wire formats ---------------------------------------------------------


def test_openai_completion_with_usage_and_cached_tokens(fake: FakeLLM) -> None:
    result = run(attempt(openai_provider(fake), request(max_tokens=50, temperature=0.7)))
    assert isinstance(result, Completion)
    assert result.text.startswith("Hi ")
    # 5 system + 8 user words -> ceil(13 x 1.3) = 17 prompt tokens, 16 of them cached.
    assert (result.usage.input_tokens, result.usage.cached_input_tokens) == (17, 16)
    assert result.usage.output_tokens == 24
    assert result.deployment is None
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["max_tokens"] == 50 and sent.body["temperature"] == 0.7
    assert [m["role"] for m in sent.body["messages"]] == ["system", "user"]


def test_unset_max_tokens_and_temperature_are_not_sent(fake: FakeLLM) -> None:
    run(attempt(openai_provider(fake), request()))
    assert "max_tokens" not in fake.requests[-1].body
    assert "temperature" not in fake.requests[-1].body


def test_azure_completion_goes_to_the_mapped_deployment(fake: FakeLLM) -> None:
    provider = azure_provider(fake, deployments={"gpt-4o-mini": "prod-mini-eu"})
    result = run(attempt(provider, request(max_tokens=5)))
    assert isinstance(result, Completion)
    assert result.deployment == "prod-mini-eu"
    assert result.usage.output_tokens == 5
    assert result.usage.cached_input_tokens == 16
    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/prod-mini-eu/chat/completions"
    assert sent.query["api-version"] == DEFAULT_AZURE_API_VERSION


def test_azure_without_a_map_uses_the_model_name_as_deployment(fake: FakeLLM) -> None:
    provider = azure_provider(fake, api_version="2025-01-01-preview")
    assert provider.deployment_for("gpt-4o-mini") == "gpt-4o-mini"
    result = run(attempt(provider, request()))
    assert isinstance(result, Completion) and result.deployment == "gpt-4o-mini"
    assert fake.requests[-1].path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert fake.requests[-1].query["api-version"] == "2025-01-01-preview"


@pytest.mark.parametrize("wire", ["openai", "azure"])
def test_gateway_calls_speak_the_sdks_wire_format(fake: FakeLLM, wire: str) -> None:
    provider = (
        openai_provider(fake)
        if wire == "openai"
        else azure_provider(
            fake, deployments={"gpt-4o-mini": "prod-mini-eu"}, api_version="2025-01-01-preview"
        )
    )
    assert isinstance(run(attempt(provider, request())), Completion)
    raw = run(attempt(provider, passthrough_request()))
    assert isinstance(raw, Completion) and raw.raw and raw.usage.output_tokens
    by_sdk, by_upstream = fake.requests[-2:]
    assert (by_upstream.path, by_upstream.query) == (by_sdk.path, by_sdk.query)
    for header in ("authorization", "api-key", "content-type"):
        assert by_upstream.headers.get(header) == by_sdk.headers.get(header), header
    assert by_upstream.body["model"] == by_sdk.body["model"]


def test_the_client_is_built_once_and_its_connection_reused(fake: FakeLLM) -> None:
    provider = openai_provider(fake)

    async def three_calls() -> None:
        client = provider.client()
        for _ in range(3):
            await provider.complete(request(), timeout=5)
            assert provider.client() is client
        await provider.aclose()

    run(three_calls())
    assert fake.count(kind="openai", outcome="ok") == 3
    assert fake.stats()["connections_total"] == 1


def test_the_pool_keeps_alive_as_many_connections_as_the_concurrency(fake: FakeLLM) -> None:
    # The SDK's default pool keeps 100 idle connections; at concurrency 150 a second burst
    # would otherwise open 50 new ones.
    fake.set_latency(100)
    provider = openai_provider(fake, concurrency=150)

    async def two_bursts() -> None:
        for _ in range(2):
            await asyncio.gather(*(provider.complete(request(), timeout=10) for _ in range(150)))
        await provider.aclose()

    run(two_bursts())
    assert fake.count(outcome="ok") == 300
    assert fake.stats()["connections_total"] == 150


# --- failures -----------------------------------------------------------------------------

FAULTS = [
    ("500", "server_error", 500),
    ("503", "server_error", 503),
    ("timeout", "timeout", None),
    ("drop", "connection", None),
    ("content_filter", "content_filter", 400),
    ("401", "auth", 401),
    ("403", "auth", 403),
    ("400", "bad_request", 400),
    ("404", "bad_request", 404),
    ("malformed", "malformed", None),
    ("429", "rate_limited", 429),
]


def passthrough_request() -> GenerationRequest:
    """A /v1 gateway request: its body goes out as it is, through ``llm.upstream``."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi Alex!"}]}
    return request(body=body)


# Campaign calls go through the SDK, gateway calls through llm.upstream: same outcomes.
PATHS = pytest.mark.parametrize("make_request", [request, passthrough_request], ids=["sdk", "raw"])


@PATHS
@pytest.mark.parametrize("wire", ["openai", "azure"])
@pytest.mark.parametrize(("spec", "kind", "status"), FAULTS)
def test_each_fault_is_classified(
    fake: FakeLLM,
    wire: str,
    spec: str,
    kind: str,
    status: int | None,
    make_request: Callable[[], GenerationRequest],
) -> None:
    fake.script(wire, [spec])
    provider = openai_provider(fake) if wire == "openai" else azure_provider(fake)
    failure = run(attempt(provider, make_request(), timeout=0.5))
    assert isinstance(failure, ProviderFailure), failure
    assert (failure.kind, failure.status) == (kind, status)
    assert failure.retry_after_s is None
    # One attempt only: the SDK must not retry behind the orchestrator's back.
    assert fake.count(kind=wire) == 1
    assert "\n" not in failure.message
    assert OPENAI_KEY not in failure.message and AZURE_KEY not in failure.message


@pytest.mark.parametrize("wire", ["openai", "azure"])
@pytest.mark.parametrize(
    ("spec", "seconds"),
    [
        ("429:retry-after-ms=200", 0.2),
        ("429:x-ms-retry-after-ms=1500", 1.5),
        ("429:retry-after=3", 3.0),
        ("429:retry-after=7,x-ms-retry-after-ms=300", 0.3),
        ("429:retry-after=7,x-ms-retry-after-ms=300,retry-after-ms=100", 0.1),
    ],
)
@PATHS
def test_rate_limits_carry_the_requested_wait(
    fake: FakeLLM,
    wire: str,
    spec: str,
    seconds: float,
    make_request: Callable[[], GenerationRequest],
) -> None:
    fake.script(wire, [spec])
    provider = openai_provider(fake) if wire == "openai" else azure_provider(fake)
    failure = run(attempt(provider, make_request()))
    assert isinstance(failure, ProviderFailure)
    assert failure.kind == "rate_limited"
    assert failure.retry_after_s == pytest.approx(seconds)


def test_the_api_key_is_scrubbed_from_failure_messages() -> None:
    url = "https://example.openai.azure.com/openai/deployments/d/chat/completions"
    response = httpx2.Response(401, request=httpx2.Request("POST", url))
    exc = openai.AuthenticationError(
        f"Error code: 401 - Incorrect API key provided: {AZURE_KEY}.\n"
        f"Sent header Authorization: Bearer {OPENAI_KEY}",
        response=response,
        body=None,
    )
    failure = classify(exc, secrets=(AZURE_KEY,))
    assert failure.kind == "auth"
    assert AZURE_KEY not in failure.message and OPENAI_KEY not in failure.message
    assert "\n" not in failure.message


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError(), "timeout"),
        (ConnectionResetError("reset by peer"), "connection"),
        (httpx2.ConnectTimeout("slow"), "timeout"),
        (httpx2.ReadError("gone"), "connection"),
        (httpx2.DecodingError("bad gzip"), "malformed"),
        (ValueError("Expecting value: line 1 column 1"), "malformed"),
        (RuntimeError("bug"), "bad_request"),
    ],
)
def test_plain_and_httpx_exceptions_are_classified(exc: Exception, kind: str) -> None:
    assert classify(exc).kind == kind


def completion(**changes: Any) -> Any:
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Hello!"},
    }
    choice.update(changes.pop("choice", {}))
    data: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
    data.update(changes)
    return json.dumps(data).encode()


def test_a_completion_body_gives_its_text_usage_and_served_model() -> None:
    body = completion(usage={"prompt_tokens": 10, "completion_tokens": 2,
                             "prompt_tokens_details": {"cached_tokens": 4}})  # fmt: skip
    got = parse_completion(body, deployment="d")
    assert (got.text, got.deployment, got.response_model, got.raw) == (
        "Hello!",
        "d",
        "gpt-4o-mini",
        None,
    )
    assert (got.usage.input_tokens, got.usage.cached_input_tokens, got.usage.output_tokens) == (
        10,
        4,
        2,
    )
    # The gateway's pass-through keeps the body as it came and reads no text.
    kept = parse_completion(body, deployment=None, keep_raw=True)
    assert kept.raw == body and kept.text == ""


def test_a_filtered_completion_is_content_filter_with_its_billed_usage() -> None:
    raw = completion(choice={"finish_reason": "content_filter"})
    with pytest.raises(ProviderFailure) as caught:
        parse_completion(raw, deployment="d")
    assert caught.value.kind == "content_filter"
    assert caught.value.usage.input_tokens == 10
    without_usage = completion(choice={"finish_reason": "content_filter"}, usage=None)
    with pytest.raises(ProviderFailure, match="content filter"):
        parse_completion(without_usage, deployment="d")


@pytest.mark.parametrize(
    "response",
    [
        completion(choices=[]),
        completion(choice={"message": {"role": "assistant", "content": None}}),
        completion(usage=None),
        completion(usage={"prompt_tokens": "ten", "completion_tokens": 2}),
        b"<html>502 Bad Gateway</html>",  # a non-JSON 2xx
        b"[1, 2]",
    ],
)
def test_a_completion_without_text_or_usage_is_malformed(response: Any) -> None:
    with pytest.raises(ProviderFailure) as caught:
        parse_completion(response, deployment=None)
    assert caught.value.kind == "malformed"


# --- configuration ------------------------------------------------------------------------


def test_a_missing_key_is_a_config_error_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    config = Config.model_validate(
        {
            "providers": {
                "azure": {
                    "kind": "azure",
                    "endpoint": "http://127.0.0.1:9",
                    "api_key_env": "AZURE_OPENAI_API_KEY",
                }
            }
        }
    )
    provider = build_providers(config)["azure"]  # building needs no key
    with pytest.raises(ConfigError) as caught:
        run(provider.complete(request(), timeout=1))
    message = str(caught.value)
    assert "AZURE_OPENAI_API_KEY" in message
    assert "provider azure" in message and "providers.azure.api_key_env" in message


def test_a_provider_without_api_key_env_names_the_setting() -> None:
    provider = OpenAIProvider("oai", ProviderConfig(kind="openai"))
    with pytest.raises(ConfigError, match=r"providers\.oai\.api_key_env"):
        provider.client()


def test_azure_without_endpoint_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_AZURE_KEY", AZURE_KEY)
    provider = AzureProvider("az", ProviderConfig(kind="azure", api_key_env="TEST_AZURE_KEY"))
    with pytest.raises(ConfigError, match=r"providers\.az\.endpoint"):
        provider.client()


def test_build_providers_keeps_config_order_and_defaults_to_simulated() -> None:
    assert list(effective_provider_configs(Config())) == ["simulated"]
    default = build_providers(Config())
    assert list(default) == ["simulated"]
    assert isinstance(default["simulated"], SimulatedProvider)
    config = Config.model_validate(
        {
            "providers": {
                "openai": {"kind": "openai", "api_key_env": "X"},
                "azure": {"kind": "azure", "api_key_env": "Y"},
                "offline": {"kind": "simulated"},
            }
        }
    )
    providers = build_providers(config)
    assert list(providers) == ["openai", "azure", "offline"]
    assert [p.kind for p in providers.values()] == ["openai", "azure", "simulated"]
    assert [p.name for p in providers.values()] == ["openai", "azure", "offline"]


# --- the simulator ------------------------------------------------------------------------


def test_the_simulator_is_deterministic_and_personal() -> None:
    provider = SimulatedProvider()
    first = run(provider.complete(request(), timeout=1))
    again = run(provider.complete(request(), timeout=1))
    other = run(provider.complete(request("Write a note to Maria, who loves hiking."), timeout=1))
    assert first == again
    assert "Alex" in first.text and "cosplay" in first.text
    assert "Maria" in other.text
    assert first.deployment is None and provider.deployment_for("gpt-4o-mini") is None


def test_the_simulator_counts_tokens_like_a_real_model() -> None:
    result = run(SimulatedProvider().complete(request(), timeout=1))
    # By character class over both messages (llm/tokens.py): 3 priming + 2 x 4 framing
    # + 10 for the system prompt + 16 for the user message.
    assert result.usage.input_tokens == 37
    assert result.usage.output_tokens == -(-len(result.text) // 4)
    capped = run(SimulatedProvider().complete(request(max_tokens=3), timeout=1))
    assert capped.usage.output_tokens == 3
    assert len(capped.text) <= 12


def test_the_simulator_sleeps_its_latency() -> None:
    async def still_running(latency_ms: float) -> bool:
        config = ProviderConfig(kind="simulated", latency_ms=latency_ms)
        task = asyncio.create_task(SimulatedProvider("sim", config).complete(request(), timeout=60))
        for _ in range(20):  # let the event loop run everything that is ready
            await asyncio.sleep(0)
        running = not task.done()
        task.cancel()
        return running

    assert run(still_running(30_000))  # held by its latency
    assert not run(still_running(0))  # nothing else holds it


def test_importing_providers_loads_no_sdk() -> None:
    code = (
        "import sys, huntaze_cli.llm.providers\n"
        "print(sorted(m for m in ('openai', 'httpx', 'httpx2', 'genai_prices', 'aiohttp') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
