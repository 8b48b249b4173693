"""`costs compare` and GET /api/v2/costs/compare: period against period, same JSON."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from tests.helpers import run
from tests.reports.ledger import month_starts, two_months
from tests.server.conftest import Served


def by_provider(report: dict) -> dict[str, dict]:
    return {row["provider"]: row for row in report["rows"]}


def test_default_is_this_month_against_last_with_exact_deltas() -> None:
    two_months()
    result = run("costs", "compare", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    this, last = month_starts()
    assert report["a_since"].startswith(this.isoformat())
    assert report["b_since"].startswith(last.isoformat())
    assert report["b_until"].startswith(this.isoformat())
    rows = by_provider(report)
    assert rows["azure"]["a_cost_nano"] == 3_300_000_000
    assert rows["azure"]["b_cost_nano"] == 2_000_000_000
    assert rows["azure"]["delta_nano"] == 1_300_000_000
    assert rows["azure"]["delta_usd"] == 1.3
    assert rows["azure"]["delta_pct"] == 65.0
    assert rows["openai"]["b_cost_nano"] == 0 and rows["openai"]["delta_pct"] is None
    assert rows["simulated"]["a_cost_nano"] == 0
    assert rows["simulated"]["delta_nano"] == -123_456_789
    assert rows["simulated"]["delta_usd"] == -0.123457 and rows["simulated"]["delta_pct"] == -100.0
    total = report["total"]
    assert total["a_cost_nano"] == 3_550_000_000
    assert total["b_cost_nano"] == 2_123_456_789
    assert total["delta_nano"] == sum(r["delta_nano"] for r in report["rows"])
    assert report["a_unpriced_requests"] == 1 and report["b_unpriced_requests"] == 0
    assert [r["provider"] for r in report["rows"]] == ["azure", "openai", "simulated"]


def test_explicit_ranges_and_the_previous_period_of_equal_length() -> None:
    two_months()
    this, last = month_starts()
    # a: last month's 10 first days; b defaults to the 10 days before them.
    a_until = (last + timedelta(days=9)).isoformat()
    report = run(
        "costs", "compare", "--a-since", last.isoformat(), "--a-until", a_until, "--json"
    ).json()  # fmt: skip
    assert report["b_until"] == report["a_since"]
    assert report["total"]["a_cost_nano"] == 2_123_456_789
    assert report["total"]["b_cost_nano"] == 0
    # b given by its start only: as long as a.
    report = run(
        "costs", "compare", "--a-since", this.isoformat(), "--a-until", this.isoformat(),
        "--b-since", (last + timedelta(days=9)).isoformat(), "--by", "provider", "--by", "tenant",
        "--json",
    ).json()  # fmt: skip
    assert report["group_by"] == ["provider", "tenant"]
    assert report["total"]["b_cost_nano"] == 1_123_456_789
    assert {(r["provider"], r["tenant"]) for r in report["rows"]} >= {
        ("azure", "t-b"),
        ("simulated", "agency_a"),
    }


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--a-until", "2026-01-01"], "--a-since"),
        (["--b-until", "2026-01-01"], "--b-since"),
        (["--a-since", "yesterday"], "--a-since"),
        (["--a-since", "2026-02-01", "--a-until", "2026-01-01"], "--a-since"),
        (["--by", "colour"], "--by"),
    ],
)
def test_bad_parameters_exit_2_naming_the_flag(args: list[str], flag: str) -> None:
    result = run("costs", "compare", *args, "--json")
    assert result.exit_code == 2
    assert flag in result.stderr and result.stdout == ""


def test_http_answers_the_cli_json_and_422_on_bad_input(serve: Callable[..., Served]) -> None:
    two_months()
    client: httpx.Client = serve(worker=False).client()
    params = [("by", "provider"), ("by", "model")]
    http = client.get("/api/v2/costs/compare", params=params)
    assert http.status_code == 200, http.text
    cli = run("costs", "compare", "--by", "provider", "--by", "model", "--json").json()
    assert http.json() == cli
    bad = client.get("/api/v2/costs/compare", params={"b_until": "2026-01-01"})
    assert bad.status_code == 422 and "b_since" in bad.text


def test_human_table_shows_both_periods() -> None:
    two_months()
    result = run("costs", "compare")
    assert result.exit_code == 0, result.stderr
    assert "$3.300000" in result.stdout and "+65.00%" in result.stdout
    assert "-$0.123457" in result.stdout
