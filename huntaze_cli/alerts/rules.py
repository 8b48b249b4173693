"""Alert rules: which exist, and what each one observes in its current period.

Three sources, one list: the global rules ``global-daily`` and ``global-monthly`` from
``[thresholds] daily_usd / monthly_usd`` (a limit of 0 turns one off), the
``[[thresholds.rules]]`` of the config, and the rules stored with `huntaze thresholds
set` (or ``PUT /api/v2/costs/thresholds/{name}``). A name is unique across all three; a
stored rule cannot take the name of a config rule.

Spend is read from the ledger's quarter-hour scope rollups, never from raw events: the
rules are grouped by period and by the set of scope keys they filter on, and each group
costs one grouped read, whatever the number of rules in it. Periods are the day or month
of ``now`` in ``[thresholds] timezone``, exact in every zone (every offset is a multiple
of 15 minutes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from huntaze_cli.config import GLOBAL_RULES, AlertRule, Config, RuleScope
from huntaze_cli.costs.periods import Period, day_period, month_period
from huntaze_cli.money import pct, round_to_nano
from huntaze_cli.storage.ledger import SCOPE_FIELDS, Counters, Ledger

RuleSource = str  # "global" | "config" | "budget" | "stored"
BUDGET_RULE_PREFIX = "budget:"


@dataclass(frozen=True)
class Rule:
    """A rule ready to evaluate; money in nano-dollars."""

    name: str
    kind: str
    scope: dict[str, str]
    period: str  # day | month
    limit_nano: int
    levels: tuple[int, ...]
    channels: tuple[str, ...]
    source: RuleSource

    @property
    def scope_text(self) -> str:
        """Canonical ``key=value,key=value`` (keys in SCOPE_FIELDS order); "" for all."""
        return scope_text(self.scope)

    def to_config(self) -> AlertRule:
        return AlertRule(
            name=self.name,
            kind=self.kind,
            scope=RuleScope(**self.scope),
            period=self.period,
            limit_usd=Decimal(self.limit_nano) / Decimal(1_000_000_000),
            levels=list(self.levels),
            channels=list(self.channels),
        )


def scope_text(scope: dict[str, str]) -> str:
    return ",".join(f"{key}={scope[key]}" for key in SCOPE_FIELDS if key in scope)


def from_config(rule: AlertRule, *, default_channels: Sequence[str], source: RuleSource) -> Rule:
    return Rule(
        name=rule.name,
        kind=rule.kind,
        scope=rule.scope.as_dict(),
        period=rule.period,
        limit_nano=round_to_nano(rule.limit_usd),
        levels=tuple(rule.levels),
        channels=tuple(rule.channels if rule.channels is not None else default_channels),
        source=source,
    )


def all_rules(config: Config, stored: Iterable[AlertRule] = ()) -> list[Rule]:
    """Global, config and stored rules, in that order; a stored rule never shadows another."""
    channels = tuple(config.alerts.channels)
    rules: list[Rule] = []
    for name, period, limit in (
        (GLOBAL_RULES[0], "day", config.thresholds.daily_usd),
        (GLOBAL_RULES[1], "month", config.thresholds.monthly_usd),
    ):
        # A limit of 0 turns the rule off: it is listed, observed, and never alerts.
        rules.append(
            Rule(name, "spend", {}, period, round_to_nano(limit), (100,), channels, "global")
        )
    taken = set(GLOBAL_RULES)
    for rule in config.thresholds.rules:
        rules.append(from_config(rule, default_channels=channels, source="config"))
        taken.add(rule.name)
    for derived in budget_rules(config, channels):
        if derived.name not in taken:
            rules.append(derived)
            taken.add(derived.name)
    for rule in stored:
        if rule.name not in taken:
            rules.append(from_config(rule, default_channels=channels, source="stored"))
            taken.add(rule.name)
    return rules


def budget_rules(config: Config, channels: Sequence[str]) -> list[Rule]:
    """A budget with ``on_soft = "alert"`` alerts through a spend rule of its own, named
    ``budget:<budget>``, at ``soft_pct`` and at 100 % of its limit."""
    from huntaze_cli.budgets import budgets_in_force

    return [
        Rule(
            f"{BUDGET_RULE_PREFIX}{budget.name}",
            "spend",
            budget.scope.as_dict(),
            budget.period,
            round_to_nano(budget.limit_usd),
            tuple(sorted({budget.soft_pct, 100})),
            tuple(channels),
            "budget",
        )
        for budget in budgets_in_force(config)
        if budget.on_soft == "alert"
    ]


def config_rule_names(config: Config) -> set[str]:
    """Names a stored rule may not take (and that `thresholds delete` must refuse)."""
    names = set(GLOBAL_RULES) | {rule.name for rule in config.thresholds.rules}
    return names | {rule.name for rule in budget_rules(config, ())}


@dataclass
class Observation:
    """What one rule observes in its current period."""

    rule: Rule
    period: Period
    counters: Counters = field(default_factory=Counters)

    @property
    def spent_nano(self) -> int:
        return self.counters.cost_nano

    @property
    def used_pct(self) -> float:
        return pct(self.spent_nano, self.rule.limit_nano)

    def crossed_levels(self, observed_nano: int | None = None) -> list[int]:
        """The rule's levels that ``observed_nano`` (default: spend) has reached."""
        value = self.spent_nano if observed_nano is None else observed_nano
        if self.rule.limit_nano <= 0:
            return []  # a limit of 0 is off
        # value >= limit * level / 100, in integers: no rounding at the edge.
        return [lvl for lvl in self.rule.levels if value * 100 >= self.rule.limit_nano * lvl]


def period_of(rule: Rule, now: datetime, config: Config) -> Period:
    tz = config.thresholds.tz
    period = day_period(now, tz) if rule.period == "day" else month_period(now, tz)
    return Period(rule.name, period.label, period.start, period.end)


def observe(
    config: Config, ledger: Ledger, rules: Sequence[Rule], now: datetime
) -> list[Observation]:
    """Each rule's spend in its current period: one grouped read per (period, scope keys)."""
    observations = [Observation(rule, period_of(rule, now, config)) for rule in rules]
    groups: dict[tuple[datetime, datetime, tuple[str, ...]], list[Observation]] = {}
    for obs in observations:
        keys = tuple(key for key in SCOPE_FIELDS if key in obs.rule.scope)
        groups.setdefault((obs.period.start, obs.period.end, keys), []).append(obs)
    for (start, end, keys), members in groups.items():
        if len(members) == 1:
            # One rule: filter in the store rather than fetch every group.
            (obs,) = members
            rows = ledger.scope_groups(start, end, (), where=obs.rule.scope)
            for _, counters in rows:
                obs.counters.add(counters)
            continue
        sums = dict(ledger.scope_groups(start, end, keys))
        for obs in members:
            found = sums.get(tuple(obs.rule.scope[key] for key in keys))
            if found is not None:
                obs.counters.add(found)
    return observations


def top_contributors(ledger: Ledger, obs: Observation, *, limit: int = 3) -> list[tuple[str, int]]:
    """The largest accounts and models inside a rule's scope and period, by spend."""
    out: list[tuple[str, int]] = []
    for key in ("account", "model"):
        if key in obs.rule.scope:
            continue  # a rule on one account has one account: not worth listing
        rows = ledger.scope_groups(obs.period.start, obs.period.end, (key,), where=obs.rule.scope)
        out += [(f"{key} {group[0]}", c.cost_nano) for group, c in rows if group[0] and c.cost_nano]
    out.sort(key=lambda item: (-item[1], item[0]))
    return out[:limit]


def alert_id(rule: str, scope: str, period_label: str, level: int) -> str:
    """The stable id of one rule's level in one period and scope.

    Every evaluator derives the same id, so concurrent runs on several hosts name the
    alert identically and the history holds it once.
    """
    digest = hashlib.sha256(f"{rule}\x1f{scope}\x1f{period_label}\x1f{level}".encode())
    return "alr_" + digest.hexdigest()[:20]
