"""`costs` commands end to end through the CLI on a real SQLite ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from huntaze_cli.config import load_config
from huntaze_cli.models import CostEvent
from huntaze_cli.money import nano_to_usd, usd_to_nano
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from tests.helpers import make_event, run


def ledger_file() -> Path:
    return load_config().ledger_path


def jsonl(events: list[CostEvent]) -> str:
    return "".join(e.to_json() + "\n" for e in events)


def sample(count: int = 30) -> list[CostEvent]:
    """Events as the orchestrator records them: each cost is the cost of its usage, and
    events of a model with no known price are unpriced at $0."""
    from huntaze_cli.config import Config
    from huntaze_cli.costs.transfer import Repricer

    prices = Repricer(Config())
    now = datetime.now(UTC)
    events = []
    for n in range(count):
        unpriced = n % 11 == 0
        event = make_event(
            n,
            ts=now - timedelta(hours=n * 3),
            provider=("azure", "openai")[n % 2],
            model="house-model-v2" if unpriced else ("gpt-4o-mini", "gpt-4o")[n % 3 == 0],
            input_tokens=1_000 + n * 37,
            cached_input_tokens=(n % 4) * 128,
            output_tokens=50 + n * 13,
            status="error" if n % 7 == 0 else "ok",
            priced=not unpriced,
            account=f"creator_{n % 4}",
            campaign_id=None if n % 5 == 0 else f"cmp-{n % 3}",
        )
        cost = prices.cost_nano(event)
        assert (cost is None) == unpriced
        events.append(event.model_copy(update={"cost_nano": cost or 0}))
    return events


def stored() -> list[CostEvent]:
    ledger = SQLiteLedger(ledger_file())
    try:
        return list(ledger.events())
    finally:
        ledger.close()


def test_import_from_stdin_then_again_is_idempotent() -> None:
    events = sample()
    first = run("costs", "import", "-", "--json", input=jsonl(events))
    assert first.exit_code == 0, first.stderr
    assert first.json()["imported"] == len(events)
    second = run("costs", "import", "-", "--json", input=jsonl(events))
    assert second.json() == {**first.json(), "imported": 0, "duplicates": len(events)}
    assert sorted(e.attempt_id for e in stored()) == sorted(e.attempt_id for e in events)


def test_export_import_round_trip_is_exact(tmp_path: Path) -> None:
    events = sample()
    assert run("costs", "import", "-", input=jsonl(events)).exit_code == 0
    exported = run("costs", "export")
    assert exported.exit_code == 0
    lines = exported.stdout.splitlines()
    assert len(lines) == len(events)
    assert "exported 30 events" in exported.stderr
    by_id = {e.attempt_id: e for e in events}
    for line in lines:
        back, _ = CostEvent.from_record(json.loads(line, parse_float=Decimal))
        assert back == by_id[back.attempt_id]
    # Into a second ledger through stdin, as `costs export | costs import -` does.
    other = tmp_path / "other.toml"
    other.write_text(f'[ledger]\npath = "{tmp_path / "other.db"}"\n')
    moved = run("--config", str(other), "costs", "import", "-", "--json", input=exported.stdout)
    assert moved.json()["imported"] == len(events)
    a = run("costs", "breakdown", "--by", "day", "--by", "model", "--json").json()
    b = run(
        "--config", str(other), "costs", "breakdown", "--by", "day", "--by", "model", "--json"
    ).json()
    assert a["rows"] == b["rows"] and a["total"] == b["total"]


def test_csv_export_import_round_trip(tmp_path: Path) -> None:
    events = sample(12)
    run("costs", "import", "-", input=jsonl(events))
    out = tmp_path / "events.csv"
    assert run("costs", "export", "--format", "csv", "-o", str(out)).exit_code == 0
    other = tmp_path / "other.toml"
    other.write_text(f'[ledger]\npath = "{tmp_path / "other.db"}"\n')
    result = run("--config", str(other), "costs", "import", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["imported"] == 12


def test_bad_line_stops_import_and_names_it() -> None:
    good = [e.to_json() for e in sample(5)]
    bad = json.loads(good[3])
    bad["cost_usd"] = "0.0000000001"  # 10 decimals would lose money
    text = "\n".join([good[0], good[1], good[2], json.dumps(bad), good[4]]) + "\n"
    result = run("costs", "import", "-", input=text)
    assert result.exit_code == 2
    assert "line 4" in result.stderr and "cost_usd" in result.stderr
    assert result.stdout == ""
    assert "nothing was imported" in result.stderr
    assert not ledger_file().exists() or stored() == []  # nothing of the file is stored
    fixed = text.replace(json.dumps(bad), good[3])
    rerun = run("costs", "import", "-", "--json", input=fixed)
    assert rerun.json()["imported"] == 5 and rerun.json()["duplicates"] == 0


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "invalid JSON"),
        ('{"attempt_id": "x"}', "request_id"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_jsonl_lines(line: str, needle: str) -> None:
    result = run("costs", "import", "-", input=line + "\n")
    assert result.exit_code == 2
    assert "line 1" in result.stderr and needle in result.stderr
    assert not ledger_file().exists() or stored() == []


def test_unknown_field_and_naive_time_are_named() -> None:
    record = json.loads(sample(1)[0].to_json())
    extra = {**record, "colour": "red"}
    assert "colour: unknown field" in run("costs", "import", "-", input=json.dumps(extra)).stderr
    naive = {**record, "ts": "2026-11-25T10:00:00"}
    result = run("costs", "import", "-", input=json.dumps(naive))
    assert result.exit_code == 2 and "ts:" in result.stderr and "offset" in result.stderr


def test_skip_bad_imports_the_rest() -> None:
    good = [e.to_json() for e in sample(4)]
    text = "\n".join([good[0], "garbage", good[1], '{"x": 1}', good[2], good[3]])
    result = run("costs", "import", "-", "--skip-bad", "--json", input=text)
    assert result.exit_code == 0
    report = result.json()
    assert report["imported"] == 4 and report["skipped_bad"] == 2
    assert report["bad_lines"] == [2, 4]
    assert "skipped line 2" in result.stderr


def test_csv_with_bad_row_names_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("attempt_id,request_id,ts\nA,B\n")
    result = run("costs", "import", str(path))
    assert result.exit_code == 2 and "line 2" in result.stderr


def test_missing_import_file_is_exit_2(tmp_path: Path) -> None:
    result = run("costs", "import", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2 and "nope.jsonl" in result.stderr


def test_breakdown_sums_equal_event_sums_exactly() -> None:
    events = sample(40)
    run("costs", "import", "-", input=jsonl(events))
    result = run("costs", "breakdown", "--by", "provider", "--by", "account", "--json")
    assert result.exit_code == 0
    report = result.json()
    assert set(report) >= {"since", "until", "group_by", "rows", "total", "unpriced_requests"}
    assert report["group_by"] == ["provider", "account"]
    in_range = [e for e in events if e.ts.date() >= (datetime.now(UTC) - timedelta(days=29)).date()]
    expected_nano = sum(e.cost_nano for e in in_range)
    assert report["total"]["cost_nano"] == expected_nano
    assert report["total"]["cost_usd"] == nano_to_usd(expected_nano)
    assert report["total"]["requests"] == len(in_range)
    assert report["total"]["errors"] == sum(e.status == "error" for e in in_range)
    assert report["unpriced_requests"] == sum(not e.priced for e in in_range)
    for row in report["rows"]:
        group = [
            e for e in in_range if (e.provider, e.account) == (row["provider"], row["account"])
        ]
        assert row["requests"] == len(group)
        assert row["cost_nano"] == sum(e.cost_nano for e in group)
        assert row["unpriced_requests"] == sum(not e.priced for e in group)
        # Each row is within one display unit of its exact cost.
        assert abs(usd_to_nano(repr(row["cost_usd"])) - row["cost_nano"]) < 1000
        assert set(row) >= {"requests", "errors", "input_tokens", "output_tokens", "share_pct"}
    # Rows rounded together add up to the shown total exactly, and to 100 %.
    assert sum(usd_to_nano(repr(r["cost_usd"])) for r in report["rows"]) == usd_to_nano(
        repr(report["total"]["cost_usd"])
    )
    assert sum(round(r["share_pct"] * 100) for r in report["rows"]) == 10_000


def test_breakdown_by_campaign_keeps_missing_as_null() -> None:
    run("costs", "import", "-", input=jsonl(sample(10)))
    rows = run("costs", "breakdown", "--by", "campaign", "--json").json()["rows"]
    assert None in {row["campaign"] for row in rows}


def test_breakdown_range_and_csv() -> None:
    run("costs", "import", "-", input=jsonl(sample(30)))
    today = datetime.now(UTC).date()
    result = run("costs", "breakdown", "--by", "day", "--since", today.isoformat(), "--json")
    days = {row["day"] for row in result.json()["rows"]}
    assert days == {today.isoformat()}
    csv_out = run("costs", "breakdown", "--by", "day", "--csv")
    header, *rows = csv_out.stdout.splitlines()
    assert header == (
        "day,requests,errors,input_tokens,output_tokens,cost_usd,cost_nano,share_pct,"
        "unpriced_requests"
    )
    assert rows


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--by", "colour"], "--by: unknown key 'colour'"),
        (["--since", "yesterday"], "--since: cannot parse"),
        (["--until", "2026-11-25T10:00:00"], "no UTC offset"),
        (["--days", "3", "--since", "2026-11-01"], "cannot be used together"),
        (["--days", "0"], "--days must be at least 1"),
        (["--since", "2026-11-20", "--until", "2026-11-10"], "before --until"),
        (["--json", "--csv"], "cannot be used together"),
    ],
)
def test_breakdown_bad_flags_exit_2(args: list[str], needle: str) -> None:
    result = run("costs", "breakdown", *args)
    assert result.exit_code == 2
    assert needle in result.stderr and result.stdout == ""
    assert not ledger_file().exists()  # bad flags touch nothing


def test_stats_json_fields_and_figures() -> None:
    now = datetime.now(UTC)
    events = [
        make_event(1, ts=now - timedelta(minutes=5), cost_nano=1_000_000_000, latency_ms=100),
        make_event(
            2,
            ts=now - timedelta(minutes=6),
            cost_nano=500_000_000,
            provider="openai",
            latency_ms=300,
            status="error",
        ),
    ]
    run("costs", "import", "-", "--trust-cost", input=jsonl(events))
    result = run("costs", "stats", "--json")
    assert result.exit_code == 0
    data = result.json()
    assert set(data) >= {
        "generated_at",
        "last_hour",
        "today",
        "yesterday",
        "month_to_date",
        "providers",
        "unpriced_requests",
        "thresholds",
    }
    assert data["last_hour"]["requests"] == 2 and data["last_hour"]["cost_usd"] == 1.5
    assert data["today"]["errors"] == 1
    azure = data["providers"]["azure"]
    assert azure["cost_usd"] == 1.0 and azure["share_pct"] == 66.67
    assert 75 <= azure["latency_p50_ms"] <= 100
    assert set(azure) >= {"requests", "errors", "latency_p95_ms"}
    assert data["thresholds"]["daily"] == {
        "name": "global-daily",
        "source": "global",
        "limit_usd": 50.0,
        "limit_nano": 50_000_000_000,
        "spent_usd": 1.5,
        "spent_nano": 1_500_000_000,
        "used_pct": 3.0,
    }
    assert data["today"]["cost_nano"] == 1_500_000_000 and data["model_mismatches"] == 0
    assert data["thresholds"]["monthly"]["limit_usd"] == 1000.0


def test_stats_for_one_tenant_give_its_own_latency_percentiles() -> None:
    from huntaze_cli.config import default_config_path

    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[tenants.fast]\n[tenants.slow]\n")
    now = datetime.now(UTC)
    events = [
        make_event(
            n,
            ts=now - timedelta(minutes=1 + n),
            tenant=("fast", "slow")[n % 2],
            latency_ms=(40.0 if n % 2 == 0 else 6000.0),
            cost_nano=1_000 * (n + 1),
        )
        for n in range(20)
    ]
    assert run("costs", "import", "-", "--trust-cost", input=jsonl(events)).exit_code == 0
    everyone = run("costs", "stats", "--json").json()["providers"]["azure"]
    fast = run("costs", "stats", "--tenant", "fast", "--json").json()
    azure = fast["providers"]["azure"]
    assert azure["requests"] == 10
    assert fast["today"]["cost_nano"] == sum(e.cost_nano for e in events if e.tenant == "fast")
    assert azure["latency_p50_ms"] is not None and azure["latency_p95_ms"] <= 50
    assert everyone["latency_p95_ms"] > 5000


def test_stats_for_one_tenant_compare_with_its_own_budgets_not_the_global_thresholds() -> None:
    from huntaze_cli.config import default_config_path

    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[tenants.a]\nquota_usd_month = 2.5\n[tenants.b]\n"
        '[[budgets.rules]]\nname = "a-day"\nscope = { tenant = "a" }\nperiod = "day"\n'
        "limit_usd = 0.4\n"
        '[[budgets.rules]]\nname = "a-day-wide"\nscope = { tenant = "a" }\nperiod = "day"\n'
        "limit_usd = 9\n"
    )
    events = [make_event(n, tenant=("a", "b")[n % 2], cost_nano=100_000_000) for n in range(6)]
    assert run("costs", "import", "-", "--trust-cost", input=jsonl(events)).exit_code == 0

    everyone = run("costs", "stats", "--json").json()["thresholds"]
    assert everyone["daily"]["name"] == "global-daily" and everyone["daily"]["limit_usd"] == 50
    mine = run("costs", "stats", "--tenant", "a", "--json").json()["thresholds"]
    # The lowest daily budget on exactly the tenant, and its quota for the month.
    assert mine["daily"] == {
        "name": "a-day",
        "source": "budget",
        "limit_usd": 0.4,
        "limit_nano": 400_000_000,
        "spent_usd": 0.3,
        "spent_nano": 300_000_000,
        "used_pct": 75.0,
    }
    assert mine["monthly"]["name"] == "quota:a" and mine["monthly"]["used_pct"] == 12.0
    # A tenant with no budget has no limit, not everybody's.
    other = run("costs", "stats", "--tenant", "b", "--json").json()["thresholds"]
    assert other["daily"]["source"] == other["monthly"]["source"] == "none"
    assert other["monthly"]["name"] is None and other["monthly"]["limit_nano"] == 0


def test_check_thresholds_exit_codes() -> None:
    run(
        "costs",
        "import",
        "-",
        "--trust-cost",
        input=jsonl([make_event(1, cost_nano=2_000_000_000)]),
    )
    ok = run("check-thresholds", "--no-alert", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert ok.json()["breached"] is False
    over = run(
        "check-thresholds", "--no-alert", "--json", env={"HUNTAZE_THRESHOLDS__DAILY_USD": "1.5"}
    )
    assert over.exit_code == 3
    data = over.json()
    daily = next(t for t in data["thresholds"] if t["name"] == "global-daily")
    assert daily["breached"] is True and daily["alerted"] is False
    assert set(daily) >= {"name", "period", "limit_usd", "spent_usd", "used_pct", "alert_channels"}


def test_unreachable_dynamodb_is_exit_1_one_line() -> None:
    env = {
        "HUNTAZE_LEDGER__BACKEND": "dynamodb",
        "HUNTAZE_LEDGER__ENDPOINT_URL": "http://127.0.0.1:9",
    }
    result = run("costs", "stats", "--json", env=env)
    assert result.exit_code == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "127.0.0.1:9" in errors[0]


def test_check_thresholds_shows_unpriced_requests_in_json_and_table() -> None:
    with SQLiteLedger(ledger_file()) as ledger:
        ledger.record(
            [
                make_event(1, cost_nano=2_000_000_000),
                make_event(2, model="house-model-v2", cost_nano=0, priced=False),
                make_event(3, model="house-model-v2", cost_nano=0, priced=False),
            ]
        )
    result = run("check-thresholds", "--no-alert", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["unpriced_requests"] == 2
    daily = next(t for t in data["thresholds"] if t["name"] == "global-daily")
    assert daily["unpriced_requests"] == 2
    assert (daily["spent_usd"], daily["spent_nano"]) == (2.0, 2_000_000_000)
    assert daily["limit_nano"] == 50_000_000_000
    table = " ".join(run("check-thresholds", "--no-alert").stdout.split())
    # The brackets survive rich: the warning names the config section to add.
    assert "2 requests this month had no known price" in table
    assert "add [pricing.overrides] for their models" in table
