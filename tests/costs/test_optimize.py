"""Each recommendation kind on a ledger built to show it, and on one built not to."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.config import Config
from huntaze_cli.costs.optimize import optimize
from huntaze_cli.costs.recommendations import OptimizeReport, Recommendation
from huntaze_cli.llm.types import Usage
from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore as CampaignStore
from tests.costs.traffic import add_campaign, events, ledger_with, priced

KINDS = {"azure": "azure", "openai": "openai"}


def config(**routing: Any) -> Config:
    return Config.model_validate(
        {
            "routing": {"order": ["azure", "openai"], **routing},
            "providers": {"azure": {"kind": "azure"}, "openai": {"kind": "openai"}},
        }
    )


def cheaper_azure(**routing: Any) -> Config:
    """gpt-4o negotiated 20 % cheaper on azure."""
    data = config(**routing).model_dump()
    data["pricing"] = {
        "overrides": {"azure/gpt-4o": {"input": "2.0", "output": "8.0", "cached_input": "1.0"}}
    }
    return Config.model_validate(data)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CampaignStore]:
    s = CampaignStore(tmp_path / "campaigns.db")
    yield s
    s.close()


def report(tmp_path: Path, cfg: Config, store: CampaignStore, *batches: Any) -> OptimizeReport:
    ledger = ledger_with(tmp_path / "ledger.db", *batches)
    try:
        return optimize(cfg, ledger, days=30, campaign=store.get, provider_kinds=KINDS)
    finally:
        ledger.close()


def of_kind(result: OptimizeReport, kind: str) -> list[Recommendation]:
    return [r for r in result.recommendations if r.kind == kind]


# --- provider_price --------------------------------------------------------------------


def test_provider_price_finds_the_cheaper_provider_with_its_observed_health(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = cheaper_azure()
    on_openai = events(cfg, 200, provider="openai", outputs=(300,))
    seen_azure = events(cfg, 100, provider="azure", model="gpt-4o-mini", latency_ms=180.0)
    result = report(tmp_path, cfg, store, on_openai, seen_azure)
    (rec,) = of_kind(result, "provider_price")
    here = priced(cfg, "openai", "gpt-4o", Usage(200 * 200, 0, 200 * 300))
    there = priced(cfg, "azure", "gpt-4o", Usage(200 * 200, 0, 200 * 300))
    assert rec.evidence["cost_nano"] == here
    assert rec.evidence["cost_on_cheaper_nano"] == there
    # One day of traffic, projected to 30.
    assert rec.saving_nano_month == (here - there) * 30
    assert rec.evidence["cheaper_provider"] == "azure"
    assert rec.evidence["cheaper_provider_observed"]["attempts"] == 100
    assert rec.evidence["cheaper_provider_meets_slo"] is True
    assert rec.confidence == "medium"
    assert rec.action.toml is not None and 'order = ["azure", "openai"]' in rec.action.toml


def test_provider_price_stays_silent_when_prices_are_equal(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config()
    result = report(tmp_path, cfg, store, events(cfg, 200, provider="openai", outputs=(300,)))
    assert of_kind(result, "provider_price") == []


# --- model_downgrade -------------------------------------------------------------------


def test_model_downgrade_finds_short_outputs_on_an_expensive_model(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config()
    add_campaign(store, "cmp-short", max_tokens=300)
    traffic = events(cfg, 150, campaign_id="cmp-short", outputs=(30, 45, 60))
    result = report(tmp_path, cfg, store, traffic)
    (rec,) = of_kind(result, "model_downgrade")
    output = sum(e.output_tokens for e in traffic)
    here = priced(cfg, "azure", "gpt-4o", Usage(150 * 200, 0, output))
    there = priced(cfg, "azure", "gpt-4o-mini", Usage(150 * 200, 0, output))
    assert rec.evidence["cost_nano"] == here
    assert rec.evidence["cost_on_cheaper_nano"] == there
    assert rec.saving_nano_month == (here - there) * 30
    assert rec.evidence["cheaper_model"] == "gpt-4o-mini"
    assert rec.evidence["output_tokens_p95"] <= 64
    assert rec.action.type == "campaign"
    assert rec.action.set == {"model": "gpt-4o-mini"}
    assert rec.action.experiment_toml is not None
    assert 'model = "gpt-4o-mini"' in rec.action.experiment_toml
    assert 'account = "creator_1"' in rec.action.experiment_toml


def test_model_downgrade_leaves_long_outputs_and_cheap_models_alone(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config()
    add_campaign(store, "cmp-long", max_tokens=800)
    long_outputs = events(cfg, 150, campaign_id="cmp-long", outputs=(400, 550, 700))
    cheap = events(cfg, 150, campaign_id="cmp-mini", model="gpt-4o-mini", outputs=(30,))
    result = report(tmp_path, cfg, store, long_outputs, cheap)
    assert of_kind(result, "model_downgrade") == []


# --- max_tokens ------------------------------------------------------------------------


def test_max_tokens_far_above_p99_is_flagged_with_a_safe_value(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config()
    add_campaign(store, "cmp-big", model="gpt-4o-mini", max_tokens=1000)
    traffic = events(cfg, 200, model="gpt-4o-mini", campaign_id="cmp-big", outputs=(20, 50, 60))
    (rec,) = of_kind(report(tmp_path, cfg, store, traffic), "max_tokens")
    suggested = rec.action.set["max_tokens"]
    assert max(e.output_tokens for e in traffic) <= rec.evidence["output_tokens_p99_at_most"]
    assert 60 < suggested < 1000
    assert rec.evidence["over_reserved_nano_month"] > 0
    assert rec.saving_nano_month == 0  # output is billed as written


def test_max_tokens_close_to_the_outputs_is_left_alone(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config()
    add_campaign(store, "cmp-tight", model="gpt-4o-mini", max_tokens=100)
    traffic = events(cfg, 200, model="gpt-4o-mini", campaign_id="cmp-tight", outputs=(40, 60))
    assert of_kind(report(tmp_path, cfg, store, traffic), "max_tokens") == []


# --- retry_waste -----------------------------------------------------------------------


def test_retry_waste_in_an_outage_recommends_a_quicker_breaker(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config(circuit_failure_threshold=10)
    outage = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    # Failed attempts that were billed for their prompt (e.g. refused after reading it).
    failed = events(cfg, 400, provider="openai", status="error", ts=outage, input_tokens=500)
    healthy = events(cfg, 400, provider="azure", ts=outage)
    result = report(tmp_path, cfg, store, failed, healthy)
    (rec,) = of_kind(result, "retry_waste")
    spent = sum(e.cost_nano for e in failed)
    assert rec.evidence["failed_cost_nano"] == spent
    assert rec.evidence["errors_in_outages"] == 400
    assert rec.action.toml == "[routing]\ncircuit_failure_threshold = 5"
    assert 0 < rec.saving_nano_month <= spent * 30


def test_retry_waste_stays_silent_without_failed_spend(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config()
    # Failures that cost nothing (a 503 bills no tokens) waste no money.
    free_failures = events(cfg, 50, provider="openai", status="error", input_tokens=0)
    result = report(tmp_path, cfg, store, events(cfg, 300, provider="openai"), free_failures)
    assert of_kind(result, "retry_waste") == []


# --- prompt_caching --------------------------------------------------------------------


def test_prompt_caching_prices_the_uncached_repeated_prefix(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config()
    add_campaign(store, "cmp-long-system", system="word " * 1000, prompt="Thank {name}.")
    traffic = events(cfg, 100, campaign_id="cmp-long-system", input_tokens=1400)
    (rec,) = of_kind(report(tmp_path, cfg, store, traffic), "prompt_caching")
    static = rec.evidence["static_tokens_per_message"]
    assert static >= 1300
    # Every repeated token would have been billed at the cached price instead.
    expected = round(static * 100 * (2.5 - 1.25) * 1000)
    assert rec.saving_nano_month == expected * 30
    assert "identical" in rec.action.summary


def test_prompt_caching_stays_silent_when_the_prefix_is_cached(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = config()
    add_campaign(store, "cmp-cached", system="word " * 1000, prompt="Thank {name}.")
    cached = events(cfg, 100, campaign_id="cmp-cached", input_tokens=1400, cached=1280)
    add_campaign(store, "cmp-short-system", system="Be kind.", prompt="Thank {name}.")
    short = events(cfg, 100, campaign_id="cmp-short-system", input_tokens=1400)
    assert of_kind(report(tmp_path, cfg, store, cached, short), "prompt_caching") == []


# --- strategy --------------------------------------------------------------------------


def test_strategy_replays_the_traffic_under_each_strategy(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = cheaper_azure(order=["openai", "azure"])
    traffic = events(cfg, 300, provider="openai", outputs=(100,))
    (rec,) = of_kind(report(tmp_path, cfg, store, traffic), "strategy")
    replayed = rec.evidence["replayed_cost_nano"]
    usage = Usage(300 * 200, 0, 300 * 100)
    assert replayed["priority"] == priced(cfg, "openai", "gpt-4o", usage)
    assert replayed["cost"] == priced(cfg, "azure", "gpt-4o", usage)
    # azure has no observed traffic: auto gives it the benefit of the doubt.
    assert replayed["auto"] == replayed["cost"]
    assert rec.evidence["current_strategy"] == "priority"
    assert rec.action.toml in ('[routing]\nstrategy = "auto"', '[routing]\nstrategy = "cost"')
    assert rec.saving_nano_month == (replayed["priority"] - replayed["cost"]) * 30


def test_strategy_stays_silent_when_the_current_one_is_already_cheapest(
    tmp_path: Path, store: CampaignStore
) -> None:
    cfg = cheaper_azure(strategy="cost")
    traffic = events(cfg, 300, provider="azure", outputs=(100,))
    assert of_kind(report(tmp_path, cfg, store, traffic), "strategy") == []


def test_empty_ledger_recommends_nothing(tmp_path: Path, store: CampaignStore) -> None:
    result = report(tmp_path, config(), store)
    assert result.recommendations == []
    assert result.days_with_traffic == 0
    assert result.spend_nano == 0
