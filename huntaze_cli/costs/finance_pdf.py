"""The finance report as a PDF: the JSON's figures, laid out for print.

Every amount printed is the report's own ``*_usd`` figure (or its exact ``*_nano``
formatted by ``money.format_usd``); nothing is summed here, so the PDF's totals are the
JSON's.
"""

from __future__ import annotations

from huntaze_cli.costs.finance import FinanceReport
from huntaze_cli.money import format_usd

MAX_ROWS = 25  # rows per breakdown in print; the CSV and JSON hold them all


def usd(nano: int) -> str:
    return format_usd(nano)


def pct_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}%"


def finance_pdf(report: FinanceReport) -> bytes:
    from huntaze_cli.reports.pdf import PdfReport

    since = report.since.date().isoformat()
    last = report.daily[-1].day.isoformat() if report.daily else since
    doc = PdfReport(
        "Huntaze cost report",
        subtitle=f"{since} to {last} (UTC days, {report.days} days), generated "
        f"{report.generated_at.isoformat(timespec='seconds')}",
    )
    total = report.total
    comparison = report.comparison.total
    doc.heading("Summary")
    doc.table(
        ["figure", "value"],
        [
            ["Total cost", usd(total.cost_nano)],
            ["Requests", f"{total.requests:,}"],
            ["Errors", f"{total.errors:,}"],
            ["Input tokens", f"{total.input_tokens:,}"],
            ["Output tokens", f"{total.output_tokens:,}"],
            ["Unpriced requests (not in the cost)", f"{report.unpriced_requests:,}"],
            ["Previous period cost", usd(comparison.b_cost_nano)],
            ["Change", f"{usd_signed(comparison.delta_nano)} ({pct_text(comparison.delta_pct)})"],
        ],
        widths=[2, 1],
        right=[1],
    )
    doc.heading("Spend per day")
    providers = list(report.breakdowns["provider"].rows)
    names = [str((row.model_extra or {}).get("provider")) for row in providers]
    series = {
        name: [day.providers[name].cost_nano if name in day.providers else 0
               for day in report.daily]
        for name in names
    }  # fmt: skip
    peak = max((day.cost_nano for day in report.daily), default=0)
    doc.stacked_bars(
        [day.day.strftime("%m-%d") for day in report.daily], series, axis_max_text=usd(peak)
    )
    for section, sub in report.breakdowns.items():
        doc.heading(f"By {section}")
        rows = [
            [
                str((row.model_extra or {}).get(section) or "-"),
                f"{row.requests:,}",
                f"{row.errors:,}",
                usd(row.cost_nano),
                f"{row.share_pct:.2f}%",
            ]
            for row in sub.rows[:MAX_ROWS]
        ]
        if len(sub.rows) > MAX_ROWS:
            rows.append([f"... {len(sub.rows) - MAX_ROWS} more (see the CSV)", "", "", "", ""])
        doc.table(
            [section, "requests", "errors", "cost", "share"],
            rows,
            widths=[3, 1, 1, 1.6, 1],
            right=[1, 2, 3, 4],
            footer=["total", f"{sub.total.requests:,}", f"{sub.total.errors:,}",
                    usd(sub.total.cost_nano), "100.00%" if sub.rows else ""],
        )  # fmt: skip
    prev = report.comparison
    doc.heading(
        f"Against the previous {report.days} days "
        f"({prev.b_since.date().isoformat()} to {prev.b_until.date().isoformat()}, end exclusive)"
    )
    doc.table(
        ["provider", "this period", "previous", "change", "change %"],
        [
            [
                str((row.model_extra or {}).get("provider")),
                usd(row.a_cost_nano),
                usd(row.b_cost_nano),
                usd_signed(row.delta_nano),
                pct_text(row.delta_pct),
            ]
            for row in prev.rows
        ],
        widths=[2, 1.5, 1.5, 1.5, 1],
        right=[1, 2, 3, 4],
        footer=["total", usd(comparison.a_cost_nano), usd(comparison.b_cost_nano),
                usd_signed(comparison.delta_nano), pct_text(comparison.delta_pct)],
    )  # fmt: skip
    if report.unpriced_requests:
        doc.text(
            f"{report.unpriced_requests:,} requests had no known price; their cost is not in "
            "these totals. Add [pricing.overrides] for their models."
        )
    return doc.bytes()


def usd_signed(nano: int) -> str:
    return ("-" if nano < 0 else "+") + usd(abs(nano))
