"""`costs import` checks every event, and money leaves the ledger exactly."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huntaze_cli.config import load_config
from huntaze_cli.costs.transfer import export_events
from huntaze_cli.models import CostEvent
from huntaze_cli.money import usd_text, usd_to_nano
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger
from tests.helpers import make_event, run

# gpt-4o-mini on OpenAI: $0.15 in, $0.60 out per million tokens (genai-prices).
MINI_1000_IN_NANO = 150_000


def record(n: int = 1, **overrides: Any) -> dict[str, Any]:
    base = json.loads(make_event(n, provider="openai", deployment=None).to_json())
    base.update(input_tokens=1000, output_tokens=0, cached_input_tokens=0)
    base.update(overrides)
    return base


def lines(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def stored() -> dict[str, CostEvent]:
    path = load_config().ledger_path
    if not path.exists():
        return {}
    with SQLiteLedger(path) as ledger:
        return {e.attempt_id: e for e in ledger.events()}


def test_a_wrong_cost_is_replaced_by_the_cost_of_its_usage_and_reported() -> None:
    text = lines(record(1, cost_usd=999.5), record(2, cost_usd=0.00015))
    result = run("costs", "import", "-", "--json", input=text)
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["imported"] == 2 and report["repriced"] == 1
    assert report["repriced_lines"] == [
        {
            "line": 1,
            "attempt_id": "att-1",
            "given_usd": 999.5,
            "given_nano": 999_500_000_000,
            "computed_usd": 0.00015,
            "computed_nano": MINI_1000_IN_NANO,
        }
    ]
    events = stored()
    assert events["att-1"].cost_nano == MINI_1000_IN_NANO and events["att-1"].priced
    stats = run("costs", "stats", "--json").json()
    assert stats["today"]["cost_nano"] == 2 * MINI_1000_IN_NANO


def test_trust_cost_keeps_the_given_cost() -> None:
    result = run(
        "costs", "import", "-", "--trust-cost", "--json", input=lines(record(1, cost_usd=999.5))
    )
    assert result.json()["repriced"] == 0 and result.json()["trust_cost"] is True
    assert stored()["att-1"].cost_nano == 999_500_000_000


def test_a_missing_cost_is_computed_or_unpriced_never_a_priced_zero() -> None:
    known = record(1)
    del known["cost_usd"]
    unknown = record(2, model="house-model-v2")
    del unknown["cost_usd"]
    result = run("costs", "import", "-", "--json", input=lines(known, unknown))
    assert result.exit_code == 0, result.stderr
    assert (result.json()["cost_computed"], result.json()["unpriced"]) == (1, 1)
    events = stored()
    assert (events["att-1"].cost_nano, events["att-1"].priced) == (MINI_1000_IN_NANO, True)
    assert (events["att-2"].cost_nano, events["att-2"].priced) == (0, False)
    assert run("costs", "stats", "--json").json()["unpriced_requests"] == 1


def test_an_override_prices_imports_as_it_prices_generation(tmp_path: Any) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[pricing.overrides."openai/house-model-v2"]\ninput = 2\noutput = 4\n')
    unknown = record(1, model="house-model-v2")
    del unknown["cost_usd"]
    result = run("--config", str(config), "costs", "import", "-", "--json", input=lines(unknown))
    assert result.json()["cost_computed"] == 1
    path = load_config(config).ledger_path
    with SQLiteLedger(path) as ledger:
        [event] = list(ledger.events())
    assert (event.cost_nano, event.priced) == (2_000_000, True)  # 1,000 x $2 / M


def test_inconsistent_rows_are_exit_2_naming_the_line_and_store_nothing() -> None:
    good = record(1, cost_usd=0.00015)
    cases = [
        (record(2, priced=False, cost_usd=7.25), "cost_usd"),
        (record(3, input_tokens=-5), "input_tokens"),
        (record(4, colour="red"), "colour: unknown field"),
    ]
    for bad, needle in cases:
        result = run("costs", "import", "-", input=lines(good, good | {"attempt_id": "x"}, bad))
        assert result.exit_code == 2, bad
        assert "line 3" in result.stderr and needle in result.stderr
        assert stored() == {}


def test_money_leaves_as_exact_decimals_in_jsonl_and_csv() -> None:
    big = make_event(1, model="house-model-v2", cost_nano=98_765_432_987_654_321)
    tiny = make_event(2, model="house-model-v2", cost_nano=12_900)
    with SQLiteLedger(load_config().ledger_path) as ledger:
        ledger.record([big, tiny])
    exported = run("costs", "export").stdout
    assert '"cost_usd": 98765432.987654321' in exported
    assert '"cost_usd": 0.0000129' in exported and "e-05" not in exported
    rows = list(csv.DictReader(io.StringIO(run("costs", "export", "--format", "csv").stdout)))
    assert [r["cost_usd"] for r in rows] == ["98765432.987654321", "0.0000129"]
    first, _ = CostEvent.from_record(json.loads(exported.splitlines()[0], parse_float=Decimal))
    assert first.cost_nano == big.cost_nano


def test_breakdown_rows_add_up_to_the_total_as_shown() -> None:
    # Three rows of half a display unit each: rounded one by one they would show
    # 0.000000 or 0.000001 each, not adding up to the total's 0.000002.
    events = [make_event(n, model=f"house-model-{n}", cost_nano=500, priced=True) for n in range(3)]
    with SQLiteLedger(load_config().ledger_path) as ledger:
        ledger.record(events)
    report = run("costs", "breakdown", "--by", "model", "--json").json()
    shown = [usd_to_nano(repr(row["cost_usd"])) for row in report["rows"]]
    assert sum(shown) == usd_to_nano(repr(report["total"]["cost_usd"])) == 2000
    assert [row["cost_nano"] for row in report["rows"]] == [500, 500, 500]
    assert report["total"]["cost_nano"] == 1500


# Up to a billion dollars per event and 8 events: the rollup sums stay within 64 bits.
nano_amounts = st.one_of(st.integers(0, 10**6), st.integers(0, (2**63 - 1) // 8))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(nanos=st.lists(nano_amounts, min_size=1, max_size=8), fmt=st.sampled_from(["jsonl", "csv"]))
def test_export_then_import_is_exact_at_any_size(
    nanos: list[int], fmt: str, tmp_path_factory: Any
) -> None:
    from huntaze_cli.config import Config
    from huntaze_cli.costs.transfer import Repricer, import_events

    base = tmp_path_factory.mktemp("roundtrip")
    now = datetime.now(UTC)
    events = [
        make_event(n, model="house-model-v2", cost_nano=nano, ts=now - timedelta(minutes=n))
        for n, nano in enumerate(nanos)
    ]
    with SQLiteLedger(base / "a.db") as first, SQLiteLedger(base / "b.db") as second:
        first.record(events)
        out = io.StringIO()
        export_events(first, out, fmt=fmt)  # type: ignore[arg-type]
        for nano in nanos:
            assert usd_text(nano) in out.getvalue()
        report = import_events(
            second,
            io.StringIO(out.getvalue()),
            prices=Repricer(Config()),
            fmt=fmt,  # type: ignore[arg-type]
        )
        assert report.imported == len(events) and report.repriced == 0
        assert {e.attempt_id: e for e in second.events()} == {e.attempt_id: e for e in events}


def test_an_interrupted_attempt_stays_unpriced_through_export_and_import() -> None:
    interrupted = make_event(
        1,
        status="error",
        error_kind="interrupted",
        priced=False,
        cost_nano=0,
        input_tokens=0,
        output_tokens=0,
    )
    text = interrupted.to_json() + "\n"
    result = run("costs", "import", "-", "--json", input=text)
    assert (result.json()["unpriced"], result.json()["cost_computed"]) == (1, 0)
    assert stored()["att-1"].priced is False
