"""The OpenAI-compatible gateway, driven by the real openai SDK (sync, async, streaming).

`serve` runs in a thread on a loopback port with two providers in priority order, both
on the fake upstream: ``azure`` (its Azure route, ``gpt-4o-mini`` on deployment
``mini-deploy``) then ``openai`` (its OpenAI route). Faults are scripted on the fake.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from huntaze_cli.config import load_config
from huntaze_cli.models import CostEvent
from huntaze_cli.storage import open_ledger
from huntaze_testing.fake_llm import FakeLLM
from tests.server.conftest import Served, wait_for

MODEL = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "hello there friend"}]


@pytest.fixture
def upstream() -> Iterator[FakeLLM]:
    with FakeLLM(reply_tokens=6) as server:
        yield server


def write_config(
    tmp_path: Path, upstream: FakeLLM, *, openai_provider: bool = True, extra: str = ""
) -> Path:
    config = tmp_path / "gateway.toml"
    order = '["azure", "openai"]' if openai_provider else '["azure"]'
    text = (
        f"[routing]\norder = {order}\n"
        "circuit_failure_threshold = 50\nbackoff_base_s = 0.01\nbackoff_max_s = 0.02\n\n"
        f'[providers.azure]\nkind = "azure"\nendpoint = "{upstream.azure_endpoint}"\n'
        f'api_key_env = "FAKE_KEY"\ndeployments = {{ "{MODEL}" = "mini-deploy" }}\n\n'
    )
    if openai_provider:
        text += (
            f'[providers.openai]\nkind = "openai"\nbase_url = "{upstream.openai_base_url}"\n'
            'api_key_env = "FAKE_KEY"\n'
        )
    config.write_text(text + extra)
    return config


@pytest.fixture
def gateway(
    serve: Callable[..., Served], upstream: FakeLLM, tmp_path: Path
) -> Callable[..., Served]:
    def start(
        *, env: dict[str, str] | None = None, openai_provider: bool = True, extra: str = ""
    ) -> Served:
        config = write_config(tmp_path, upstream, openai_provider=openai_provider, extra=extra)
        return serve(
            worker=False,
            env={"HUNTAZE_CONFIG": str(config), "FAKE_KEY": "upstream-secret", **(env or {})},
        )

    return start


def sdk(served: Served, key: str = "anything") -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)


def events(served: Served, count: int) -> list[CostEvent]:
    """The ledger's events once there are ``count`` of them (cost events are batched)."""
    ledger = open_ledger(load_config())
    try:
        return list(
            wait_for(lambda: (found := list(ledger.events())) and len(found) >= count and found)
        )
    finally:
        ledger.close()


def test_completion_passes_the_body_through_and_says_who_served(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hello there friend"}]},
    ]
    raw = sdk(served).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=messages,
        temperature=0.3,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
        n=1,
        user="fan-42",
        max_completion_tokens=5,
        extra_body={"huntaze_unknown": {"kept": [1, 2]}},
        extra_headers={"X-Huntaze-Account": "creator_1", "X-Huntaze-Campaign": "camp_9"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hi hello there friend hello"
    assert completion.choices[0].finish_reason == "length"
    assert raw.headers["x-huntaze-provider"] == "azure"
    sent = upstream.requests[-1]
    assert sent.path == "/openai/deployments/mini-deploy/chat/completions"
    assert sent.body == {
        "model": "mini-deploy",
        "messages": messages,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "n": 1,
        "user": "fan-42",
        "max_completion_tokens": 5,
        "huntaze_unknown": {"kept": [1, 2]},
    }
    (event,) = events(served, 1)
    assert (event.provider, event.model, event.status) == ("azure", MODEL, "ok")
    assert (event.input_tokens, event.output_tokens) == (
        completion.usage.prompt_tokens,  # type: ignore[union-attr]
        completion.usage.completion_tokens,  # type: ignore[union-attr]
    )
    assert (event.account, event.campaign_id, event.tenant) == ("creator_1", "camp_9", "default")
    assert event.route_reason == "priority"
    assert event.cost_nano > 0
    assert raw.headers["x-huntaze-cost-usd"] == f"{event.cost_nano / 1e9:.9f}"


def test_tool_calls_and_json_mode_round_trip_unchanged(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    direct = openai.OpenAI(base_url=upstream.openai_base_url, api_key="k", max_retries=0)
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "send_dm",
                "description": "send a direct message",
                "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
            },
        }
    ]
    history: list[Any] = [
        *HELLO,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "send_dm", "arguments": '{"text": "hi"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sent"},
    ]
    kwargs: dict[str, Any] = {"messages": history, "tools": tools, "tool_choice": "auto"}
    through = sdk(served).chat.completions.create(model=MODEL, **kwargs)
    assert upstream.requests[-1].body == {"model": "mini-deploy", **kwargs}
    straight = direct.chat.completions.create(model=MODEL, **kwargs)
    # The upstream's answer as it came (ids differ per call, nothing else).
    got, want = through.choices[0].model_dump(), straight.choices[0].model_dump()
    for answer in (got, want):
        for call in answer["message"]["tool_calls"]:
            call["id"] = "x"
        answer.pop("content_filter_results", None)
    assert got == want
    assert got["finish_reason"] == "tool_calls"
    assert got["message"]["tool_calls"][0]["function"]["name"] == "send_dm"

    fmt: Any = {"type": "json_object"}
    answer = sdk(served).chat.completions.create(model=MODEL, messages=HELLO, response_format=fmt)
    assert upstream.requests[-1].body["response_format"] == fmt
    assert json.loads(answer.choices[0].message.content or "") == {
        "reply": "Hi hello there friend hello there"
    }


def test_stream_forwards_chunks_and_prices_from_the_usage_chunk(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    client = sdk(served)
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=HELLO, stream=True
    ) as response:
        assert response.headers["x-huntaze-provider"] == "azure"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    # Usage was asked of the upstream for pricing, not forwarded to a client that did not.
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(chunk.choices or not chunk.usage for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi hello there friend hello there"
    (event,) = events(served, 1)
    assert (event.status, event.output_tokens, event.input_tokens) == ("ok", 6, 4)
    assert event.cost_nano > 0

    asked = list(
        client.chat.completions.create(
            model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert asked[-1].choices == []
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 6


def test_async_client_plain_and_streamed(gateway: Callable[..., Served]) -> None:
    served = gateway()

    async def run() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="k", max_retries=0)
        async with client:
            plain, stream = await asyncio.gather(
                client.chat.completions.create(model=MODEL, messages=HELLO),  # type: ignore[arg-type]
                client.chat.completions.create(model=MODEL, messages=HELLO, stream=True),  # type: ignore[arg-type]
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return plain.choices[0].message.content or "", text

    plain, streamed = asyncio.run(run())
    assert plain == streamed == "Hi hello there friend hello there"
    assert {e.status for e in events(served, 2)} == {"ok"}


@pytest.mark.parametrize("fault", ["429", "500", "503", "content_filter"])
def test_a_fault_fails_over_to_the_next_provider(
    gateway: Callable[..., Served], upstream: FakeLLM, fault: str
) -> None:
    served = gateway()
    upstream.script("azure", [fault])
    raw = sdk(served).chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    assert raw.headers["x-huntaze-provider"] == "openai"
    assert raw.parse().choices[0].message.content
    failed, ok = sorted(events(served, 2), key=lambda e: e.status)
    kind = {"429": "rate_limited", "content_filter": "content_filter"}.get(fault, "server_error")
    assert (failed.provider, failed.status, failed.error_kind) == ("azure", "error", kind)
    assert (ok.provider, ok.route_reason) == ("openai", f"fallback:{kind}")


def test_stream_fails_over_before_its_first_byte(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    upstream.script("azure", ["503"])
    with sdk(served).chat.completions.with_streaming_response.create(
        model=MODEL, messages=HELLO, stream=True
    ) as response:
        assert response.headers["x-huntaze-provider"] == "openai"
        assert "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)


def test_a_stream_cut_mid_answer_ends_with_an_error_event_and_is_recorded(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    upstream.script("azure", ["stream_drop"])
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in sdk(served).chat.completions.create(model=MODEL, messages=HELLO, stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert received  # the client had bytes: no failover after the first one
    (event,) = events(served, 1)
    assert (event.provider, event.status, event.error_kind) == ("azure", "error", "connection")
    assert upstream.count(kind="openai") == 0


def test_client_hanging_up_mid_stream_cancels_the_upstream_call(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    upstream.script("azure", ["ok:event-ms=200"])
    body = {"model": MODEL, "messages": HELLO, "stream": True}
    url = served.url + "/v1/chat/completions"
    with httpx.Client(timeout=30) as client, client.stream("POST", url, json=body) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    wait_for(lambda: upstream.stats()["streams_abandoned"] == 1)
    (event,) = events(served, 1)
    assert (event.provider, event.status, event.error_kind) == ("azure", "error", "cancelled")


def test_every_provider_failing_is_a_502_in_openai_shape_naming_no_secret(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    upstream.configure("*", mix={"500": 1.0})
    with pytest.raises(openai.InternalServerError) as failed:
        sdk(served).chat.completions.create(model=MODEL, messages=HELLO)
    assert failed.value.status_code == 502
    body: Any = failed.value.body
    assert body["type"] == "api_error" and body["code"] == "upstream_failed"
    assert "no attempt succeeded" in body["message"]
    assert "upstream-secret" not in json.dumps(body)


def test_rate_limited_everywhere_is_a_429(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    upstream.configure("*", mix={"429:retry-after-ms=1": 1.0})
    with pytest.raises(openai.RateLimitError) as limited:
        sdk(served).chat.completions.create(model=MODEL, messages=HELLO)
    assert limited.value.code == "rate_limit_exceeded"


def test_bad_requests_are_400_naming_the_field(gateway: Callable[..., Served]) -> None:
    served = gateway()
    client = served.client()
    for body, param in (
        ({"messages": HELLO}, "model"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"content": "x"}]}, "messages"),
        ({"model": MODEL, "messages": HELLO, "stream": "yes"}, "stream"),
    ):
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", param)
    response = client.post("/v1/chat/completions", content=b"{nope")
    assert response.status_code == 400
    bad_tag = client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": HELLO},
        headers={"X-Huntaze-Account": "x" * 300},
    )
    assert bad_tag.status_code == 400
    assert bad_tag.json()["error"]["param"] == "X-Huntaze-Account"
    assert list(open_ledger(load_config()).events()) == []


def test_only_a_post_is_diverted_past_fastapi(gateway: Callable[..., Served]) -> None:
    # Guard answers POST /v1/chat/completions itself; other methods stay FastAPI's.
    served = gateway()
    client = served.client()
    assert client.get("/v1/chat/completions").status_code == 405
    answer = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert answer.status_code == 200 and answer.headers["x-huntaze-provider"] == "azure"


def test_the_upstream_refusing_the_request_is_its_4xx_without_failover(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway()
    upstream.script("azure", ["400"])
    with pytest.raises(openai.BadRequestError):
        sdk(served).chat.completions.create(model=MODEL, messages=HELLO)
    assert upstream.count(kind="openai") == 0


def test_unknown_model_is_404_and_models_lists_the_routable_ones(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway(openai_provider=False)
    client = sdk(served)
    assert [m.id for m in client.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-unknown", messages=HELLO)
    assert missing.value.code == "model_not_found"
    assert upstream.count() == 0


def test_a_token_guards_the_gateway_with_openai_401s(gateway: Callable[..., Served]) -> None:
    served = gateway(env={"HUNTAZE_SERVER__TOKEN_ENV": "GW_TOKEN", "GW_TOKEN": "s3cret"})
    with pytest.raises(openai.AuthenticationError) as denied:
        sdk(served, key="wrong").chat.completions.create(model=MODEL, messages=HELLO)
    assert denied.value.code == "invalid_api_key"
    answer = sdk(served, key="s3cret").chat.completions.create(model=MODEL, messages=HELLO)
    assert answer.choices[0].message.content


def test_a_tenant_tokens_calls_are_booked_to_its_tenant(gateway: Callable[..., Served]) -> None:
    served = gateway(
        env={"GW_ADMIN": "admin-secret", "GW_A": "a-secret"},
        extra='\n[server]\ntoken_env = "GW_ADMIN"\n\n[tenants.agency_a]\ntoken_env = "GW_A"\n',
    )
    sdk(served, key="a-secret").chat.completions.create(model=MODEL, messages=HELLO)
    sdk(served, key="admin-secret").chat.completions.create(model=MODEL, messages=HELLO)
    assert sorted(e.tenant for e in events(served, 2)) == ["agency_a", "default"]


BUDGETED = (
    '\n[server]\ntoken_env = "GW_ADMIN"\n\n[tenants.agency_a]\ntoken_env = "GW_A"\n\n'
    "[budgets]\nreservation_ttl_s = 600\n\n"
    '[[budgets.rules]]\nname = "agency_a-day"\nscope = { tenant = "agency_a" }\n'
    'period = "day"\nlimit_usd = "{limit}"\n'
)
TOKENS = {"GW_ADMIN": "admin-secret", "GW_A": "a-secret"}


def test_a_full_budget_answers_429_budget_exceeded(
    gateway: Callable[..., Served], upstream: FakeLLM
) -> None:
    served = gateway(env=TOKENS, extra=BUDGETED.replace("{limit}", "0.000001"))
    with pytest.raises(openai.RateLimitError) as refused:
        sdk(served, key="a-secret").chat.completions.create(model=MODEL, messages=HELLO)
    assert refused.value.code == "budget_exceeded"
    assert "agency_a-day" in refused.value.message
    assert upstream.count() == 0  # refused before any provider was called
    # The budget covers agency_a only: the admin's traffic goes on.
    answer = sdk(served, key="admin-secret").chat.completions.create(model=MODEL, messages=HELLO)
    assert answer.choices[0].message.content


def test_a_streamed_call_settles_its_budget_reservation(gateway: Callable[..., Served]) -> None:
    served = gateway(env=TOKENS, extra=BUDGETED.replace("{limit}", "1"))
    stream = sdk(served, key="a-secret").chat.completions.create(
        model=MODEL, messages=HELLO, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    [event] = events(served, 1)

    def settled() -> dict[str, Any] | None:
        answer = httpx.get(
            served.url + "/api/v2/costs/budgets",
            headers={"Authorization": "Bearer admin-secret"},
        )
        [budget] = [b for b in answer.json()["budgets"] if b["name"] == "agency_a-day"]
        return budget if budget["reserved_nano"] == 0 and budget["spent_nano"] else None

    budget = wait_for(settled)
    assert budget["spent_nano"] == event.cost_nano > 0
