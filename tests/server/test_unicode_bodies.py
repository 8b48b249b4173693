"""Any Unicode in a campaign body, lone surrogates included, gets 202 or 422, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import Served

CAMPAIGNS = "/api/v2/campaigns/hybrid"


def _body(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "n",
        "account": "a",
        "prompt": "Hi {name}",
        "recipients": [{"id": "f1", "name": "x"}],
    }
    body.update(change)
    return body


def _post_raw(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    # json.dumps escapes a lone surrogate as \ud800, which is valid JSON text.
    return client.post(
        CAMPAIGNS, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )


def test_lone_surrogate_is_a_422_naming_the_problem(serve: Callable[..., Served]) -> None:
    client = serve(worker=False).client()
    for change in ({"name": "x\ud800"}, {"recipients": [{"id": "f\udfff", "name": "y"}]}):
        response = _post_raw(client, _body(**change))
        assert response.status_code == 422, response.text
        assert "surrogate" in response.text


def test_unicode_edge_cases_never_get_a_server_error(serve: Callable[..., Served]) -> None:
    client = serve(worker=False).client()
    edge = st.sampled_from(["\ud800", "\udfff", "\x00", "\u202e", "\ufeff", "[/]", "{", "}"])
    char = st.one_of(edge, st.characters(codec=None, exclude_categories=()))
    text = st.lists(char, max_size=8).map("".join)

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(name=text, account=text, prompt=text, rid=text, field=text)
    def check(name: str, account: str, prompt: str, rid: str, field: str) -> None:
        body = _body(
            name=name, account=account, prompt=prompt, recipients=[{"id": rid, "name": field}]
        )
        response = _post_raw(client, body)
        assert response.status_code in (202, 422), (body, response.status_code, response.text)

    check()
