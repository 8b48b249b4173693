"""Outcomes import (idempotent, all or nothing) and ROI per campaign and arm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from huntaze_cli.config import load_config
from huntaze_cli.llm.experiments import arm_of
from huntaze_cli.storage.sqlite.outcomes import OutcomeStore
from tests.costs.traffic import events, ledger_with
from tests.helpers import run

ARMS = 'arms = { control = {}, cheaper = { model = "gpt-4o-mini" } }\n'


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def stored() -> dict[str, tuple[int, int, int]]:
    store = OutcomeStore(load_config().outcomes_path)
    try:
        return {k: (t.outcomes, t.revenue_nano, t.conversions) for k, t in store.totals().items()}
    finally:
        store.close()


def test_import_is_idempotent_and_the_latest_value_wins(tmp_path: Path) -> None:
    csv_file = write(
        tmp_path / "out.csv",
        "campaign_id,recipient_id,revenue_usd,converted\n"
        "cmp-a,fan_1,12.50,true\ncmp-a,fan_2,0,false\ncmp-b,fan_1,3.000000001,1\n",
    )
    first = run("campaigns", "outcomes", "import", csv_file, "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json() == {"read": 3, "inserted": 3, "updated": 0, "unchanged": 0}
    again = run("campaigns", "outcomes", "import", csv_file, "--json").json()
    assert again == {"read": 3, "inserted": 0, "updated": 0, "unchanged": 3}
    jsonl = write(
        tmp_path / "fix.jsonl",
        json.dumps(
            {
                "campaign_id": "cmp-a",
                "recipient_id": "fan_2",
                "revenue_usd": 4.25,
                "converted": True,
            }
        )
        + "\n",
    )
    fixed = run("campaigns", "outcomes", "import", jsonl, "--json").json()
    assert fixed == {"read": 1, "inserted": 0, "updated": 1, "unchanged": 0}
    assert stored() == {"cmp-a": (2, 16_750_000_000, 2), "cmp-b": (1, 3_000_000_001, 1)}


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("cmp-a,fan_1,1,true\ncmp-a,fan_2,abc,true\n", 3, "revenue_usd"),
        ("cmp-a,fan_1,1,true\ncmp-a,fan_2,-1,true\n", 3, "revenue_usd"),
        ("cmp-a,fan_1,1,maybe\n", 2, "converted"),
        ("cmp-a,,1,true\n", 2, "recipient_id"),
        ("cmp-a,fan_1,1,true\ncmp-a,fan_1,2,true\n", 3, "already on line 2"),
        ("cmp-a,fan_1,0.0000000001,true\n", 2, "revenue_usd"),
    ],
)
def test_a_bad_row_is_exit_2_naming_the_line_and_nothing_is_stored(
    tmp_path: Path, body: str, line: int, field: str
) -> None:
    path = write(tmp_path / "bad.csv", "campaign_id,recipient_id,revenue_usd,converted\n" + body)
    result = run("campaigns", "outcomes", "import", path, "--json")
    assert result.exit_code == 2
    assert f"line {line}:" in result.stderr and field in result.stderr
    assert "nothing was stored" in result.stderr
    assert result.stdout == ""
    assert stored() == {}


def test_unknown_column_and_bad_json_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "campaign_id,recipient,revenue_usd,converted\n")
    result = run("campaigns", "outcomes", "import", path)
    assert result.exit_code == 2 and "line 1" in result.stderr and "'recipient'" in result.stderr
    path = write(tmp_path / "x.jsonl", '{"campaign_id": "c", "recipient_id": "f"}\n{nope\n')
    result = run("campaigns", "outcomes", "import", path)
    assert result.exit_code == 2 and "line 2: invalid JSON" in result.stderr
    assert stored() == {}


def _seed_experiment(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Two arms of one campaign in the ledger and a config naming the experiment."""
    config_path = tmp_path / "config.toml"
    config_path.write_text(f"[experiments.e1]\n{ARMS}")
    config = load_config(config_path)
    exp = config.experiments["e1"]
    arms = {f"fan_{n}": arm_of("e1", exp, f"fan_{n}") for n in range(80)}
    batch = []
    for fan, arm in arms.items():
        model = "gpt-4o-mini" if arm == "cheaper" else "gpt-4o"
        (event,) = events(config, 1, model=model, campaign_id="cmp-x", experiment="e1", arm=arm)
        batch.append(event.model_copy(update={"request_id": f"cmp-x:{fan}"}))
    ledger_with(config.ledger_path, batch).close()
    return config_path, arms


def test_roi_per_campaign_and_arm(tmp_path: Path) -> None:
    config_path, arms = _seed_experiment(tmp_path)
    rows = ["campaign_id,recipient_id,revenue_usd,converted"]
    for n, fan in enumerate(arms):
        if n % 4 == 0:
            rows.append(f"cmp-x,{fan},2.5,true")
    path = write(tmp_path / "o.csv", "\n".join(rows) + "\n")
    assert run("--config", str(config_path), "campaigns", "outcomes", "import", path).exit_code == 0
    result = run("--config", str(config_path), "costs", "roi", "--json")
    assert result.exit_code == 0, result.stderr
    (campaign,) = result.json()["campaigns"]
    ledger_cost = sum(
        json.loads(line)["cost_usd"] * 1e9
        for line in run("--config", str(config_path), "costs", "export").stdout.splitlines()
    )
    assert campaign["cost_nano"] == round(ledger_cost)
    assert campaign["conversions"] == 20 and campaign["revenue_usd"] == 50.0
    cost = campaign["cost_nano"]
    assert campaign["roi_pct"] == round((50e9 - cost) * 100 / cost, 2)
    assert campaign["cost_per_conversion_usd"] == pytest.approx(campaign["cost_usd"] / 20, abs=1e-6)
    by_arm = {a["arm"]: a for a in campaign["arms"]}
    converted = [fan for n, fan in enumerate(arms) if n % 4 == 0]
    for arm in ("control", "cheaper"):
        assert by_arm[arm]["conversions"] == sum(arms[f] == arm for f in converted)
        assert by_arm[arm]["messages"] == sum(a == arm for a in arms.values())
    one = run("--config", str(config_path), "costs", "roi", "--campaign", "cmp-x", "--json")
    assert one.json()["campaigns"] == result.json()["campaigns"]
    missing = run("--config", str(config_path), "costs", "roi", "--campaign", "nope", "--json")
    assert missing.exit_code != 0 and "nope" in missing.stderr


def test_experiment_report_shows_revenue_per_message_when_outcomes_exist(tmp_path: Path) -> None:
    config_path, arms = _seed_experiment(tmp_path)
    # Every cheaper-arm fan spent 1 USD, every control fan 3 USD: a real difference.
    rows = ["campaign_id,recipient_id,revenue_usd,converted"]
    rows += [f"cmp-x,{fan},{1 if arm == 'cheaper' else 3},true" for fan, arm in arms.items()]
    path = write(tmp_path / "o.csv", "\n".join(rows) + "\n")
    assert run("--config", str(config_path), "campaigns", "outcomes", "import", path).exit_code == 0
    report = run("--config", str(config_path), "experiments", "report", "e1", "--json").json()
    figures = {a["arm"]: a for a in report["arms"]}
    assert figures["cheaper"]["revenue_per_message_usd"] == 1.0
    assert figures["control"]["revenue_per_message_usd"] == 3.0
    (revenue,) = [c for c in report["comparison"] if c["metric"] == "revenue_per_message_usd"]
    assert revenue["difference"] == pytest.approx(-2.0)
    assert revenue["significant"] is True


def test_roi_without_outcomes_lists_nothing() -> None:
    result = run("costs", "roi", "--json")
    assert result.exit_code == 0
    assert result.json()["campaigns"] == []
    assert result.json()["total"]["revenue_usd"] == 0.0
