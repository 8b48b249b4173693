"""What an alert says, independent of the channel that carries it.

An ``Alert`` is one rule crossing one level in one period for one scope: the unit that is
claimed, stored in the history and acknowledged. A ``Notice`` is what one channel sends
in one run: the alerts it owes, headline first, plus the alerts that were held back on
that channel since its previous message (``suppressed``), folded in as one line each.

Every channel renders from the same ``Notice``: email as subject + text, Slack as Block
Kit, SNS as subject + JSON, the alert webhook as JSON. Figures are exact nano-dollars,
formatted only at the end; nothing here reads config, so no secret can end up in text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from huntaze_cli.money import format_usd, nano_to_usd, pct

SCOPE_KEYS = ("tenant", "account", "campaign", "provider", "model")
TOP_CONTRIBUTORS = 3


def scope_label(scope: dict[str, str]) -> str:
    """``tenant=agency_a, account=creator_1``; ``all`` for the empty scope."""
    return ", ".join(f"{key}={scope[key]}" for key in SCOPE_KEYS if key in scope) or "all"


@dataclass
class Alert:
    """One rule at one level in one period for one scope."""

    alert_id: str
    rule: str
    kind: str  # spend | forecast | anomaly | test | invoice
    scope: dict[str, str]
    period: str  # day | month
    period_label: str  # 2026-12-03 | 2026-12
    period_start: datetime
    level_pct: int
    limit_nano: int
    observed_nano: int
    created_at: datetime
    # (label, nano) of the largest contributors, e.g. ("account creator_1", 12_000_000).
    contributors: list[tuple[str, int]] = field(default_factory=list)
    unpriced_requests: int = 0

    @property
    def used_pct(self) -> float:
        return pct(self.observed_nano, self.limit_nano)

    @property
    def test(self) -> bool:
        return self.kind == "test"

    def headline(self) -> str:
        """One line: rule, scope, observed vs limit (an invoice: its total)."""
        if self.kind == "invoice":
            return (
                f"invoice {self.period_label} for {scope_label(self.scope)}: "
                f"{format_usd(self.observed_nano, 2)} (`huntaze costs invoice`)"
            )
        what = {
            "forecast": "is forecast to reach",
            "anomaly": "spend anomaly at",
            "test": "test alert at",
        }.get(self.kind, "reached")
        return (
            f"{self.rule} ({scope_label(self.scope)}) {what} {self.level_pct}% of "
            f"{format_usd(self.limit_nano, 2)} for {self.period_label}: "
            f"{format_usd(self.observed_nano, 2)} ({self.used_pct:.2f}%)"
        )

    def to_json(self) -> dict[str, Any]:
        """The alert as the webhook and SNS carry it (the history entry without channels)."""
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "kind": self.kind,
            "scope": dict(self.scope),
            "period": self.period,
            "period_label": self.period_label,
            "period_start": self.period_start.isoformat(),
            "level_pct": self.level_pct,
            "limit_usd": nano_to_usd(self.limit_nano),
            "limit_nano": self.limit_nano,
            "observed_usd": nano_to_usd(self.observed_nano),
            "observed_nano": self.observed_nano,
            "used_pct": self.used_pct,
            "top_contributors": [
                {"name": name, "cost_usd": nano_to_usd(nano), "cost_nano": nano}
                for name, nano in self.contributors[:TOP_CONTRIBUTORS]
            ],
            "unpriced_requests": self.unpriced_requests,
            "created_at": self.created_at.isoformat(),
        }


@dataclass
class Notice:
    """What one channel sends in one run: due alerts, headline first, plus held-back ones."""

    alerts: list[Alert]
    suppressed: list[Alert] = field(default_factory=list)
    timezone: str = "UTC"
    dashboard_url: str | None = None

    def __post_init__(self) -> None:
        if not self.alerts:
            raise ValueError("a notice needs at least one alert")
        # Highest level first, then the largest overrun: the headline is the worst news.
        self.alerts.sort(key=lambda a: (-a.level_pct, -a.used_pct, a.rule, a.alert_id))

    @property
    def test(self) -> bool:
        return all(alert.test for alert in self.alerts)

    def subject(self) -> str:
        head = self.alerts[0]
        prefix = "[huntaze TEST]" if self.test else "[huntaze]"
        more = len(self.alerts) - 1 + len(self.suppressed)
        tail = f" (+{more} more)" if more else ""
        return f"{prefix} {head.headline()}{tail}"

    def lines(self) -> list[str]:
        """The plain-text body, one alert block after another."""
        out: list[str] = []
        if self.test:
            out += ["This is a test alert from `huntaze alerts test`; nothing is breached.", ""]
        for alert in self.alerts:
            out += [
                alert.headline(),
                f"  kind: {alert.kind}; period {alert.period_label} ({self.timezone})",
                *(
                    [f"  total:    {format_usd(alert.observed_nano)}"]
                    if alert.kind == "invoice"
                    else [
                        f"  limit:    {format_usd(alert.limit_nano)}",
                        f"  observed: {format_usd(alert.observed_nano)}",
                    ]
                ),
            ]
            if alert.contributors:
                out.append("  top contributors:")
                for name, nano in alert.contributors[:TOP_CONTRIBUTORS]:
                    out.append(f"    {name:<32} {format_usd(nano):>18}")
            if alert.unpriced_requests:
                out.append(
                    f"  warning: {alert.unpriced_requests} unpriced requests are not in "
                    "these figures; add [pricing.overrides] for their models"
                )
            out.append(f"  alert id: {alert.alert_id}")
            out.append("")
        if self.suppressed:
            first = min(alert.created_at for alert in self.suppressed)
            out.append(
                f"{len(self.suppressed)} more alert(s) since {first.isoformat()} were held "
                "back by the repeat limit:"
            )
            out += [f"  - {alert.headline()}" for alert in self.suppressed]
            out.append("")
        if self.dashboard_url:
            out.append(f"Dashboard: {self.dashboard_url}")
        out.append(
            "`huntaze alerts list` shows the history; `huntaze alerts ack ID` marks one read."
        )
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "alerts": [alert.to_json() for alert in self.alerts],
            "suppressed": [alert.to_json() for alert in self.suppressed],
            "dashboard_url": self.dashboard_url,
        }
