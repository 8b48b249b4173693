"""Evaluate the daily and monthly spend thresholds and alert once per threshold per period.

Rules (the behaviour `check-thresholds` documents):

* The daily threshold covers today and the monthly one this calendar month, both in
  ``[thresholds] timezone``; spend is read from the ledger's quarter-hour rollups.
* A threshold is breached when spend >= limit. A limit of 0 disables the threshold: it
  is reported with ``used_pct`` 0 and never breaches.
* Each configured channel sends one alert per threshold per period. Before sending, the
  run *claims* the alert in the ``AlertStore`` (an atomic insert or conditional write), so
  of several runs at the same moment, on one host or several, exactly one sends it. A
  successful send marks the claim sent and is never repeated; a failed one releases the
  claim with its error and the next run retries it.
* ``[alerts] min_interval_minutes`` keeps a threshold from alerting a new period sooner
  than that after its previous successful alert (a breach at 23:50 and another just after
  midnight): the run leaves it unsent and a later run sends it. Channels still missing for
  a period that already alerted are retried without waiting.
* One message per channel per run, listing every threshold that channel owes.

CloudWatch publishing is separate (``publish_cloudwatch``) so that its failure can never
stop an evaluation or an alert.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from huntaze_cli.alerts.channels import CHANNELS
from huntaze_cli.config import Config
from huntaze_cli.costs.periods import Period, day_period, month_period, provider_totals
from huntaze_cli.errors import AlertError
from huntaze_cli.models import ThresholdReport, ThresholdResult, utcnow
from huntaze_cli.money import format_usd, nano_to_usd, pct, round_to_nano
from huntaze_cli.storage.alerts import AlertClaim, AlertKey, AlertStore
from huntaze_cli.storage.ledger import Counters, Ledger

TOP_PROVIDERS = 5
GLOBAL_SCOPE = ""  # the global thresholds cover every tenant, account and provider
BREACH_LEVEL = 100  # % of the limit at which the global thresholds alert


@dataclass
class _Check:
    """One threshold while it is being evaluated; money in nano-dollars."""

    period: Period
    limit_nano: int
    spent_nano: int
    providers: dict[str, int]
    unpriced: int = 0
    sent: list[str] = field(default_factory=list)  # channels that delivered this period
    errors: list[str] = field(default_factory=list)  # failures of this run

    @property
    def name(self) -> str:
        return self.period.name

    def key(self, channel: str) -> AlertKey:
        return AlertKey(self.name, GLOBAL_SCOPE, self.period.label, BREACH_LEVEL, channel)

    @property
    def breached(self) -> bool:
        return self.limit_nano > 0 and self.spent_nano >= self.limit_nano

    @property
    def used_pct(self) -> float:
        return pct(self.spent_nano, self.limit_nano)


def evaluate_thresholds(
    config: Config,
    ledger: Ledger,
    alerts: AlertStore | None = None,
    *,
    now: datetime | None = None,
    send_alerts: bool = True,
) -> ThresholdReport:
    """Compare today's and this month's spend with their limits and send due alerts.

    With ``send_alerts=False`` it only evaluates: nothing is sent or recorded; without
    ``alerts`` it does not even read which alerts went out. A failed
    channel does not raise; it is listed in the threshold's ``alert_errors``. Ledger
    failures raise ``BackendError``.
    """
    if now is not None and now.tzinfo is None:
        raise ValueError("now must carry a UTC offset")
    now = (now or utcnow()).astimezone(UTC)
    tz = config.thresholds.tz
    day, month = day_period(now, tz), month_period(now, tz)
    today, this_month = provider_totals(ledger, [day, month])
    checks = [
        _check(day, config.thresholds.daily_usd, today),
        _check(month, config.thresholds.monthly_usd, this_month),
    ]
    if alerts is None:
        if send_alerts:
            raise ValueError("sending alerts needs an alert store")
    else:
        for check in checks:
            claims = alerts.claims(check.name, GLOBAL_SCOPE, check.period.label)
            check.sent = _sent_channels(claims)
        if send_alerts:
            _send_due(config, alerts, checks, now)
    results = [
        ThresholdResult(
            name=check.name,
            period=check.period.label,
            limit_usd=nano_to_usd(check.limit_nano),
            limit_nano=check.limit_nano,
            spent_usd=nano_to_usd(check.spent_nano),
            spent_nano=check.spent_nano,
            used_pct=check.used_pct,
            unpriced_requests=check.unpriced,
            breached=check.breached,
            alerted=bool(check.sent),
            alert_channels=check.sent,
            alert_errors=check.errors,
        )
        for check in checks
    ]
    return ThresholdReport(
        checked_at=now,
        timezone=config.thresholds.timezone,
        breached=any(check.breached for check in checks),
        unpriced_requests=max((check.unpriced for check in checks), default=0),
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


def _check(period: Period, limit_usd: Decimal, providers: dict[str, Counters]) -> _Check:
    return _Check(
        period=period,
        limit_nano=round_to_nano(limit_usd),
        spent_nano=sum(c.cost_nano for c in providers.values()),
        providers={name: c.cost_nano for name, c in providers.items()},
        unpriced=sum(c.unpriced for c in providers.values()),
    )


def _sent_channels(claims: list[AlertClaim]) -> list[str]:
    sent = [claim for claim in claims if claim.status == "sent"]
    return [claim.key.channel for claim in sorted(sent, key=lambda c: c.updated_at)]


def _owner() -> str:
    """Who holds a claim: host, process and a nonce (two runs of one pid never match)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _send_due(config: Config, alerts: AlertStore, checks: list[_Check], now: datetime) -> None:
    """Claim, then send each channel one message with the breached thresholds it owes."""
    interval = timedelta(minutes=config.alerts.min_interval_minutes)
    owner = _owner()
    owed: dict[str, list[_Check]] = {}
    for check in checks:
        if not check.breached:
            continue
        missing: list[str] = [c for c in config.alerts.channels if c not in check.sent]
        if not missing:
            continue
        if not check.sent and interval:
            # A new period: hold it back if the previous period alerted too recently.
            last = alerts.last_sent(check.name, GLOBAL_SCOPE)
            if last is not None and now - last < interval:
                continue
        for channel in missing:
            # Another run holding the claim sends it (or releases it when its send fails).
            if alerts.claim(check.key(channel), owner=owner, now=now):
                owed.setdefault(channel, []).append(check)
    for channel, due in owed.items():
        subject, body = _alert_message(due, timezone=config.thresholds.timezone, now=now)
        error: str | None = None
        try:
            CHANNELS[channel](config.alerts, subject, body)
        except AlertError as exc:
            error = exc.message
        for check in due:
            alerts.finish(check.key(channel), owner=owner, now=now, error=error)
            if error is None:
                check.sent.append(channel)
            else:
                check.errors.append(f"{channel}: {error}")


def _alert_message(checks: list[_Check], *, timezone: str, now: datetime) -> tuple[str, str]:
    """Subject and plain-text body of one alert about ``checks``; figures only, no config."""
    names = " and ".join(check.name for check in checks)
    if len(checks) == 1:
        check = checks[0]
        subject = (
            f"[huntaze] {check.name} spend threshold breached: "
            f"{format_usd(check.spent_nano, 2)} of {format_usd(check.limit_nano, 2)} "
            f"({check.used_pct:.2f}%)"
        )
        lines = [f"The {names} spend threshold of huntaze is breached.", ""]
    else:
        subject = f"[huntaze] {names} spend thresholds breached"
        lines = [f"The {names} spend thresholds of huntaze are breached.", ""]
    for check in checks:
        lines += [
            f"{check.name.capitalize()} threshold, period {check.period.label} ({timezone})",
            f"  limit:  {format_usd(check.limit_nano)}",
            f"  spent:  {format_usd(check.spent_nano)}",
            f"  used:   {check.used_pct:.2f}%",
            *(
                [
                    f"  unpriced requests: {check.unpriced} (no known price: not in the "
                    "spend above; add [pricing.overrides] for their models)"
                ]
                if check.unpriced
                else []
            ),
            f"  from {check.period.start.isoformat()} to {check.period.end.isoformat()}",
            "  top providers by spend:",
        ]
        top = sorted(check.providers.items(), key=lambda item: (-item[1], item[0]))
        for provider, nano in top[:TOP_PROVIDERS]:
            share = pct(nano, check.spent_nano)
            lines.append(f"    {provider:<20} {format_usd(nano):>18}  {share:6.2f}%")
        if len(top) > TOP_PROVIDERS:
            lines.append(f"    ... and {len(top) - TOP_PROVIDERS} more")
        lines.append("")
    lines += [
        f"Checked at {now.isoformat()}; times are UTC, days and months are counted in {timezone}.",
        "Each threshold alerts once per period and channel; `huntaze costs stats` and "
        "`huntaze costs breakdown` show the details.",
    ]
    return subject, "\n".join(lines) + "\n"
