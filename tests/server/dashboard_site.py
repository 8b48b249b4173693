"""A daemon with something to show: 40 days of spend, one finished campaign with dead
letters (a webhook that answers 410 for two fans), a breached daily rule's alert, and
two budgets the campaign's calls spent from."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from huntaze_cli.config import default_config_path
from tests.costs.history import hourly_events, record
from tests.helpers import run
from tests.server.conftest import Served, campaign, wait_for

TOKEN = "dashboard-test-token-0123456789"
GONE = {"fan_1", "fan_4"}  # the webhook answers 410 for these: dead letters at once
BUDGETS = """
[[budgets.rules]]
name = "all-month"
limit_usd = 50

[[budgets.rules]]
name = "agency_t-day"
scope = { tenant = "agency_t" }
period = "day"
limit_usd = 20
"""


@dataclass
class Site:
    served: Served
    api: httpx.Client  # with the bearer token
    campaign_id: str

    @property
    def url(self) -> str:
        return self.served.url


@contextmanager
def webhook() -> Iterator[str]:
    """A receiver that takes every message but GONE's (410 Gone: dead, not retried)."""
    import json

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(410 if body["recipient_id"] in GONE else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def build_site(serve: Callable[..., Served], hook: str) -> Site:
    env = {
        "HUNTAZE_SERVER__TOKEN_ENV": "HUNTAZE_DASH_TOKEN",
        "HUNTAZE_DASH_TOKEN": TOKEN,
        "HUNTAZE_DELIVERY__SINK": "webhook",
        "HUNTAZE_DELIVERY__WEBHOOK_URL": hook,
        "HUNTAZE_DELIVERY__WEBHOOK_SECRET_ENV": "HUNTAZE_HOOK_SECRET",
        "HUNTAZE_HOOK_SECRET": "hook-secret",
        "HUNTAZE_THRESHOLDS__DAILY_USD": "2",
        "HUNTAZE_RATE_LIMIT__MESSAGES": "100",
    }
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BUDGETS)
    record(hourly_events(40))
    served = serve(worker=True, env=env)
    api = served.client(headers={"Authorization": f"Bearer {TOKEN}"})
    created = api.post("/api/v2/campaigns/hybrid", json=campaign(6, name="Winter promo"))
    assert created.status_code == 202, created.text
    campaign_id = created.json()["campaign_id"]

    def finished() -> bool:
        body = api.get("/api/v2/campaigns/status", params={"campaign_id": campaign_id}).json()
        return str(body["state"]).startswith("completed")

    wait_for(finished, timeout=60)

    def recorded() -> bool:  # the daemon writes the ledger in batches
        detail = api.get("/api/v2/campaigns/detail", params={"campaign_id": campaign_id}).json()
        return sum(p["ok"] for p in detail["providers"]) >= 6

    wait_for(recorded, timeout=30)
    checked = run("check-thresholds", "--json")  # today's spend is past $2: an alert
    assert checked.exit_code in (0, 3), checked.stderr
    return Site(served, api, campaign_id)
