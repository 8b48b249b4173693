"""The dashboard's doors over plain HTTP: sign-in, the cookie, CSRF, page weight, and the
drill-down and requeue routes the page is built on."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.server.conftest import Served
from tests.server.dashboard_site import GONE, TOKEN, Site, build_site, webhook

PAGES = (
    "/dashboard",
    "/dashboard/campaigns",
    "/dashboard/costs",
    "/dashboard/budgets",
    "/dashboard/alerts",
)


@pytest.fixture
def site(serve: Callable[..., Served]) -> Iterator[Site]:
    with webhook() as hook:
        yield build_site(serve, hook)


def signed_in(site: Site) -> httpx.Client:
    client = site.served.client(follow_redirects=False)
    answer = client.post("/dashboard/login", data={"token": TOKEN, "next": "/dashboard/costs"})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/costs"
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None
    return found.group(1)


def test_sign_in_sets_a_strict_httponly_cookie_that_is_not_the_token(site: Site) -> None:
    anonymous = site.served.client(follow_redirects=False)
    for path in PAGES:
        answer = anonymous.get(path)
        assert answer.status_code == 303 and "/dashboard/login" in answer.headers["location"]
    wrong = anonymous.post("/dashboard/login", data={"token": TOKEN + "x"})
    assert (
        wrong.status_code == 401 and "<svg" not in wrong.text and "set-cookie" not in wrong.headers
    )
    evil = anonymous.post("/dashboard/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert evil.headers["location"] == "/dashboard"
    client = signed_in(site)
    cookie = client.cookies.jar
    header = next(h for h in client.post(
        "/dashboard/login", data={"token": TOKEN}).headers.get_list("set-cookie"))  # fmt: skip
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/dashboard" in header
    value = next(c.value for c in cookie if c.name == "huntaze_session")
    assert value and TOKEN not in value
    # The cookie is no bearer token: the API still wants the Authorization header.
    assert (
        site.served.client()
        .get("/api/v2/costs/stats", headers={"Authorization": f"Bearer {value}"})
        .status_code
        == 401
    )
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert len(page.content) < 300_000, f"{path} weighs {len(page.content):,} bytes"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")


def test_state_changing_forms_need_the_csrf_token(site: Site) -> None:
    client = signed_in(site)
    alerts = client.get("/dashboard/alerts").text
    alert_id = re.search(r'/dashboard/alerts/([^/"]+)/ack', alerts)
    assert alert_id is not None
    path = f"/dashboard/alerts/{alert_id.group(1)}/ack"
    assert client.post(path).status_code == 403
    assert client.post(path, data={"csrf": "0" * 64}).status_code == 403
    unread = site.api.get("/api/v2/costs/alerts").json()["alerts"]
    assert all(a["acked_at"] is None for a in unread if a["alert_id"] == alert_id.group(1))
    done = client.post(path, data={"csrf": csrf_of(alerts)})
    assert done.status_code == 303
    acked = site.api.get("/api/v2/costs/alerts").json()["alerts"]
    assert [a["acked_at"] for a in acked if a["alert_id"] == alert_id.group(1)] != [None]
    requeue = f"/dashboard/campaigns/{site.campaign_id}/requeue"
    assert client.post(requeue).status_code == 403
    assert site.served.client().post(requeue, data={"csrf": csrf_of(alerts)}).status_code == 401
    out = client.post("/dashboard/logout", data={"csrf": csrf_of(alerts)})
    assert out.status_code == 303
    assert client.get("/dashboard").status_code == 303  # signed out


def test_detail_and_requeue_routes(site: Site) -> None:
    detail = site.api.get("/api/v2/campaigns/detail", params={"campaign_id": site.campaign_id})
    assert detail.status_code == 200, detail.text
    body = detail.json()
    campaign = body["campaign"]
    assert campaign["counts"]["sent"] == 4 and campaign["counts"]["dead"] == 2
    assert campaign["cost_per_message_usd"] == round(campaign["cost_nano"] / 4 / 1e9, 6)
    assert {d["recipient_id"] for d in body["dead_letters"]} == GONE
    assert all(d["stage"] == "delivery" and "410" in d["error"] for d in body["dead_letters"])
    (provider,) = body["providers"]
    assert provider["attempts"] == provider["ok"] + provider["errors"] >= 6
    assert provider["primary"] + provider["fallbacks"] == provider["ok"]
    assert provider["cost_nano"] == campaign["cost_nano"]
    missing = site.api.get("/api/v2/campaigns/detail", params={"campaign_id": "nope"})
    assert missing.status_code == 404
    requeued = site.api.post(f"/api/v2/campaigns/{site.campaign_id}/requeue")
    assert requeued.status_code == 200, requeued.text
    assert requeued.json() == {"campaign_id": site.campaign_id, "requeued": 2, "regenerate": 0}
    assert site.api.post("/api/v2/campaigns/nope/requeue").status_code == 404
    assert (
        site.served.client().post(f"/api/v2/campaigns/{site.campaign_id}/requeue").status_code
        == 401
    )


def test_without_a_token_the_dashboard_is_open_but_forms_still_need_csrf(
    serve: Callable[..., Served],
) -> None:
    client = serve(worker=False).client(follow_redirects=False)
    for path in (*PAGES, "/dashboard/tenants"):  # an empty ledger draws empty charts
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
    page = client.get("/dashboard/alerts")
    assert page.status_code == 200
    assert client.get("/dashboard/login").status_code == 303
    assert client.post("/dashboard/alerts/x/ack").status_code == 403
    missing = client.post("/dashboard/alerts/x/ack", data={"csrf": csrf_of(page.text)})
    assert missing.status_code == 404
    bad = client.get("/dashboard/costs", params={"a_since": "soon"})
    assert bad.status_code == 422 and "a_since" in bad.text


def test_a_tenant_token_sees_its_tenant_only(serve: Callable[..., Served]) -> None:
    from huntaze_cli.config import default_config_path
    from tests.costs.history import hourly_events, record

    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '[server]\ntoken_env = "T_ADMIN"\n\n[tenants.agency_a]\ntoken_env = "T_A"\n'
        "quota_usd_month = 300\nmarkup_pct = 20\n\n"
        '[[budgets.rules]]\nname = "all-tenants"\nlimit_usd = 1000\n'
    )
    record(hourly_events(10))
    served = serve(worker=False, env={"T_ADMIN": "admin-token-xyz", "T_A": "a-token-xyz"})
    tenant = served.client(follow_redirects=False)
    assert tenant.post("/dashboard/login", data={"token": "a-token-xyz"}).status_code == 303
    api_a = served.client(headers={"Authorization": "Bearer a-token-xyz"})
    api_admin = served.client(headers={"Authorization": "Bearer admin-token-xyz"})
    mine = api_a.get("/api/v2/costs/stats").json()["month_to_date"]["cost_usd"]
    everyone = api_admin.get("/api/v2/costs/stats").json()["month_to_date"]["cost_usd"]
    assert 0 < mine < everyone
    page = tenant.get("/dashboard").text
    assert f'data-figure="month">${mine:,.6f}<' in page
    assert "tenant agency_a" in page and "/dashboard/tenants" not in page
    compare = tenant.get("/dashboard/costs", params={"by": "tenant"}).text
    assert 'data-key="agency_a"' in compare and "agency_b" not in compare
    assert tenant.get("/dashboard/tenants").status_code == 403
    # Budgets: a tenant sees its own (its quota), not one over every tenant's spend.
    budgets = tenant.get("/dashboard/budgets").text
    assert 'data-budget="quota:agency_a"' in budgets and "all-tenants" not in budgets
    names = {b["name"] for b in api_a.get("/api/v2/costs/budgets").json()["budgets"]}
    assert names == {"quota:agency_a"}
    every = {b["name"] for b in api_admin.get("/api/v2/costs/budgets").json()["budgets"]}
    assert every == {"quota:agency_a", "all-tenants"}
    csv = tenant.get("/dashboard/export", params={"format": "csv"}).text
    assert "agency_b" not in csv and "agency_a" in csv
    admin = served.client(follow_redirects=False)
    assert admin.post("/dashboard/login", data={"token": "admin-token-xyz"}).status_code == 303
    tenants = admin.get("/dashboard/tenants")
    assert tenants.status_code == 200
    assert 'data-tenant="agency_a"' in tenants.text and 'data-tenant="agency_b"' in tenants.text
    assert "$300" in tenants.text and "20%" in tenants.text


def _luminance(colour: str) -> float:
    channels = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_and_chart_colours_pass_wcag_contrast() -> None:
    from huntaze_cli.reports.palette import PALETTE
    from huntaze_cli.server.dashboard.render import TEMPLATES

    css = (TEMPLATES / "base.html").read_text()
    variables = dict(re.findall(r"--(\w+): (#[0-9a-fA-F]{6})", css))
    for name in ("ink", "muted", "bad", "ok", "warn", "accent"):
        for background in ("#ffffff", variables["bg"], "#eef0f3"):  # cards, page, th
            assert contrast(variables[name], background) >= 4.5, (name, background)
    assert contrast("#ffffff", "#14213d") >= 4.5  # the header's links
    assert contrast("#ffffff", variables["accent"]) >= 4.5  # button text
    for colour in PALETTE:  # graphics: 3:1 against the card
        assert contrast(colour, "#ffffff") >= 3.0, colour
