"""Tenant isolation on every route of `huntaze serve` (DESIGN.md invariant 10).

Tenant A spends money, has campaigns, a rule and an alert; tenant B has nothing. Then
every route of the app, taken from its OpenAPI document (and any route or mount the
document leaves out), is asked by B's token for A's things: A's ids in the path and the
query, ``tenant=agency_a``, A's tenant in a posted body. B must get its own (empty)
view, 403 or 404, and no trace of A: no id, name or account of A in the body and no
non-zero figure. A route added later without scoping fails here, and so does a route
with a parameter this test does not know how to aim at A (add it to ``AIM``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from huntaze_cli.config import default_config_path
from tests.helpers import run
from tests.server.conftest import Served, campaign, wait_for

ADMIN, TOKEN_A, TOKEN_B = "admin-token-0123456789", "a-token-0123456789", "b-token-0123456789"
ENV = {"T_ADMIN": ADMIN, "T_A": TOKEN_A, "T_B": TOKEN_B}
CONFIG = """
[server]
token_env = "T_ADMIN"

[tenants.agency_a]
token_env = "T_A"

[tenants.agency_b]
token_env = "T_B"

[experiments.exp1]
arms = { control = {}, b = {} }

[[budgets.rules]]
name = "budget-of-a"
scope = { tenant = "agency_a" }
limit_usd = 100

[[budgets.rules]]
name = "budget-of-all"
limit_usd = 100
"""
RULE_A = "rule-of-a"
EXPERIMENT = "exp1"
# Figures that are only non-zero when somebody spent or sent something.
FIGURE = re.compile(
    r"(^|_)(requests|messages|recipients|errors|unpriced|tokens|outcomes|conversions)$"
    r"|_nano$|_usd$"
)
# Figures that describe a rule or a config, not anybody's spend.
NOT_SPEND = re.compile(r"^(limit|threshold|level|estimated|needs)_|_limit_")


def write_config() -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG)


@pytest.fixture
def world(serve: Callable[..., Served]) -> Iterator[dict[str, Any]]:
    write_config()
    served = serve(worker=False, env=ENV)
    a = served.client(headers={"Authorization": f"Bearer {TOKEN_A}"})
    body = campaign(3, account="creator_a", tenant="agency_a", name="Secret A campaign")
    response = a.post("/api/v2/campaigns/hybrid", json=body)
    assert response.status_code == 202, response.text
    campaign_id = response.json()["campaign_id"]

    def generated() -> bool:
        report = a.get("/api/v2/campaigns/status", params={"campaign_id": campaign_id}).json()
        spent = sum(p["requests"] for p in report["providers"].values())
        return report["counts"].get("pending", 0) == 0 and spent > 0

    wait_for(generated, timeout=30)
    rule = {"scope": {}, "period": "day", "limit_usd": "0.000000001", "levels": [1]}
    assert a.put(f"/api/v2/costs/thresholds/{RULE_A}", json=rule).status_code == 200
    assert run("check-thresholds", "--json").exit_code in (0, 3)
    admin = served.client(headers={"Authorization": f"Bearer {ADMIN}"})
    alerts = admin.get("/api/v2/costs/alerts").json()["alerts"]
    alert_ids = [x["alert_id"] for x in alerts if x["rule"] == RULE_A]
    assert alert_ids, alerts
    yield {
        "served": served,
        "campaign_id": campaign_id,
        "alert_id": alert_ids[0],
        "markers": [
            campaign_id,
            "agency_a",
            "creator_a",
            "Secret A",
            RULE_A,
            alert_ids[0],
            "budget-of-a",
            "budget-of-all",
        ],
    }


def _aim(world: dict[str, Any]) -> dict[str, str]:
    """The value of each parameter that points a request at tenant A's data."""
    return {
        "campaign_id": world["campaign_id"],
        "campaign": world["campaign_id"],
        "tenant": "agency_a",
        "name": EXPERIMENT,  # /experiments/{name}; thresholds/{name} gets RULE_A below
        "alert_id": world["alert_id"],
        "by": "tenant",
        "month": "last",
    }


# Path parameters per route when the generic aim is not the right one.
PATH_AIM = {"/api/v2/costs/thresholds/{name}": {"name": RULE_A}}


def _figures(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield f"{path}.{key}", (key, value)
            else:
                yield from _figures(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _figures(value, f"{path}[{index}]")


def _assert_no_trace(response: httpx.Response, markers: list[str], what: str) -> None:
    if response.status_code >= 400:  # an error may name what was asked for, nothing more
        markers = [m for m in markers if m not in what]
    for marker in markers:
        assert marker not in response.text, f"{what}: tenant A's {marker!r} in {response.text}"
    if response.status_code >= 300 or "json" not in response.headers.get("content-type", ""):
        return
    for where, (key, value) in _figures(response.json()):
        if FIGURE.search(key) and not NOT_SPEND.search(key):
            assert value == 0, f"{what}: {where} = {value} (tenant A's spend?)"


def _requests(
    document: dict[str, Any], world: dict[str, Any]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    aim = _aim(world)
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            path = template
            query: dict[str, str] = {}
            for parameter in operation.get("parameters", []):
                name, where = parameter["name"], parameter["in"]
                if where == "header":
                    continue
                value = PATH_AIM.get(template, {}).get(name, aim.get(name))
                if where == "path":
                    assert value is not None, f"{method} {template}: add {name!r} to AIM"
                    path = path.replace("{" + name + "}", value)
                elif value is not None:
                    query[name] = value
            kwargs: dict[str, Any] = {"params": query}
            if "requestBody" in operation:
                kwargs["json"] = _body_for(template)
            yield method.upper(), path, kwargs


def _body_for(template: str) -> dict[str, Any]:
    if template == "/api/v2/campaigns/hybrid":
        return campaign(1, account="creator_b", tenant="agency_a", name="posted by B")
    if template.startswith("/api/v2/costs/thresholds/"):
        return {"scope": {"tenant": "agency_a"}, "limit_usd": "1"}
    if template == "/v1/chat/completions":
        return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi agency_a"}]}
    raise AssertionError(f"{template}: add a body aimed at tenant A to _body_for")


def test_every_route_keeps_tenant_b_out_of_tenant_a(world: dict[str, Any]) -> None:
    served: Served = world["served"]
    markers: list[str] = world["markers"]
    admin = served.client(headers={"Authorization": f"Bearer {ADMIN}"})
    b = served.client(headers={"Authorization": f"Bearer {TOKEN_B}"})
    anonymous = served.client()
    wrong = served.client(headers={"Authorization": f"Bearer {TOKEN_B}x"})
    document = admin.get("/openapi.json").json()
    requests = list(_requests(document, world))
    assert len(requests) >= 15, "the OpenAPI document lost routes"
    # The admin sees A's campaign: the markers are there to be found.
    status = admin.get("/api/v2/campaigns/status", params={"campaign_id": world["campaign_id"]})
    assert "agency_a" in status.text and "creator_a" in status.text
    # Reads first, then writes (B's own campaign would otherwise show B's figures).
    requests.sort(key=lambda r: r[0] != "GET")
    for method, path, kwargs in requests:
        what = f"{method} {path} {kwargs}"
        for who in (anonymous, wrong):
            response = who.request(method, path, **kwargs)
            assert response.status_code == 401, what
            if path.startswith("/v1/"):  # OpenAI's error shape, which its SDKs read
                assert response.json()["error"]["code"] == "invalid_api_key", what
                continue
            assert response.json()["detail"].startswith("missing or wrong bearer token"), what
        response = b.request(method, path, **kwargs)
        assert response.status_code in (200, 202, 403, 404, 409), f"{what}: {response.text}"
        if method == "POST" and path == "/api/v2/campaigns/hybrid":
            assert response.json()["tenant"] == "agency_b"  # forced to the token's tenant
            for marker in markers:
                assert marker not in response.text
            continue
        if method == "POST" and path == "/v1/chat/completions":
            # B's own completion (its usage is B's): booked to B, whatever it asks.
            assert response.status_code == 200, response.text
            assert "creator_a" not in response.text and world["campaign_id"] not in response.text
            continue
        _assert_no_trace(response, markers, what)
    # Routes and mounts outside the OpenAPI document (a dashboard, static files).
    documented = {re.sub(r"\{[^}]+\}", "{}", p) for p in document["paths"]}
    for route in served.daemon.app.routes:
        path = getattr(route, "path", "")
        if path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"):
            continue
        if re.sub(r"\{[^}]+\}", "{}", path) in documented:
            continue
        response = b.get(path.replace("{", "").replace("}", "") or "/")
        assert response.status_code in (200, 403, 404), f"GET {path}: {response.text[:200]}"
        _assert_no_trace(response, markers, f"GET {path}")


def test_a_tenant_sees_its_own_and_the_admin_sees_all(world: dict[str, Any]) -> None:
    served: Served = world["served"]
    a = served.client(headers={"Authorization": f"Bearer {TOKEN_A}"})
    b = served.client(headers={"Authorization": f"Bearer {TOKEN_B}"})
    admin = served.client(headers={"Authorization": f"Bearer {ADMIN}"})
    by_tenant = {"by": "tenant", "days": "2"}
    rows_a = a.get("/api/v2/costs/breakdown", params=by_tenant).json()["rows"]
    assert [r["tenant"] for r in rows_a] == ["agency_a"] and rows_a[0]["requests"] > 0
    assert b.get("/api/v2/costs/breakdown", params=by_tenant).json()["rows"] == []
    rows_admin = admin.get("/api/v2/costs/breakdown", params=by_tenant).json()["rows"]
    assert rows_admin == rows_a
    today_a = a.get("/api/v2/costs/stats").json()["today"]
    assert today_a["requests"] == rows_a[0]["requests"]
    assert admin.get("/api/v2/costs/stats").json()["today"]["requests"] == today_a["requests"]
    assert b.get("/api/v2/costs/stats").json()["today"]["requests"] == 0
    overview = a.get("/api/v2/campaigns/status").json()
    assert [c["campaign_id"] for c in overview["campaigns"]] == [world["campaign_id"]]
    assert list(overview["queue"]) in ([], ["creator_a"]) and overview["workers"] == []
    assert b.get("/api/v2/campaigns/status").json()["campaigns"] == []
    rules_a = [r["name"] for r in a.get("/api/v2/costs/thresholds").json()["thresholds"]]
    # Its own rule and its budget's alert rule, both scoped to it; not the global ones.
    assert rules_a == ["budget:budget-of-a", RULE_A]
    budgets_a = a.get("/api/v2/costs/budgets").json()["budgets"]
    assert [x["name"] for x in budgets_a] == ["budget-of-a"]
    # Spent, or still held by the lease its calls drew on (settled within a second).
    assert budgets_a[0]["spent_nano"] + budgets_a[0]["reserved_nano"] > 0
    assert b.get("/api/v2/costs/budgets").json()["budgets"] == []
    every = admin.get("/api/v2/costs/budgets").json()["budgets"]
    assert {x["name"] for x in every} == {"budget-of-a", "budget-of-all"}
    admin_rules = admin.get("/api/v2/costs/thresholds").json()["thresholds"]
    assert {r["name"] for r in admin_rules} >= {"global-daily", "global-monthly", RULE_A}
    assert [r["scope"] for r in admin_rules if r["name"] == RULE_A] == [{"tenant": "agency_a"}]
    # A tenant cannot touch a global rule or another tenant's.
    assert a.delete("/api/v2/costs/thresholds/global-daily").status_code == 404
    assert b.delete(f"/api/v2/costs/thresholds/{RULE_A}").status_code == 404
    assert b.put(f"/api/v2/costs/thresholds/{RULE_A}", json={"limit_usd": "5"}).status_code == 409
    assert a.get("/metrics").status_code == 403
    assert admin.get("/metrics").status_code == 200
    assert a.get("/api/health/hybrid-orchestrator").status_code == 200
    deep = a.get("/api/health/hybrid-orchestrator", params={"deep": "true"})
    assert deep.status_code == 403
    # Invoices: a tenant gets its own (this month's, with A's spend), never another's.
    month = {"month": datetime.now(UTC).strftime("%Y-%m")}
    own = a.get("/api/v2/costs/invoice", params=month)
    assert own.status_code == 200 and own.json()["tenant"] == "agency_a"
    assert own.json()["subtotal_nano"] == rows_a[0]["cost_nano"]
    assert a.get("/api/v2/costs/invoice", params={**month, "tenant": "agency_b"}).status_code == 404
    as_admin = admin.get("/api/v2/costs/invoice", params={**month, "tenant": "agency_a"})
    assert as_admin.json() == own.json()
    assert admin.get("/api/v2/costs/invoice", params=month).status_code == 422
    pdf = a.get("/api/v2/costs/invoice", params={**month, "format": "pdf"})
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    # An Idempotency-Key of A's campaign does not hand it to B.
    key = {"Idempotency-Key": "shared-key"}
    assert a.post("/api/v2/campaigns/hybrid", json=campaign(1), headers=key).status_code == 202
    taken = b.post("/api/v2/campaigns/hybrid", json=campaign(1), headers=key)
    assert taken.status_code == 409 and "agency_a" not in taken.text


def test_one_token_for_two_principals_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config()
    for name, value in {**ENV, "T_B": TOKEN_A}.items():
        monkeypatch.setenv(name, value)
    result = run("serve", "--port", "0")
    assert result.exit_code == 2
    assert "hold the same token" in result.stderr and TOKEN_A not in result.stderr
