"""`costs optimize` from the CLI and over HTTP: the same JSON, the same errors."""

from __future__ import annotations

from huntaze_cli.config import load_config
from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore as CampaignStore
from tests.costs.traffic import add_campaign, events, ledger_with
from tests.helpers import run


def seed_short_outputs() -> None:
    config = load_config()
    store = CampaignStore(config.campaigns_path)
    add_campaign(store, "cmp-short", max_tokens=400)
    store.close()
    ledger_with(
        config.ledger_path, events(config, 120, campaign_id="cmp-short", outputs=(30, 50))
    ).close()


def test_cli_lists_recommendations_as_json() -> None:
    seed_short_outputs()
    result = run("costs", "optimize", "--days", "7", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["window_days"] == 7
    kinds = {r["kind"] for r in report["recommendations"]}
    assert {"model_downgrade", "max_tokens"} <= kinds
    for rec in report["recommendations"]:
        assert set(rec) >= {
            "id", "kind", "title", "saving_usd_month", "confidence", "evidence", "action"
        }  # fmt: skip
    people = run("costs", "optimize", "--days", "7")
    assert people.exit_code == 0
    assert "model_downgrade" in people.stdout


def test_bad_days_is_exit_2_naming_the_flag() -> None:
    result = run("costs", "optimize", "--days", "0", "--json")
    assert result.exit_code == 2
    assert "--days" in result.stderr
    assert result.stdout == ""
