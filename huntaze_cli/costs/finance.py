"""The finance report: one period's spend for people who pay the bills.

`costs report` and ``GET /api/v2/costs/report`` build one ``FinanceReport`` and write it
as JSON, CSV (``finance_csv``: exact decimals) or PDF (``costs.finance_pdf``). It holds
the total, the spend per UTC day and provider (the chart), breakdowns by provider,
model, tenant and campaign, and the comparison by provider with the previous period of
equal length. Every figure is a breakdown over the daily rollups: no raw event is read,
and the CSV and PDF print the JSON's figures, never their own sums.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

from pydantic import BaseModel

from huntaze_cli.costs.compare import CompareReport, compare_reports, previous_period
from huntaze_cli.costs.reports import breakdown
from huntaze_cli.models import BreakdownReport, Totals, _Report
from huntaze_cli.money import nano_to_usd, usd_text
from huntaze_cli.storage.ledger import Ledger

# The breakdowns a finance report holds, in the order it prints them.
SECTIONS = ("provider", "model", "tenant", "campaign")


class ProviderDay(BaseModel):
    cost_usd: float
    cost_nano: int


class DaySpend(BaseModel):
    """One UTC day of the chart: its total and each provider's part."""

    day: date
    cost_usd: float
    cost_nano: int
    providers: dict[str, ProviderDay]


class FinanceReport(_Report):
    generated_at: datetime
    since: datetime
    until: datetime
    days: int
    total: Totals
    daily: list[DaySpend]
    breakdowns: dict[str, BreakdownReport]
    comparison: CompareReport
    unpriced_requests: int


def finance_report(
    ledger: Ledger, *, start: datetime, end: datetime, now: datetime
) -> FinanceReport:
    """The report for the UTC days touching ``[start, end)``."""
    sections = {key: breakdown(ledger, start=start, end=end, group_by=[key]) for key in SECTIONS}
    by_provider = sections["provider"]
    since, until = by_provider.since, by_provider.until
    previous = breakdown(ledger, start=previous_period(since, until)[0], end=since,
                         group_by=["provider"])  # fmt: skip
    per_day = breakdown(ledger, start=since, end=until, group_by=["day", "provider"])
    return FinanceReport(
        generated_at=now,
        since=since,
        until=until,
        days=(until - since).days,
        total=by_provider.total,
        daily=_days(per_day, since.date(), until.date()),
        breakdowns=sections,
        comparison=compare_reports(by_provider, previous),
        unpriced_requests=by_provider.unpriced_requests,
    )


def _days(report: BreakdownReport, first: date, end: date) -> list[DaySpend]:
    """Every day of the range (zero where nothing was spent), providers by cost."""
    nanos: dict[str, dict[str, int]] = {}
    for row in report.rows:
        extra = row.model_extra or {}
        nanos.setdefault(str(extra["day"]), {})[str(extra["provider"])] = row.cost_nano
    out = []
    day = first
    while day < end:
        parts = nanos.get(day.isoformat(), {})
        total = sum(parts.values())
        out.append(
            DaySpend(
                day=day,
                cost_usd=nano_to_usd(total),
                cost_nano=total,
                providers={
                    name: ProviderDay(cost_usd=nano_to_usd(nano), cost_nano=nano)
                    for name, nano in sorted(parts.items(), key=lambda kv: (-kv[1], kv[0]))
                },
            )
        )
        day += timedelta(days=1)
    return out


CSV_COLUMNS = (
    "section",
    "key",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_nano",
    "share_pct",
    "previous_cost_usd",
    "delta_usd",
    "delta_pct",
)


def finance_csv(report: FinanceReport) -> str:
    """The report as one CSV table: a ``section`` column says which part a row is.

    Sections: ``total``; ``day`` (one row per day); ``provider``, ``model``, ``tenant``,
    ``campaign``; ``previous_provider`` and ``previous_total`` (this period against the
    previous one). Money is the exact decimal (``usd_text``) next to its integer nano-dollars.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    total = report.total
    writer.writerow(
        ["total", f"{report.since.date()}..{report.until.date()}", total.requests,
         total.errors, total.input_tokens, total.output_tokens, usd_text(total.cost_nano),
         total.cost_nano, "100.00" if total.cost_nano else "", "", "", ""]
    )  # fmt: skip
    for day in report.daily:
        writer.writerow(
            ["day", day.day.isoformat(), "", "", "", "", usd_text(day.cost_nano),
             day.cost_nano, "", "", "", ""]
        )  # fmt: skip
    for section, sub in report.breakdowns.items():
        for row in sub.rows:
            key = (row.model_extra or {}).get(section)
            writer.writerow(
                [section, "" if key is None else key, row.requests, row.errors,
                 row.input_tokens, row.output_tokens, usd_text(row.cost_nano), row.cost_nano,
                 f"{row.share_pct:.2f}", "", "", ""]
            )  # fmt: skip
    comparison = report.comparison
    for line in [*comparison.rows, comparison.total]:
        key = (line.model_extra or {}).get("provider") if line is not comparison.total else ""
        writer.writerow(
            ["previous_total" if line is comparison.total else "previous_provider",
             key, line.a_requests, "", "", "", usd_text(line.a_cost_nano), line.a_cost_nano,
             "", usd_text(line.b_cost_nano), usd_text(line.delta_nano),
             "" if line.delta_pct is None else f"{line.delta_pct:.2f}"]
        )  # fmt: skip
    return out.getvalue()
