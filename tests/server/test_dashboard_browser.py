"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Signs in as a person would, checks that every chart has data points and that the
figures on the page are the API's, clicks through to a campaign and requeues its dead
letters, compares two periods, downloads the CSV and PDF reports, and saves full-page
screenshots of every view at 1280 and 390 px to bench/screenshots/ (printed).

Without a chromium binary these tests skip, except under CI=true, where they fail:
.ci/run installs chromium.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from huntaze_cli.money import format_usd
from tests.costs.history import record
from tests.helpers import make_event
from tests.server.conftest import Served
from tests.server.dashboard_site import GONE, TOKEN, Site, build_site, webhook

SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench" / "screenshots"
VIEWS = {
    "overview": "/dashboard",
    "campaigns": "/dashboard/campaigns",
    "costs": "/dashboard/costs",
    "budgets": "/dashboard/budgets",
    "alerts": "/dashboard/alerts",
    "tenants": "/dashboard/tenants",
}


def days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture
def site(serve: Callable[..., Served]) -> Iterator[Site]:
    with webhook() as hook:
        yield build_site(serve, hook)


def new_page(browser: Any, site: Site, *, width: int = 1280, signed_in: bool = True) -> Any:
    context = browser.new_context(
        viewport={"width": width, "height": 900}, base_url=site.url, accept_downloads=True
    )
    page = context.new_page()
    if signed_in:
        sign_in(page, TOKEN)
    return page


def sign_in(page: Any, token: str) -> None:
    page.goto("/dashboard")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_a_wrong_token_sees_nothing(browser: Any, site: Site) -> None:
    page = new_page(browser, site, signed_in=False)
    response = page.goto("/dashboard/costs")
    assert response.url.endswith("/dashboard/login?next=/dashboard/costs")
    page.fill("#token", "not-the-token")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    assert page.locator("[role=alert]").inner_text().startswith("That token is not")
    assert page.locator("svg.chart").count() == 0
    assert page.locator("[data-figure]").count() == 0
    assert page.context.cookies() == []
    for path in [*VIEWS.values(), f"/dashboard/campaigns/{site.campaign_id}"]:
        page.goto(path)
        assert "/dashboard/login" in page.url
        assert page.locator("svg.chart").count() == 0


def test_overview_charts_have_points_and_the_apis_figures(browser: Any, site: Site) -> None:
    page = new_page(browser, site)
    assert page.url.endswith("/dashboard")
    charts = page.locator("svg.chart, svg.gauge")
    assert charts.count() == 4  # two gauges, spend per day, this month
    for index in range(charts.count()):
        assert charts.nth(index).locator(".point").count() > 0, f"chart {index} has no points"
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != TOKEN
    stats = site.api.get("/api/v2/costs/stats").json()
    daily = site.api.get(
        "/api/v2/costs/breakdown", params=[("by", "day"), ("by", "provider"), ("days", "30")]
    ).json()
    assert (
        page.locator("[data-figure=month]").inner_text()
        == f"${stats['month_to_date']['cost_usd']:,.6f}"
    )
    assert page.locator("[data-figure=today]").inner_text() == f"${stats['today']['cost_usd']:,.6f}"
    # In a closed <details>: its text is there for screen readers, not drawn.
    total = page.locator("[data-figure=daily-total]").text_content()
    assert total == f"${daily['total']['cost_usd']:,.6f}"
    bars = page.locator("svg.chart").first.locator("rect.point")
    drawn = sorted(
        (bars.nth(i).get_attribute("data-label"), bars.nth(i).get_attribute("data-series"),
         float(bars.nth(i).get_attribute("data-value")))
        for i in range(bars.count())
    )  # fmt: skip
    served = sorted((r["day"], r["provider"], r["cost_usd"]) for r in daily["rows"])
    # The site counts days in UTC: its threshold days are the breakdown's days. Each table
    # rounds its rows together to the micro-dollar, so a row may differ by one.
    assert [d[:2] for d in drawn] == [s[:2] for s in served]
    assert all(abs(d[2] - s[2]) <= 1.01e-6 for d, s in zip(drawn, served, strict=True))
    assert page.locator("#providers tbody tr").count() >= 1
    assert page.locator("[data-figure=unpriced]").inner_text() == str(stats["unpriced_requests"])


def test_spend_per_day_is_counted_in_the_threshold_time_zone(
    browser: Any, serve: Callable[..., Served]
) -> None:
    """An event at 00:30 UTC is the evening before in New York: with that time zone its
    bar stands on the New York day, the day the daily limit counts it in."""
    zone = ZoneInfo("America/New_York")
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
    late = midnight + timedelta(minutes=30)
    if late > now - timedelta(minutes=1):
        late -= timedelta(days=1)
    local_day, utc_day = late.astimezone(zone).date().isoformat(), late.date().isoformat()
    assert local_day != utc_day
    record([make_event(1, attempt_id="tz-late", ts=late, provider="azure", cost_nano=2_500_000_000),
            make_event(2, attempt_id="tz-now", ts=now - timedelta(minutes=1), provider="openai",
                       cost_nano=1_000_000_000)])  # fmt: skip
    served = serve(worker=False, env={
        "HUNTAZE_SERVER__TOKEN_ENV": "HUNTAZE_DASH_TOKEN", "HUNTAZE_DASH_TOKEN": TOKEN,
        "HUNTAZE_THRESHOLDS__TIMEZONE": "America/New_York",
    })  # fmt: skip
    api = served.client(headers={"Authorization": f"Bearer {TOKEN}"})
    page = new_page(browser, Site(served, api, ""))
    bars = page.locator("svg.chart").first.locator("rect.point")
    drawn = {
        (bars.nth(i).get_attribute("data-label"), bars.nth(i).get_attribute("data-series")):
        float(bars.nth(i).get_attribute("data-value"))
        for i in range(bars.count())
    }  # fmt: skip
    assert drawn[(local_day, "azure")] == 2.5
    assert (utc_day, "azure") not in drawn
    stats = api.get("/api/v2/costs/stats").json()
    today = now.astimezone(zone).date().isoformat()
    assert sum(v for (day, _), v in drawn.items() if day == today) == stats["today"]["cost_usd"]
    assert "day (America/New_York)" in page.locator("#spend-table").text_content()


def test_a_campaign_drills_down_to_its_counts_and_requeues(browser: Any, site: Site) -> None:
    # Fallbacks and a retried failure of the campaign, beside the calls its messages made.
    fallbacks = [
        make_event(900 + n, attempt_id=f"reason-{n}", campaign_id=site.campaign_id,
                   provider="openai", route_reason="fallback:timeout", cost_nano=1_250_000)
        for n in range(3)
    ]  # fmt: skip
    retried = make_event(910, attempt_id="reason-retry", campaign_id=site.campaign_id,
                         provider="openai", status="error", error_kind="rate_limit",
                         route_reason="retry:rate_limit", cost_nano=0)  # fmt: skip
    record([*fallbacks, retried])
    page = new_page(browser, site)
    page.click("text=Campaigns")
    page.click(f"a[data-campaign='{site.campaign_id}']")
    page.wait_for_load_state()
    assert page.url.endswith(f"/dashboard/campaigns/{site.campaign_id}")
    detail = site.api.get("/api/v2/campaigns/detail", params={"campaign_id": site.campaign_id})
    counts = detail.json()["campaign"]["counts"]
    assert counts["sent"] == 4 and counts["dead"] == 2
    for state, count in counts.items():
        assert page.locator(f"#states [data-state={state}]").text_content() == str(count)
    assert page.locator("svg.chart").first.locator(".point").count() == len(counts)
    dead = page.locator("#dead tbody tr")
    assert dead.count() == 2
    assert {dead.nth(i).locator("td").first.inner_text() for i in range(2)} == GONE
    assert "410" in dead.first.inner_text()
    routes = page.locator("#routes tbody tr")
    assert routes.count() == len(detail.json()["providers"]) >= 1
    reasons = detail.json()["route_reasons"]
    assert page.locator("#reasons tbody tr").count() == len(reasons) >= 3
    by_reason = {(r["provider"], r["route_reason"]): r for r in reasons}
    assert by_reason[("openai", "fallback:timeout")]["attempts"] == 3
    assert by_reason[("openai", "fallback:timeout")]["cost_nano"] == 3_750_000
    assert by_reason[("openai", "retry:rate_limit")]["errors"] == 1
    for r in reasons:
        cells = page.locator(f"#reasons tr[data-reason='{r['provider']}|{r['route_reason']}'] td")
        assert cells.nth(1).inner_text() == r["route_reason"]
        assert cells.nth(2).inner_text() == str(r["attempts"])
        assert cells.nth(5).inner_text() == f"${r['cost_usd']:,.6f}"
    assert sum(r["attempts"] for r in reasons) == sum(
        p["attempts"] for p in detail.json()["providers"]
    )
    page.click("#requeue")
    page.wait_for_load_state()
    assert "2 to deliver again" in page.locator("#notice").inner_text()


def test_the_compare_view_shows_the_apis_deltas(browser: Any, site: Site) -> None:
    page = new_page(browser, site)
    page.click("text=Costs")
    page.select_option("select[name=by]", "tenant")
    page.fill("input[name=a_since]", days_ago(10))
    page.fill("input[name=a_until]", days_ago(4))
    page.click("#compare-form button")
    page.wait_for_load_state()
    api = site.api.get(
        "/api/v2/costs/compare",
        params={"by": "tenant", "a_since": days_ago(10), "a_until": days_ago(4)},
    ).json()
    rows = page.locator("#compare tbody tr")
    assert rows.count() == len(api["rows"]) >= 1
    shown = {
        rows.nth(i).get_attribute("data-key"): (
            float(rows.nth(i).locator("[data-delta]").get_attribute("data-delta")),
            rows.nth(i).locator("[data-delta-pct]").get_attribute("data-delta-pct"),
        )
        for i in range(rows.count())
    }
    for row in api["rows"]:
        delta, pct = shown[row["tenant"]]
        assert delta == row["delta_usd"]
        assert pct == ("" if row["delta_pct"] is None else str(row["delta_pct"]))
    assert page.locator("svg.chart .point").count() == 2 * len(api["rows"])


def test_downloads_parse_and_their_totals_are_the_jsons(browser: Any, site: Site) -> None:
    from pypdf import PdfReader

    page = new_page(browser, site)
    page.goto(f"/dashboard/costs?a_since={days_ago(29)}&a_until={days_ago(0)}")
    report = site.api.get(
        "/api/v2/costs/report", params={"since": days_ago(29), "until": days_ago(0)}
    ).json()
    with page.expect_download() as got:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    total = next(r for r in rows if r["section"] == "total")
    assert int(total["cost_nano"]) == report["total"]["cost_nano"] > 0
    assert sum(int(r["cost_nano"]) for r in rows if r["section"] == "provider") == int(
        total["cost_nano"]
    )
    with page.expect_download() as got:
        page.click("#export-pdf")
    pdf = PdfReader(got.value.path())
    text = "\n".join(p.extract_text() for p in pdf.pages)
    assert format_usd(report["total"]["cost_nano"]) in text
    assert format_usd(report["comparison"]["total"]["b_cost_nano"]) in text


def test_the_budgets_view_shows_the_apis_budgets(browser: Any, site: Site) -> None:
    page = new_page(browser, site)
    page.click("header >> text=Budgets")
    page.wait_for_load_state()
    budgets = site.api.get("/api/v2/costs/budgets").json()["budgets"]
    assert {b["name"] for b in budgets} == {"all-month", "agency_t-day"}
    assert all(b["spent_nano"] > 0 for b in budgets), "the campaign's calls spent nothing"
    assert page.locator("#budgets tbody tr").count() == len(budgets)
    for b in budgets:
        row = page.locator(f"#budgets tr[data-budget='{b['name']}']")
        for figure in ("limit", "spent", "reserved", "remaining"):
            shown = row.locator(f"[data-figure={figure}]").inner_text()
            assert shown == f"${b[figure + '_usd']:,.6f}", (b["name"], figure)
        assert b["period_label"] in row.inner_text()
        card = page.locator(f"section[data-budget='{b['name']}']")
        assert card.locator("[data-figure=state]").inner_text() == b["state"]
        bar = card.locator("svg.gauge .point")
        assert float(bar.get_attribute("data-value")) == b["used_pct"]


def test_an_alert_is_acknowledged_from_the_page(browser: Any, site: Site) -> None:
    page = new_page(browser, site)
    page.click("text=Alerts")
    assert page.locator("#rules tbody tr").count() >= 2
    assert page.locator("svg.chart .point").count() == page.locator("#rules tbody tr").count()
    history = site.api.get("/api/v2/costs/alerts").json()["alerts"]
    unread = [a for a in history if a["acked_at"] is None]
    assert unread, "check-thresholds stored no alert"
    buttons = page.locator("#history button")
    assert buttons.count() == len(unread)
    buttons.first.click()
    page.wait_for_load_state()
    assert page.locator("#history button").count() == len(unread) - 1
    after = site.api.get("/api/v2/costs/alerts").json()["alerts"]
    assert sum(a["acked_at"] is None for a in after) == len(unread) - 1


def test_screenshots_of_every_view_at_two_widths(browser: Any, site: Site) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    views = {**VIEWS, "campaign": f"/dashboard/campaigns/{site.campaign_id}"}
    for width in (1280, 390):
        page = new_page(browser, site, width=width)
        for name, path in views.items():
            page.goto(path)
            assert page.locator("main").count() == 1
            # Nothing wider than the window but the tables' own scroll boxes.
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, f"{name} at {width} px is {overflow} px wide"
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
        page.context.close()
    print(f"\nscreenshots: {SCREENSHOTS}")
    assert len(list(SCREENSHOTS.glob("*.png"))) >= 14
