"""Evaluate every alert rule and send what is due, once, on every channel it names.

What `check-thresholds` (and `serve`, every ``[alerts] evaluate_interval_s``) does:

* Rules are the global ``global-daily``/``global-monthly`` limits, ``[[thresholds.rules]]``
  and the stored rules (``alerts.rules``); each observes its scope in its current day or
  month of ``[thresholds] timezone`` from the ledger's rollups. ``spend`` rules observe
  spend, ``forecast`` rules the upper bound of the month-end forecast, ``anomaly`` rules
  the spikes the anomaly detector finds in their scope (at least ``limit_usd`` large).
* A rule reaches each of its ``levels`` (percent of its limit) at most once per period
  and scope. A run that finds several new levels reached alerts the highest; the lower
  ones are covered by it. Every alert is stored in the history (in-app), whatever its
  channels.
* Per channel, each alert is *claimed* in the AlertStore before it is sent (an atomic
  insert or conditional write): of several evaluators at the same moment, on one host or
  several, exactly one sends it. A sent alert is never sent again; a failed one is
  released with its error and the next run retries it.
* Repeat limit: per channel, one rule and scope send at most one message per
  ``[alerts] min_interval_minutes``, except that a higher level than the last one sent
  in the same period goes out at once. What is held back is recorded as ``suppressed``
  and folded into the next message on that channel (or sent when the interval is over).
* Per channel and run, one message (a ``Notice``) carries every alert it owes, worst
  first: a storm of rules breaching together is one message, not fifty.

CloudWatch publishing is separate (``publish_cloudwatch``) so that its failure can never
stop an evaluation or an alert.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from huntaze_cli.alerts.notice import Alert, Notice
from huntaze_cli.alerts.rules import (
    Observation,
    Rule,
    alert_id,
    all_rules,
    observe,
    top_contributors,
)
from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.config import AlertRule, Config
from huntaze_cli.errors import AlertError, HuntazeError
from huntaze_cli.models import ThresholdReport, ThresholdResult
from huntaze_cli.money import nano_to_usd, pct
from huntaze_cli.storage.alerts import AlertClaim, AlertEntry, AlertKey, AlertStore
from huntaze_cli.storage.ledger import Ledger

if TYPE_CHECKING:
    from pydantic import ValidationError

log = logging.getLogger("huntaze.alerts")

NANO = 1_000_000_000


@dataclass
class _Due:
    """One alert a channel owes in this run."""

    alert: Alert
    key: AlertKey
    result: ThresholdResult


@dataclass
class _Outcome:
    """What one rule observed, and the alert it raises (if any)."""

    obs: Observation
    observed_nano: int
    forecast_usd: float | None = None
    period_label: str = ""
    alerts: list[tuple[int, Alert]] = field(default_factory=list)  # (level, alert)


def stored_rules(store: AlertStore | None) -> list[AlertRule]:
    """The stored rules that still validate (a rule stored by a newer version is skipped)."""
    if store is None:
        return []
    rules: list[AlertRule] = []
    for body in store.rules():
        try:
            rules.append(AlertRule.model_validate(body))
        except ValueError as exc:
            log.warning("stored alert rule %s skipped: %s", body.get("name"), _first_line(exc))
    return rules


def evaluate_thresholds(
    config: Config,
    ledger: Ledger,
    alerts: AlertStore | None = None,
    *,
    now: datetime | None = None,
    send_alerts: bool = True,
    clock: Clock = SYSTEM_CLOCK,
) -> ThresholdReport:
    """Observe every rule and send the alerts due; a failed channel does not raise.

    With ``send_alerts=False`` it only evaluates: nothing is sent or recorded; without
    ``alerts`` it does not even read which alerts went out. Failures of a channel are
    listed in each rule's ``alert_errors``. Ledger failures raise ``BackendError``. The
    periods are those holding ``now`` (default: the clock's).
    """
    if now is not None and now.tzinfo is None:
        raise ValueError("now must carry a UTC offset")
    now = (now or clock.now()).astimezone(UTC)
    if alerts is None and send_alerts:
        raise ValueError("sending alerts needs an alert store")
    rules = all_rules(config, stored_rules(alerts))
    outcomes = [_outcome(config, ledger, obs, now) for obs in observe(config, ledger, rules, now)]
    results = [_result(outcome, alerts) for outcome in outcomes]
    if send_alerts and alerts is not None:
        due = _due(config, ledger, alerts, outcomes, results, now)
        _send(config, alerts, due, now)
        for outcome, result in zip(outcomes, results, strict=True):
            result.alert_channels = _sent_channels(alerts, outcome)
            result.alerted = bool(result.alert_channels)
    return ThresholdReport(
        checked_at=now,
        timezone=config.thresholds.timezone,
        breached=any(result.breached for result in results),
        unpriced_requests=max((r.unpriced_requests for r in results), default=0),
        thresholds=results,
    )


def publish_cloudwatch(config: Config, ledger: Ledger, report: ThresholdReport) -> int | None:
    """Publish cost metrics when ``[metrics] cloudwatch`` is on; None when it is off.

    Sets ``report.cloudwatch_published``. Raises ``BackendError`` when CloudWatch fails;
    call it after ``evaluate_thresholds`` so that the evaluation and alerts happen anyway.
    """
    if not config.metrics.cloudwatch:
        return None
    from huntaze_cli.costs.cloudwatch import publish_costs

    report.cloudwatch_published = publish_costs(config, ledger, now=report.checked_at)
    return report.cloudwatch_published


# --- observing ---------------------------------------------------------------------------


def _outcome(config: Config, ledger: Ledger, obs: Observation, now: datetime) -> _Outcome:
    rule = obs.rule
    outcome = _Outcome(obs, obs.spent_nano, period_label=obs.period.label)
    if rule.kind == "forecast":
        from huntaze_cli.costs.forecast_report import forecast_scope

        figures = forecast_scope(
            config,
            ledger,
            scope=rule.scope,
            limit_usd=nano_to_usd(rule.limit_nano, 9),
            name=rule.name,
            source=rule.source,
            now=now,
        )
        outcome.forecast_usd = figures.forecast_usd
        upper = figures.upper_usd
        outcome.observed_nano = 0 if upper is None else round(upper * NANO)
    if rule.kind == "anomaly":
        from huntaze_cli.costs.anomaly_report import anomaly_scope

        found = anomaly_scope(config, ledger, scope=rule.scope, since=obs.period.start, now=now)
        big = [a for a in found if a.observed_nano >= rule.limit_nano]
        outcome.observed_nano = max((a.observed_nano for a in big), default=0)
        for anomaly in big:
            label = f"{anomaly.granularity}:{anomaly.start.isoformat()}"
            outcome.alerts.append(
                (100, _alert(ledger, obs, label, 100, anomaly.observed_nano, now, "anomaly"))
            )
        return outcome
    crossed = obs.crossed_levels(outcome.observed_nano)
    if crossed:
        level = max(crossed)
        outcome.alerts.append(
            (level, _alert(ledger, obs, obs.period.label, level, outcome.observed_nano, now))
        )
    return outcome


def _alert(
    ledger: Ledger,
    obs: Observation,
    label: str,
    level: int,
    observed_nano: int,
    now: datetime,
    kind: str | None = None,
) -> Alert:
    rule = obs.rule
    return Alert(
        alert_id=alert_id(rule.name, rule.scope_text, label, level),
        rule=rule.name,
        kind=kind or rule.kind,
        scope=dict(rule.scope),
        period=rule.period,
        period_label=label,
        period_start=obs.period.start,
        level_pct=level,
        limit_nano=rule.limit_nano,
        observed_nano=observed_nano,
        created_at=now,
        contributors=[],  # filled only for alerts that are sent: one read each
        unpriced_requests=obs.counters.unpriced,
    )


def _result(outcome: _Outcome, alerts: AlertStore | None) -> ThresholdResult:
    obs, rule = outcome.obs, outcome.obs.rule
    if rule.kind == "anomaly":
        reached = sorted({level for level, _ in outcome.alerts})
        breached = bool(outcome.alerts)
    else:
        reached = obs.crossed_levels(outcome.observed_nano)
        breached = rule.limit_nano > 0 and outcome.observed_nano >= rule.limit_nano
    return ThresholdResult(
        name=rule.name,
        kind=rule.kind,
        source=rule.source,
        scope=dict(rule.scope),
        period=obs.period.label,
        period_unit=rule.period,
        limit_usd=nano_to_usd(rule.limit_nano),
        limit_nano=rule.limit_nano,
        spent_usd=nano_to_usd(obs.spent_nano),
        spent_nano=obs.spent_nano,
        used_pct=pct(obs.spent_nano, rule.limit_nano),
        forecast_usd=outcome.forecast_usd,
        levels=list(rule.levels),
        levels_reached=reached,
        channels=list(rule.channels),
        unpriced_requests=obs.counters.unpriced,
        breached=breached,
        alerted=False,
        alert_channels=[] if alerts is None else _sent_channels(alerts, outcome),
    )


def _sent_channels(alerts: AlertStore, outcome: _Outcome) -> list[str]:
    rule = outcome.obs.rule
    labels = {alert.period_label for _, alert in outcome.alerts} or {outcome.period_label}
    sent: list[AlertClaim] = []
    for label in sorted(labels):
        sent += [c for c in alerts.claims(rule.name, rule.scope_text, label) if c.status == "sent"]
    channels: list[str] = []
    for claim in sorted(sent, key=lambda c: c.updated_at):
        if claim.key.channel not in channels:
            channels.append(claim.key.channel)
    return channels


# --- sending -------------------------------------------------------------------------------


def _due(
    config: Config,
    ledger: Ledger,
    alerts: AlertStore,
    outcomes: list[_Outcome],
    results: list[ThresholdResult],
    now: datetime,
) -> dict[str, list[_Due]]:
    """Per channel, the alerts to send now; held-back ones recorded as suppressed."""
    interval = timedelta(minutes=config.alerts.min_interval_minutes)
    owed: dict[str, list[_Due]] = {}
    for outcome, result in zip(outcomes, results, strict=True):
        rule = outcome.obs.rule
        for level, alert in outcome.alerts:
            entry = _entry(alert, rule)
            alerts.record_alert(entry)
            claims = alerts.claims(rule.name, rule.scope_text, alert.period_label)
            contributors_read = False
            for channel in rule.channels:
                sent_level = max(
                    (
                        c.key.level
                        for c in claims
                        if c.key.channel == channel and c.status == "sent"
                    ),
                    default=0,
                )
                if level <= sent_level:
                    continue  # this level (or a higher one) already went out this period
                key = entry.claim_key(channel)
                if interval and not sent_level:
                    last = alerts.last_sent(rule.name, rule.scope_text, channel)
                    if last is not None and now - last < interval:
                        alerts.suppress(key, now=now)
                        continue
                if not contributors_read:
                    alert.contributors = top_contributors(ledger, outcome.obs)
                    contributors_read = True
                owed.setdefault(channel, []).append(_Due(alert, key, result))
    return owed


def _send(config: Config, alerts: AlertStore, owed: dict[str, list[_Due]], now: datetime) -> None:
    """Claim, then send each channel one notice with what it owes and what it held back."""
    from huntaze_cli.alerts.channels import SENDERS

    owner = _owner()
    for channel, due in owed.items():
        # Another run holding a claim sends it (or releases it when its send fails).
        mine = [item for item in due if alerts.claim(item.key, owner=owner, now=now)]
        if not mine:
            continue
        keys = {item.key for item in mine}
        folded: list[tuple[AlertKey, Alert]] = []
        for held in alerts.suppressed(channel):
            if held.key in keys or not alerts.claim(held.key, owner=owner, now=now):
                continue
            found = alerts.get_alert(
                alert_id(held.key.rule, held.key.scope, held.key.period, held.key.level)
            )
            if found is not None:
                folded.append((held.key, _from_entry(found)))
            else:  # no history (pruned): nothing to tell, so it counts as sent
                alerts.finish(held.key, owner=owner, now=now, error=None)
        notice = Notice(
            [item.alert for item in mine],
            suppressed=[alert for _, alert in folded],
            timezone=config.thresholds.timezone,
            dashboard_url=_dashboard_url(config),
        )
        error: str | None = None
        try:
            SENDERS[channel](config.alerts, notice)
        except AlertError as exc:
            error = exc.message
        except HuntazeError as exc:  # a ConfigError from a channel's settings
            error = exc.message
        for key in [item.key for item in mine] + [key for key, _ in folded]:
            alerts.finish(key, owner=owner, now=now, error=error)
        if error is not None:
            for item in mine:
                item.result.alert_errors.append(f"{channel}: {error}")


def send_test(config: Config, channels: list[str], *, now: datetime) -> dict[str, str | None]:
    """Send a clearly marked test alert on each of ``channels``; channel -> error or None."""
    from huntaze_cli.alerts.channels import SENDERS

    test = Alert(
        alert_id=f"test_{uuid.uuid4().hex[:12]}",
        rule="huntaze-test",
        kind="test",
        scope={},
        period="day",
        period_label=now.date().isoformat(),
        period_start=now,
        level_pct=100,
        limit_nano=1_000_000_000,
        observed_nano=1_000_000_000,
        created_at=now,
    )
    notice = Notice(
        [test], timezone=config.thresholds.timezone, dashboard_url=_dashboard_url(config)
    )
    outcome: dict[str, str | None] = {}
    for channel in channels:
        try:
            SENDERS[channel](config.alerts, notice)
            outcome[channel] = None
        except HuntazeError as exc:
            outcome[channel] = exc.message
    return outcome


def _entry(alert: Alert, rule: Rule) -> AlertEntry:
    return AlertEntry(
        alert_id=alert.alert_id,
        rule=alert.rule,
        kind=alert.kind,
        scope=rule.scope_text,
        scope_values=dict(rule.scope),
        period=alert.period,
        period_label=alert.period_label,
        period_start=alert.period_start,
        level_pct=alert.level_pct,
        limit_nano=alert.limit_nano,
        observed_nano=alert.observed_nano,
        created_at=alert.created_at,
    )


def _from_entry(entry: AlertEntry) -> Alert:
    return Alert(
        alert_id=entry.alert_id,
        rule=entry.rule,
        kind=entry.kind,
        scope=dict(entry.scope_values),
        period=entry.period,
        period_label=entry.period_label,
        period_start=entry.period_start,
        level_pct=entry.level_pct,
        limit_nano=entry.limit_nano,
        observed_nano=entry.observed_nano,
        created_at=entry.created_at,
    )


def _dashboard_url(config: Config) -> str | None:
    base = config.server.public_url
    return None if not base else base.rstrip("/") + "/dashboard"


def _owner() -> str:
    """Who holds a claim: host, process and a nonce (two runs of one pid never match)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _first_line(exc: ValidationError | ValueError) -> str:
    return " ".join(str(exc).split())[:200]
