"""`huntaze costs invoice`: a tenant's monthly invoice (JSON, CSV, PDF), or every tenant's
for cron."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, print_json, table
from huntaze_cli.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.costs.invoice import Invoice


def invoice_cmd(
    ctx: typer.Context,
    month: Annotated[
        str,
        typer.Option("--month", help="YYYY-MM, or last (the month before this one)."),
    ],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="The tenant ([tenants.<name>]).")
    ] = None,
    all_tenants: Annotated[
        bool,
        typer.Option("--all-tenants", help="Every configured tenant: one file per format."),
    ] = False,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="json|csv|pdf. One tenant: one format (default json). --all-tenants: "
            "repeatable (default all three).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="One tenant: the file to write (stdout otherwise; a PDF needs it). "
            "--all-tenants: the directory (default: [invoices] s3_bucket when set, else "
            "<data dir>/invoices/<month>).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout.")
    ] = False,
) -> None:
    """A tenant's invoice for a month: cost per provider and model, subtotal, the
    tenant's markup_pct, total and unpriced requests, exact to the nano-dollar.

    The month is counted in [thresholds] timezone. --all-tenants writes every tenant's
    invoice, <tenant>-<YYYY-MM>.<format>, for a monthly cron job: into -o DIR, else to
    S3 when [invoices] s3_bucket is set (<s3_prefix><YYYY-MM>/...), else under the data
    dir; it writes and does not announce (serve's own billing run does both, once).

    Example: huntaze costs invoice --tenant agency_a --month last --format pdf -o a.pdf
    """
    from huntaze_cli.services import invoices

    services = state(ctx)
    if all_tenants == (tenant is not None):
        raise UsageError("name one --tenant, or --all-tenants", field="tenant")
    if all_tenants:
        from datetime import UTC, datetime

        from huntaze_cli.costs.invoice import INVOICE_FORMATS, parse_month

        config = services.config()
        chosen = parse_month(month, now=datetime.now(UTC), tz=config.thresholds.tz)
        written = invoices.write_invoices(
            services, month=chosen, formats=formats or list(INVOICE_FORMATS), directory=output
        )
        if as_json:
            print_json({"month": chosen, "files": written})
        else:
            for path in written:
                sys.stderr.write(f"wrote {path}\n")
        return
    if formats and len(formats) > 1:
        raise UsageError("<format>: one format for one tenant", field="format")
    fmt = invoices.invoice_format(formats[0] if formats else "json")
    if fmt == "pdf" and output is None:
        raise UsageError("a PDF needs -o FILE", field="output")
    bill = invoices.invoice(services, tenant=tenant, month=month)
    if output is not None:
        from huntaze_cli.costs.invoice import render_invoice

        invoices.write_file(output, render_invoice(bill, fmt))
        sys.stderr.write(f"wrote {output}\n")
        if as_json:
            print_json(bill)
        return
    if fmt == "csv":
        from huntaze_cli.costs.invoice import invoice_csv

        sys.stdout.write(invoice_csv(bill))
        return
    emit(bill, as_json=as_json, render=lambda console: _render(console, bill))


def _render(console: Console, bill: Invoice) -> None:
    from huntaze_cli.money import format_usd

    rows = [
        [line.provider, line.model, f"{line.requests:,}", format_usd(line.cost_nano)]
        for line in bill.lines
    ]
    title = f"Invoice {bill.tenant} {bill.month} ({bill.timezone})"
    console.print(
        table(
            title,
            ["provider", "model", "requests", "amount"],
            rows,
            right=["requests", "amount"],
            footer=["subtotal", "", "", format_usd(bill.subtotal_nano)],
        )
    )
    console.print(f"markup {bill.markup_pct:g}%: {format_usd(bill.markup_nano)}")
    console.print(f"total: {format_usd(bill.total_nano)}")
    if bill.unpriced_requests:
        console.print(f"{bill.unpriced_requests:,} unpriced requests are not in these amounts")


def register(costs_app: typer.Typer) -> None:
    costs_app.command("invoice")(invoice_cmd)
