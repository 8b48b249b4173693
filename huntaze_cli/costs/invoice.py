"""A tenant's monthly invoice: provider cost per provider and model, markup, total.

Money is exact: every line is the sum of the tenant's recorded costs in nano-dollars,
the subtotal the sum of the lines, the markup the subtotal times ``markup_pct`` rounded
half-even to the nano-dollar, the total their sum; each ``*_usd`` (6 decimals, for
people) sits beside its exact ``*_nano``. Attempts with no known price are counted in
``unpriced_requests`` and are not in any amount (never a silent $0).

The month is the calendar month in ``[thresholds] timezone`` (as budgets and quotas
count it), summed from the quarter-hour scope rollups, which are exact in any zone and
kept ``SCOPE_RETENTION_DAYS``. A month older than that, or any month when the zone is
UTC, is summed from the daily rollups (kept 400 days) as a UTC month; ``timezone`` in
the invoice says which zone its month was counted in.

The CSV holds the same figures as exact decimals; the PDF prints them (``reports.pdf``);
neither computes anything.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from huntaze_cli.errors import UsageError
from huntaze_cli.models import _Report
from huntaze_cli.money import format_usd, nano_to_usd, usd_text
from huntaze_cli.storage.ledger import SCOPE_RETENTION_DAYS, Counters, Ledger

INVOICE_FORMATS = ("json", "csv", "pdf")


class InvoiceLine(BaseModel):
    """What one provider and model cost the tenant in the month."""

    provider: str
    model: str
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_usd: float
    cost_nano: int


class Invoice(_Report):
    """One tenant's invoice for one month (`costs invoice`, GET /api/v2/costs/invoice)."""

    tenant: str
    month: str  # YYYY-MM
    timezone: str  # the zone the month was counted in
    since: datetime
    until: datetime
    closed: bool  # false while the month is still running
    lines: list[InvoiceLine]
    subtotal_usd: float
    subtotal_nano: int
    markup_pct: float
    markup_usd: float
    markup_nano: int
    total_usd: float
    total_nano: int
    unpriced_requests: int


def parse_month(value: str, *, now: datetime, tz: ZoneInfo) -> str:
    """``YYYY-MM`` or ``last`` (the month before the current one in ``tz``) as YYYY-MM;
    a malformed or future month is a UsageError on ``month``."""
    local = now.astimezone(tz)
    current = f"{local.year:04d}-{local.month:02d}"
    if value == "last":
        year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
        return f"{year:04d}-{month:02d}"
    if not re.fullmatch(r"(19[7-9]\d|[2-9]\d{3})-(0[1-9]|1[0-2])", value):
        raise UsageError(
            f"<month> {value!r}: write YYYY-MM (e.g. 2026-11) or last", field="month", value=value
        )
    if value > current:
        raise UsageError(f"<month> {value} has not started yet", field="month", value=value)
    return value


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where ``month`` (YYYY-MM) starts and ends in ``tz``."""
    year, number = int(month[:4]), int(month[5:])
    after = (year + 1, 1) if number == 12 else (year, number + 1)
    start = datetime(year, number, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(after[0], after[1], 1, tzinfo=tz).astimezone(UTC)
    return start, end


def build_invoice(
    ledger: Ledger,
    *,
    tenant: str,
    month: str,
    timezone: str,
    markup_pct: Decimal,
    now: datetime,
) -> Invoice:
    """The invoice of ``tenant`` for ``month`` from the ledger's rollups."""
    tz = ZoneInfo(timezone)
    start, end = month_bounds(month, tz)
    scoped = timezone != "UTC" and start >= now - timedelta(days=SCOPE_RETENTION_DAYS)
    if scoped:
        rows = ledger.scope_groups(start, end, ["provider", "model"], where={"tenant": tenant})
    else:
        timezone = "UTC"
        start, end = month_bounds(month, ZoneInfo("UTC"))
        daily = ledger.daily_groups(start.date(), end.date(), ["tenant", "provider", "model"])
        rows = [(key[1:], counters) for key, counters in daily if key[0] == tenant]
    sums: dict[tuple[str, str], Counters] = {}
    for key, counters in rows:
        total = sums.setdefault((str(key[0]), str(key[1])), Counters())
        total.add(counters)
    lines = [
        InvoiceLine(
            provider=provider,
            model=model,
            requests=c.requests,
            input_tokens=c.input_tokens,
            cached_input_tokens=c.cached_input_tokens,
            output_tokens=c.output_tokens,
            cost_usd=nano_to_usd(c.cost_nano),
            cost_nano=c.cost_nano,
        )
        for (provider, model), c in sorted(
            sums.items(), key=lambda item: (-item[1].cost_nano, item[0])
        )
    ]
    subtotal = sum(line.cost_nano for line in lines)
    markup = int((Decimal(subtotal) * markup_pct / 100).to_integral_value(ROUND_HALF_EVEN))
    return Invoice(
        tenant=tenant,
        month=month,
        timezone=timezone,
        since=start,
        until=end,
        closed=now >= end,
        lines=lines,
        subtotal_usd=nano_to_usd(subtotal),
        subtotal_nano=subtotal,
        markup_pct=float(markup_pct),
        markup_usd=nano_to_usd(markup),
        markup_nano=markup,
        total_usd=nano_to_usd(subtotal + markup),
        total_nano=subtotal + markup,
        unpriced_requests=sum(c.unpriced for c in sums.values()),
    )


CSV_COLUMNS = [
    "line", "provider", "model", "requests", "input_tokens", "cached_input_tokens",
    "output_tokens", "amount_usd", "amount_nano",
]  # fmt: skip


def invoice_csv(invoice: Invoice) -> str:
    """The invoice as one CSV table: ``item`` rows, then ``subtotal``, ``markup`` (its
    percent in the model column), ``total`` and ``unpriced_requests``; amounts exact."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in invoice.lines:
        writer.writerow(
            ["item", line.provider, line.model, line.requests, line.input_tokens,
             line.cached_input_tokens, line.output_tokens, usd_text(line.cost_nano),
             line.cost_nano]
        )  # fmt: skip
    blank = ["", "", "", ""]
    writer.writerow(
        ["subtotal", "", "", *blank, usd_text(invoice.subtotal_nano), invoice.subtotal_nano]
    )
    percent = f"{Decimal(str(invoice.markup_pct)).normalize():f}%"
    writer.writerow(
        ["markup", "", percent, *blank, usd_text(invoice.markup_nano), invoice.markup_nano]
    )
    writer.writerow(["total", "", "", *blank, usd_text(invoice.total_nano), invoice.total_nano])
    writer.writerow(["unpriced_requests", "", "", invoice.unpriced_requests, "", "", "", "", ""])
    return out.getvalue()


def invoice_pdf(invoice: Invoice) -> bytes:
    """The invoice printed: the same exact amounts as the JSON (9 decimals)."""
    from huntaze_cli.reports.pdf import PdfReport

    def usd(nano: int) -> str:
        return format_usd(nano, 9)

    doc = PdfReport(
        f"Invoice {invoice.tenant} {invoice.month}",
        subtitle=f"Tenant {invoice.tenant}, month {invoice.month} ({invoice.timezone}): "
        f"{invoice.since.isoformat()} to {invoice.until.isoformat()}"
        + ("" if invoice.closed else " (month not closed yet)"),
    )
    doc.heading("Usage")
    doc.table(
        ["provider", "model", "requests", "input", "cached", "output", "amount"],
        [_pdf_row(line, usd(line.cost_nano)) for line in invoice.lines],
        widths=[1.2, 1.6, 1, 1.1, 1, 1, 1.6],
        right=[2, 3, 4, 5, 6],
    )
    doc.heading("Amount due")
    percent = f"{Decimal(str(invoice.markup_pct)).normalize():f}"
    doc.table(
        ["", "amount"],
        [
            ["Subtotal", usd(invoice.subtotal_nano)],
            [f"Markup {percent}%", usd(invoice.markup_nano)],
        ],
        widths=[2, 1],
        right=[1],
        footer=["Total", usd(invoice.total_nano)],
    )
    if invoice.unpriced_requests:
        doc.text(
            f"{invoice.unpriced_requests:,} requests had no known price and are not in "
            "these amounts."
        )
    return doc.bytes()


def _pdf_row(line: InvoiceLine, amount: str) -> list[str]:
    counts = (line.requests, line.input_tokens, line.cached_input_tokens, line.output_tokens)
    return [line.provider, line.model, *(f"{n:,}" for n in counts), amount]


def render_invoice(invoice: Invoice, fmt: str) -> bytes:
    """``invoice`` in ``fmt``: the JSON document, the CSV table or the PDF."""
    if fmt == "csv":
        return invoice_csv(invoice).encode()
    if fmt == "pdf":
        return invoice_pdf(invoice)
    from huntaze_cli.jsondoc import dump_json

    return dump_json(invoice)
