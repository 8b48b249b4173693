"""Experiments: stable assignment, overrides applied at generation, reports with intervals."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from huntaze_cli.config import Config, ExperimentConfig, load_config
from huntaze_cli.costs.experiments import MIN_MESSAGES, experiment_report
from huntaze_cli.llm.experiments import arm_of, assigner_for
from huntaze_cli.llm.types import GenerationRequest, Message
from huntaze_cli.models import CostEvent
from tests.cli.test_campaigns_cli import write_campaign
from tests.costs.traffic import events, ledger_with
from tests.helpers import run

ARMS = {"control": {}, "cheaper": {"model": "gpt-4o-mini", "max_tokens": 20}}


def experiment(**extra: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"arms": ARMS, **extra})


def config_with(**experiments: Any) -> Config:
    return Config.model_validate({"experiments": experiments})


# --- assignment ------------------------------------------------------------------------


def test_a_fan_stays_in_one_arm_and_the_split_holds() -> None:
    exp = experiment(split={"control": 30, "cheaper": 70})
    arms = [arm_of("e1", exp, f"fan_{n}") for n in range(20_000)]
    assert arms == [arm_of("e1", exp, f"fan_{n}") for n in range(20_000)]
    share = arms.count("cheaper") / len(arms)
    assert 0.68 < share < 0.72
    # Another experiment places fans independently of this one.
    other = [arm_of("e2", exp, f"fan_{n}") for n in range(20_000)]
    assert sum(a != b for a, b in zip(arms, other, strict=True)) > 5000


def test_a_zero_share_arm_gets_nobody() -> None:
    exp = experiment(split={"control": 100, "cheaper": 0})
    assert {arm_of("e1", exp, f"fan_{n}") for n in range(2000)} == {"control"}


def test_scope_picks_the_campaigns_and_overrides_apply() -> None:
    cfg = config_with(e1={"arms": ARMS, "scope": {"account": "creator_1"}})
    assert (
        assigner_for(cfg, tenant="t", account="creator_2", campaign=("c",), model="gpt-4o") is None
    )
    assigner = assigner_for(cfg, tenant="t", account="creator_1", campaign=("c",), model="gpt-4o")
    assert assigner is not None
    request = GenerationRequest("r", "gpt-4o", [Message("user", "hi")], max_tokens=100)
    fan = next(f"fan_{n}" for n in range(100) if assigner.arm(f"fan_{n}") == "cheaper")
    changed = assigner.apply(request, fan)
    assert (changed.model, changed.max_tokens, changed.experiment, changed.arm) == (
        "gpt-4o-mini", 20, "e1", "cheaper"
    )  # fmt: skip
    control = next(f"fan_{n}" for n in range(100) if assigner.arm(f"fan_{n}") == "control")
    kept = assigner.apply(request, control)
    assert (kept.model, kept.max_tokens, kept.arm) == ("gpt-4o", 100, "control")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"arms": {"only": {}}}, "at least two arms"),
        ({"arms": ARMS, "split": {"control": 50, "cheaper": 40}}, "add up to 90"),
        ({"arms": ARMS, "split": {"control": 50, "other": 50}}, "'other' is not one of the arms"),
        ({"arms": ARMS, "baseline": "nope"}, "baseline"),
        ({"arms": {"a": {"model": ""}, "b": {}}}, "model"),
    ],
)
def test_bad_experiment_config_is_exit_2_naming_the_field(
    tmp_path: Path, body: dict[str, Any], message: str
) -> None:
    import tomli_w

    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"experiments": {"e1": body}}))
    result = run("--config", str(path), "experiments", "list", "--json")
    assert result.exit_code == 2
    assert "experiments.e1" in result.stderr and message in result.stderr


# --- generation end to end -------------------------------------------------------------


def test_campaign_messages_follow_their_arm_into_the_ledger_and_the_report(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[experiments.mini]\nscope = { account = "creator_t" }\n'
        'arms = { control = {}, cheaper = { model = "gpt-4o-mini", max_tokens = 8 } }\n'
    )
    campaign = write_campaign(tmp_path, 80, extra='model = "gpt-4o"\n')
    sent = run("--config", str(config), "send-campaign", str(campaign), "--no-wait", "--json")
    assert sent.exit_code == 0, sent.stderr
    exported = run("--config", str(config), "costs", "export")
    stored = [
        CostEvent.from_record(json.loads(line, parse_float=Decimal))[0]
        for line in exported.stdout.splitlines()
    ]
    assert len(stored) == 80
    exp = load_config(config).experiments["mini"]
    for event in stored:
        fan = event.request_id.split(":", 1)[1]
        assert event.experiment == "mini"
        assert event.arm == arm_of("mini", exp, fan)
        if event.arm == "cheaper":
            assert event.model == "gpt-4o-mini" and event.output_tokens <= 8
        else:
            assert event.model == "gpt-4o"
    report = run("--config", str(config), "experiments", "report", "mini", "--json")
    assert report.exit_code == 0, report.stderr
    arms = {a["arm"]: a for a in report.json()["arms"]}
    assert sum(a["messages"] for a in arms.values()) == 80
    assert arms["cheaper"]["messages"] == sum(e.arm == "cheaper" for e in stored)
    listed = run("--config", str(config), "experiments", "list", "--json").json()
    assert listed["experiments"][0]["split"] == {"control": 50.0, "cheaper": 50.0}


# --- report statistics -----------------------------------------------------------------


def _arm_events(cfg: Config, arm: str, costs: list[int], latency: float = 200.0) -> list[CostEvent]:
    out = []
    for cost in costs:
        (event,) = events(cfg, 1, experiment="e1", arm=arm, latency_ms=latency)
        out.append(event.model_copy(update={"cost_nano": cost}))
    return out


def test_report_interval_matches_welch_on_the_raw_costs(tmp_path: Path) -> None:
    cfg = config_with(e1={"arms": ARMS})
    rng = random.Random(7)
    control = [rng.randint(900_000, 1_100_000) for _ in range(200)]
    cheaper = [rng.randint(80_000, 140_000) for _ in range(150)]
    ledger = ledger_with(
        tmp_path / "l.db",
        _arm_events(cfg, "control", control),
        _arm_events(cfg, "cheaper", cheaper),
    )
    report = experiment_report(cfg, ledger, "e1")
    ledger.close()
    (cost,) = [c for c in report.comparison if c.metric == "cost_per_message_usd"]
    raw = stats.ttest_ind([c / 1e9 for c in cheaper], [c / 1e9 for c in control], equal_var=False)
    interval = raw.confidence_interval(0.95)
    assert cost.significant
    assert cost.difference == pytest.approx(sum(cheaper) / 150e9 - sum(control) / 200e9)
    assert cost.ci_low == pytest.approx(interval.low, rel=1e-6)
    assert cost.ci_high == pytest.approx(interval.high, rel=1e-6)
    assert cost.p_value == pytest.approx(raw.pvalue, abs=1e-6)
    arms = {a.arm: a for a in report.arms}
    assert arms["control"].messages == 200 and arms["cheaper"].needs_more_messages == 0
    assert "cheaper costs less per message" in report.verdict


def test_too_few_messages_says_how_many_more_each_arm_needs(tmp_path: Path) -> None:
    cfg = config_with(e1={"arms": ARMS})
    ledger = ledger_with(
        tmp_path / "l.db",
        _arm_events(cfg, "control", [1_000_000] * 12),
        _arm_events(cfg, "cheaper", [100_000] * 5),
    )
    report = experiment_report(cfg, ledger, "e1")
    ledger.close()
    assert report.comparison == []
    arms = {a.arm: a for a in report.arms}
    assert arms["control"].needs_more_messages == MIN_MESSAGES - 12
    assert arms["cheaper"].needs_more_messages == MIN_MESSAGES - 5
    assert "not enough messages" in report.verdict


def test_noisy_small_difference_is_not_significant_and_asks_for_more(tmp_path: Path) -> None:
    cfg = config_with(e1={"arms": ARMS})
    rng = random.Random(3)
    control = [rng.randint(100_000, 2_000_000) for _ in range(40)]
    cheaper = [rng.randint(100_000, 1_950_000) for _ in range(40)]
    ledger = ledger_with(
        tmp_path / "l.db",
        _arm_events(cfg, "control", control),
        _arm_events(cfg, "cheaper", cheaper),
    )
    report = experiment_report(cfg, ledger, "e1")
    ledger.close()
    (cost,) = [c for c in report.comparison if c.metric == "cost_per_message_usd"]
    assert not cost.significant
    assert cost.ci_low is not None and cost.ci_high is not None
    assert cost.ci_low < 0 < cost.ci_high
    assert all(a.needs_more_messages > 0 for a in report.arms)


def test_unknown_experiment_is_not_found(tmp_path: Path) -> None:
    result = run("experiments", "report", "nope", "--json")
    assert result.exit_code != 0 and "experiment 'nope' not found" in result.stderr


def test_latency_percentiles_are_compared_with_a_bootstrap_interval(tmp_path: Path) -> None:
    cfg = config_with(e1={"arms": ARMS})
    rng = random.Random(5)
    slow = []
    for n in range(300):
        (event,) = events(cfg, 1, experiment="e1", arm="control", latency_ms=rng.uniform(400, 900))
        slow.append(event.model_copy(update={"cost_nano": 1000 + n}))
    fast = []
    for n in range(300):
        (event,) = events(cfg, 1, experiment="e1", arm="cheaper", latency_ms=rng.uniform(100, 300))
        fast.append(event.model_copy(update={"cost_nano": 1000 + n}))
    same = []
    for n in range(300):
        (event,) = events(cfg, 1, experiment="e2", arm="cheaper", latency_ms=rng.uniform(400, 900))
        same.append(event.model_copy(update={"cost_nano": 1000 + n}))
    ledger = ledger_with(tmp_path / "l.db", slow, fast)
    report = experiment_report(cfg, ledger, "e1")
    ledger.close()
    by_metric = {c.metric: c for c in report.comparison}
    for metric in ("latency_p50_ms", "latency_p95_ms"):
        found = by_metric[metric]
        assert found.significant and found.difference < 0
        assert found.ci_low is not None and found.ci_high is not None
        assert found.ci_low <= found.difference <= found.ci_high < 0
    # The same latency in both arms: no significant difference.
    cfg2 = config_with(e2={"arms": ARMS})
    control = [e.model_copy(update={"experiment": "e2", "arm": "control"}) for e in slow]
    ledger = ledger_with(tmp_path / "l2.db", control, same)
    report = experiment_report(cfg2, ledger, "e2")
    ledger.close()
    p50 = next(c for c in report.comparison if c.metric == "latency_p50_ms")
    assert p50.ci_low is not None and p50.ci_high is not None
    assert p50.ci_low < 0 < p50.ci_high and not p50.significant
