"""Every route of `huntaze serve` over real HTTP, against a daemon in a thread."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from huntaze_cli.config import load_config
from tests.helpers import run
from tests.server.conftest import Served, campaign, outbox, wait_for

CAMPAIGNS = "/api/v2/campaigns/hybrid"
STATUS = "/api/v2/campaigns/status"
HEALTH = "/api/health/hybrid-orchestrator"
BREAKDOWN = "/api/v2/costs/breakdown"
STATS = "/api/v2/costs/stats"


def status_of(client: httpx.Client, campaign_id: str) -> dict[str, Any]:
    response = client.get(STATUS, params={"campaign_id": campaign_id})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_post_is_generated_then_delivered(serve: Callable[..., Served]) -> None:
    client = serve().client()
    response = client.post(CAMPAIGNS, json=campaign(4))
    assert response.status_code == 202, response.text
    report = response.json()
    assert report["state"] == "generating" and report["recipients"] == 4
    assert report["resumed"] is False
    cid = report["campaign_id"]
    final = wait_for(
        lambda: (r := status_of(client, cid))["state"] == "completed" and r, timeout=20
    )
    assert final["counts"]["sent"] == 4
    keys = sorted(line["idempotency_key"] for line in outbox())
    assert keys == sorted(f"{cid}:fan_{n}" for n in range(4))
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for needle in (
        'huntaze_deliveries_total{outcome="sent"} 4.0',
        'huntaze_generations_total{outcome="ok"} 4.0',
        'huntaze_ratelimit_acquires_total{outcome="granted"} 4.0',
        'huntaze_llm_requests_total{model="gpt-4o-mini",provider="simulated"} 4.0',
    ):
        assert needle in text, needle
    assert "huntaze_ledger_write_seconds_count" in text
    # The cost events reach the ledger in a batch shortly after generation.
    wait_for(lambda: 'huntaze_ledger_events_total{result="stored"} 4.0' in client.get(
        "/metrics").text)  # fmt: skip


def test_queue_depth_per_account_is_a_metric(serve: Callable[..., Served]) -> None:
    client = serve(worker=False).client()
    cid = client.post(CAMPAIGNS, json=campaign(3, account="creator_q")).json()["campaign_id"]
    wait_for(lambda: status_of(client, cid)["counts"]["queued"] == 3)
    text = client.get("/metrics").text
    assert 'huntaze_queue_depth{account="creator_q",state="queued"} 3.0' in text
    assert 'huntaze_queue_depth{account="creator_q",state="in_flight"} 0.0' in text


def _without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def test_http_answers_the_same_json_as_the_cli(serve: Callable[..., Served]) -> None:
    client = serve(worker=False).client()
    cid = client.post(CAMPAIGNS, json=campaign(5)).json()["campaign_id"]
    # Generation done and its cost events written: nothing changes any more.
    wait_for(lambda: (r := status_of(client, cid))["state"] == "delivering" and r["providers"])
    assert status_of(client, cid) == run("status", cid, "--json").json()
    overview = client.get(STATUS)
    assert overview.status_code == 200
    assert overview.json() == run("status", "--json").json()
    assert overview.json()["queue"] == {"creator_t": {"queued": 5, "in_flight": 0, "dead": 0}}
    params = [("by", "provider"), ("by", "model"), ("days", "7")]
    http = client.get(BREAKDOWN, params=params)
    assert http.status_code == 200
    cli = run("costs", "breakdown", "--by", "provider", "--by", "model", "--days", "7", "--json")
    assert http.json() == cli.json()
    assert http.json()["total"]["requests"] == 5
    stats = client.get(STATS).json()
    cli_stats = run("costs", "stats", "--json").json()
    for report in (stats, cli_stats):  # moves on at 15-minute boundaries only
        report["last_hour"].pop("since")
    assert _without(stats, "generated_at") == _without(cli_stats, "generated_at")
    assert stats["today"]["requests"] == 5
    health = client.get(HEALTH)
    assert health.status_code == 200
    cli_health = run("health", "--json")
    assert cli_health.exit_code == 0
    assert _without(health.json(), "checked_at") == _without(cli_health.json(), "checked_at")


@pytest.fixture
def client(serve: Callable[..., Served]) -> Iterator[httpx.Client]:
    yield serve(worker=False).client()


@pytest.mark.parametrize(
    ("change", "loc", "needle"),
    [
        ({"name": None}, ["body", "name"], "Field required"),
        ({"bogus": 1}, ["body", "bogus"], "Extra inputs"),
        ({"recipients_file": "/etc/passwd"}, ["body", "recipients_file"], "no local files"),
        ({"recipients": []}, ["body", "recipients"], "at least 1"),
        ({"temperature": 9}, ["body", "temperature"], "less than or equal"),
        ({"prompt": "Hi {name!r}"}, ["body", "prompt"], "plain field name"),
        ({"provider": "nowhere"}, ["body", "provider"], "unknown provider 'nowhere'"),
        (
            {"recipients": [{"id": "a", "name": "A", "interest": "x"}] * 2},
            ["body", "recipients"],
            "duplicate recipient id 'a'",
        ),
        (
            {"recipients": [{"id": "a", "name": "A"}]},
            ["body", "recipients"],
            "interest: missing",
        ),
        ({"recipients": [{"name": "A", "interest": "x"}]}, ["body", "recipients"], "id: missing"),
    ],
)
def test_bad_campaigns_are_422_field_errors_and_store_nothing(
    client: httpx.Client, change: dict[str, Any], loc: list[str], needle: str
) -> None:
    body = {k: v for k, v in {**campaign(2), **change}.items() if v is not None}
    response = client.post(CAMPAIGNS, json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert isinstance(errors, list) and errors
    assert any(e["loc"] == loc and needle in e["msg"] for e in errors), errors
    assert client.get(STATUS).json()["campaigns"] == []


def test_malformed_json_is_422(client: httpx.Client) -> None:
    response = client.post(
        CAMPAIGNS, content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "traceback" not in response.text.lower()


def test_idempotency_key_returns_the_existing_campaign(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "nov-ppv"}
    first = client.post(CAMPAIGNS, json=campaign(2), headers=headers)
    second = client.post(CAMPAIGNS, json=campaign(2), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["campaign_id"] == second.json()["campaign_id"]
    assert first.json()["resumed"] is False and second.json()["resumed"] is True
    assert second.json()["idempotency_key"] == "nov-ppv"
    assert len(client.get(STATUS).json()["campaigns"]) == 1


def test_unknown_campaign_is_404(client: httpx.Client) -> None:
    response = client.get(STATUS, params={"campaign_id": "cmp_nope"})
    assert response.status_code == 404
    assert response.json() == {"detail": "campaign 'cmp_nope' not found"}


@pytest.mark.parametrize(
    ("params", "cli_args"),
    [
        ([("by", "bogus")], ["--by", "bogus"]),
        ([("since", "yesterday-ish")], ["--since", "yesterday-ish"]),
        ([("days", "0")], ["--days", "0"]),
        ([("days", "3"), ("since", "2026-01-01")], ["--days", "3", "--since", "2026-01-01"]),
        ([("since", "2026-02-01"), ("until", "2026-01-01")],
         ["--since", "2026-02-01", "--until", "2026-01-01"]),
    ],
)  # fmt: skip
def test_bad_breakdown_values_give_the_cli_message_naming_the_query_field(
    client: httpx.Client, params: list[tuple[str, str]], cli_args: list[str]
) -> None:
    response = client.get(BREAKDOWN, params=params)
    assert response.status_code == 422
    cli = run("costs", "breakdown", *cli_args, "--json")
    assert cli.exit_code == 2
    cli_message = cli.stderr.splitlines()[0].removeprefix("error: ")
    detail = response.json()["detail"]
    # The same message; the CLI names its flags, the API its query fields.
    assert f"--{params[0][0]}" in cli_message and "--" not in detail
    assert detail.startswith(params[0][0])
    assert response.json() == {"detail": re.sub(r"--([a-z]+)", r"\1", cli_message)}


def test_non_integer_days_is_a_field_error(client: httpx.Client) -> None:
    response = client.get(BREAKDOWN, params={"days": "many"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "days"]


def test_stats_are_cached_and_invalidated_by_new_cost_events(
    serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = serve(worker=False)
    client = served.client()
    runtime = served.daemon.runtime
    computed = []
    compute = runtime.stats_json
    monkeypatch.setattr(runtime, "stats_json", lambda: computed.append(1) or compute())
    responses = [client.get(STATS) for _ in range(20)]
    assert {r.status_code for r in responses} == {200}
    assert responses[0].headers["content-type"] == "application/json"
    assert 1 <= len(computed) <= 2  # once, or twice if the 1 s expired in between
    assert len({r.content for r in responses}) == len(computed)
    cid = client.post(CAMPAIGNS, json=campaign(3)).json()["campaign_id"]
    wait_for(lambda: status_of(client, cid)["providers"].get("simulated", {}).get("requests") == 3)
    # This process wrote cost events: the next answer is fresh, not up to 1 s old.
    assert client.get(STATS).json()["today"]["requests"] == 3


@pytest.mark.parametrize(
    ("providers", "code", "status"),
    [
        ({"SIM": "simulated"}, 200, "healthy"),
        ({"SIM": "simulated", "OPENAI": "openai"}, 200, "degraded"),
        ({"OPENAI": "openai"}, 503, "unhealthy"),
    ],
)
def test_health_status_codes(
    serve: Callable[..., Served], providers: dict[str, str], code: int, status: str
) -> None:
    env = {f"HUNTAZE_PROVIDERS__{name}__KIND": kind for name, kind in providers.items()}
    # The openai provider's key variable is unset: it cannot serve.
    env["HUNTAZE_PROVIDERS__OPENAI__API_KEY_ENV"] = "HUNTAZE_TEST_MISSING_KEY"
    if "OPENAI" not in providers:
        del env["HUNTAZE_PROVIDERS__OPENAI__API_KEY_ENV"]
    response = serve(worker=False, env=env).client().get(HEALTH)
    assert response.status_code == code
    report = response.json()
    assert report["status"] == status
    if "OPENAI" in providers:
        assert "HUNTAZE_TEST_MISSING_KEY" in report["providers"]["openai"]["detail"]


def test_bodies_over_the_limit_are_413(serve: Callable[..., Served]) -> None:
    client = serve(worker=False, env={"HUNTAZE_SERVER__MAX_BODY_BYTES": "2048"}).client()
    big = campaign(200)
    response = client.post(CAMPAIGNS, json=big)
    assert response.status_code == 413
    assert "2,048" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the daemon counts the bytes
        for _ in range(10):
            yield b" " * 1000

    streamed = client.post(
        CAMPAIGNS, content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert client.post(CAMPAIGNS, json=campaign(2)).status_code == 202
    assert len(client.get(STATUS).json()["campaigns"]) == 1


TOKEN = "tok-0123456789-abcdef"


def test_bearer_token_guards_api_and_metrics(serve: Callable[..., Served]) -> None:
    served = serve(
        worker=False,
        env={"HUNTAZE_SERVER__TOKEN_ENV": "HUNTAZE_TEST_TOKEN", "HUNTAZE_TEST_TOKEN": TOKEN},
    )
    anonymous = served.client()
    wrong = served.client(headers={"Authorization": "Bearer tok-0123456789-abcdeX"})
    right = served.client(headers={"Authorization": f"Bearer {TOKEN}"})
    for path in (STATS, HEALTH, BREAKDOWN, STATUS, "/metrics"):
        for who in (anonymous, wrong):
            response = who.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in response.text
        assert right.get(path).status_code == 200, path
    assert anonymous.post(CAMPAIGNS, json=campaign(2)).status_code == 401
    assert right.post(CAMPAIGNS, json=campaign(2)).status_code == 202
    # The API description stays readable without a token; it holds no data.
    assert anonymous.get("/openapi.json").status_code == 200
    assert anonymous.get("/docs").status_code == 200
    basic = served.client(headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.get(STATS).status_code == 401


def test_refuses_a_public_address_without_a_token() -> None:
    result = run("serve", "--host", "0.0.0.0", "--port", "0")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: --host 0.0.0.0: refusing") and "token" in lines[0]


def test_a_named_but_unset_token_variable_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUNTAZE_SERVER__TOKEN_ENV", "HUNTAZE_TEST_UNSET_TOKEN")
    result = run("serve", "--port", "0")
    assert result.exit_code == 2
    assert "HUNTAZE_TEST_UNSET_TOKEN is not set" in result.stderr


def test_openapi_document_lists_every_route(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert {CAMPAIGNS, STATUS, HEALTH, BREAKDOWN, STATS, "/metrics"} <= set(document["paths"])
    post = document["paths"][CAMPAIGNS]["post"]
    assert "202" in post["responses"]
    assert post["security"] == [{"bearer": []}]
    body = document["components"]["schemas"]["CampaignBody"]
    assert "recipients" in body["required"]


def test_unknown_route_is_404_json(client: httpx.Client) -> None:
    response = client.get("/api/v2/nothing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_data_lives_in_the_test_dir(client: httpx.Client) -> None:
    assert client.post(CAMPAIGNS, json=campaign(1)).status_code == 202
    assert load_config().campaigns_path.exists()
