"""`GET /api/v2/costs/forecast` and `/anomalies`: the CLI's JSON over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from huntaze_cli.config import load_config
from huntaze_cli.storage.ledger import slot_of
from tests.costs.history import hourly_events, record
from tests.helpers import run
from tests.server.conftest import Served, wait_for

FORECAST = "/api/v2/costs/forecast"
ANOMALIES = "/api/v2/costs/anomalies"


def _same_moment(http: dict[str, Any], cli: dict[str, Any]) -> bool:
    """Both computed in the same quarter-hour (a forecast moves on at slot boundaries)."""
    a, b = (datetime.fromisoformat(r["generated_at"]) for r in (http, cli))
    return slot_of(a) == slot_of(b)


@pytest.fixture
def client(serve: Callable[..., Served]) -> httpx.Client:
    record(hourly_events(30))
    return serve(worker=False).client()


def test_forecast_and_anomalies_answer_the_cli_json(client: httpx.Client) -> None:
    for _ in range(2):  # once more if the two straddled a quarter-hour
        http = client.get(FORECAST, params={"by": "provider", "level": "90"})
        cli = run("costs", "forecast", "--by", "provider", "--level", "90", "--json").json()
        assert http.status_code == 200, http.text
        body = http.json()
        if _same_moment(body, cli):
            break
    body.pop("generated_at"), cli.pop("generated_at")
    assert body == cli
    assert body["level_pct"] == 90.0 and len(body["groups"]) == 2
    params = [("by", "provider"), ("by", "tenant"), ("since", "2026-01-01")]
    anomalies = client.get(ANOMALIES, params=params)
    assert anomalies.status_code == 200, anomalies.text
    cli_anomalies = run(
        "costs", "anomalies", "--by", "provider", "--by", "tenant", "--since", "2026-01-01",
        "--json",
    ).json()  # fmt: skip
    assert anomalies.json().pop("anomalies") == cli_anomalies.pop("anomalies")
    assert {
        k: v for k, v in anomalies.json().items() if k not in ("generated_at", "anomalies")
    } == {k: v for k, v in cli_anomalies.items() if k != "generated_at"}


@pytest.mark.parametrize(
    ("route", "params", "cli_args"),
    [
        (FORECAST, {"level": "0"}, ["costs", "forecast", "--level", "0"]),
        (FORECAST, {"level": "100"}, ["costs", "forecast", "--level", "100"]),
        (FORECAST, {"by": "campaign"}, ["costs", "forecast", "--by", "campaign"]),
        (ANOMALIES, {"by": "weekday"}, ["costs", "anomalies", "--by", "weekday"]),
        (ANOMALIES, {"since": "later"}, ["costs", "anomalies", "--since", "later"]),
    ],
)
def test_bad_values_are_422_with_the_cli_message_naming_the_query_field(
    client: httpx.Client, route: str, params: dict[str, str], cli_args: list[str]
) -> None:
    response = client.get(route, params=params)
    assert response.status_code == 422
    cli = run(*cli_args, "--json")
    assert cli.exit_code == 2
    cli_message = cli.stderr.splitlines()[0].removeprefix("error: ")
    (field,) = params
    # The same message; the CLI names its flag, the API its query field.
    assert cli_message.startswith(f"--{field}") and "--" not in response.json()["detail"]
    assert response.json() == {"detail": cli_message.replace(f"--{field}", field)}


def test_a_level_that_is_not_a_number_is_a_field_error(client: httpx.Client) -> None:
    response = client.get(FORECAST, params={"level": "high"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "level"]


def test_serve_fits_the_days_forecast_in_the_background(serve: Callable[..., Served]) -> None:
    record(hourly_events(30))
    cache = load_config().forecast_cache_dir
    assert not list(cache.glob("*.npz"))
    serve(worker=False)  # no request: the first one of the day finds the fit done
    wait_for(lambda: list(cache.glob("*.npz")), timeout=120)


def test_a_tenant_token_forecasts_against_the_tenant_quota(
    serve: Callable[..., Served],
) -> None:
    from huntaze_cli.config import default_config_path

    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '[server]\ntoken_env = "T_ADMIN"\n\n'
        '[tenants.agency_a]\ntoken_env = "T_A"\nquota_usd_month = 2000\n'
    )
    record(hourly_events(30))
    served = serve(worker=False, env={"T_ADMIN": "admin-0123456789", "T_A": "a-0123456789"})
    tenant = served.client(headers={"Authorization": "Bearer a-0123456789"})
    admin = served.client(headers={"Authorization": "Bearer admin-0123456789"})
    for _ in range(2):  # once more if the two straddled a quarter-hour
        body = tenant.get(FORECAST).json()
        cli = run("costs", "forecast", "--tenant", "agency_a", "--json").json()
        if _same_moment(body, cli):
            break
    body.pop("generated_at"), cli.pop("generated_at")
    assert body == cli
    assert body["threshold"]["name"] == "quota:agency_a"
    assert body["threshold"]["limit_usd"] == 2000.0
    everyone = admin.get(FORECAST).json()
    assert everyone["threshold"]["name"] == "global-monthly"
    assert everyone["month_to_date_nano"] > body["month_to_date_nano"] > 0
