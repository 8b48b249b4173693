"""`huntaze costs compare` and `huntaze costs report`: period comparison and the finance
report (JSON, CSV, PDF)."""

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

    from huntaze_cli.costs.compare import CompareReport
    from huntaze_cli.costs.finance import FinanceReport

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
When = "YYYY-MM-DD (UTC day) or ISO-8601 time with offset"


def compare_cmd(
    ctx: typer.Context,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help="Group by provider|model|response_model|account|campaign|tenant|day; repeat.",
            show_default="provider",
        ),
    ] = None,
    a_since: Annotated[
        str | None,
        typer.Option("--a-since", help=f"Period a: {When}. Default: this UTC month."),
    ] = None,
    a_until: Annotated[
        str | None, typer.Option("--a-until", help="End of a (a date is inclusive).")
    ] = None,
    b_since: Annotated[
        str | None,
        typer.Option(
            "--b-since",
            help="Period b. Default: the period of a's length before a (last month without a).",
        ),
    ] = None,
    b_until: Annotated[
        str | None, typer.Option("--b-until", help="End of b (a date is inclusive).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Cost per group in period a against period b, with the change.

    delta = a - b; delta_pct is the change in percent of b (null when b cost nothing).
    Ranges are whole UTC days; reads daily rollups only.

    Example: huntaze costs compare --by provider --a-since 2026-11-01 --a-until 2026-11-30
    """
    from huntaze_cli.services import costs

    report = costs.compare(
        state(ctx), by=by, a_since=a_since, a_until=a_until, b_since=b_since, b_until=b_until
    )
    emit(report, as_json=as_json, render=lambda console: _render_compare(console, report))


def _signed(nano: int) -> str:
    from huntaze_cli.money import format_usd

    return ("-" if nano < 0 else "+") + format_usd(abs(nano))


def _render_compare(console: Console, report: CompareReport) -> None:
    from huntaze_cli.money import format_usd

    def days(since: object, until: object) -> str:
        return f"{since:%Y-%m-%d}..{until:%Y-%m-%d}"

    keys = report.group_by
    pct = "{:+.2f}%".format
    rows = [
        [
            *[(row.model_extra or {}).get(k) for k in keys],
            format_usd(row.a_cost_nano),
            format_usd(row.b_cost_nano),
            _signed(row.delta_nano),
            "n/a" if row.delta_pct is None else pct(row.delta_pct),
        ]
        for row in report.rows
    ]
    total = report.total
    footer = [
        "total",
        *[""] * (len(keys) - 1),
        format_usd(total.a_cost_nano),
        format_usd(total.b_cost_nano),
        _signed(total.delta_nano),
        "n/a" if total.delta_pct is None else pct(total.delta_pct),
    ]
    title = (
        f"a {days(report.a_since, report.a_until)} against b "
        f"{days(report.b_since, report.b_until)} (UTC, end exclusive)"
    )
    figures = ["a", "b", "change", "change %"]
    console.print(table(title, [*keys, *figures], rows, right=figures, footer=footer))


def _write(path: Path, data: bytes, option: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"{option}: cannot write {path}: {exc.strerror}") from None
    sys.stderr.write(f"wrote {path}\n")


def report_cmd(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help=f"Start: {When}. Default: 30 days ago.", show_default=False)
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End: a date is inclusive. Default: today.")
    ] = None,
    pdf: Annotated[
        Path | None,
        typer.Option("--pdf", help="Write the report as PDF to this file.", dir_okay=False),
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option("--csv", help="Write the report as CSV to this file.", dir_okay=False),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """A finance report: total, spend per day, breakdowns by provider, model, tenant and
    campaign, and the comparison with the previous period of equal length.

    The CSV holds exact decimals; the PDF prints the same figures as the JSON.

    Example: huntaze costs report --since 2026-11-01 --until 2026-11-30 --pdf november.pdf
    """
    from huntaze_cli.services import costs

    report = costs.finance_report(state(ctx), since=since, until=until)
    if pdf is not None:
        _write(pdf, costs.render_report(report, "pdf"), "--pdf")
    if csv is not None:
        _write(csv, costs.render_report(report, "csv"), "--csv")
    if as_json:
        print_json(report)
    elif pdf is None and csv is None:
        emit(report, as_json=False, render=lambda console: _render_report(console, report))


def _render_report(console: Console, report: FinanceReport) -> None:
    from huntaze_cli.money import format_usd

    total = report.total
    prev = report.comparison.total
    change = "n/a" if prev.delta_pct is None else f"{prev.delta_pct:+.2f}%"
    console.print(
        f"Costs {report.since:%Y-%m-%d}..{report.until:%Y-%m-%d} (UTC, end exclusive): "
        f"{format_usd(total.cost_nano)} over {total.requests:,} requests; previous "
        f"{report.days} days {format_usd(prev.b_cost_nano)} ({change})"
    )
    for section, sub in report.breakdowns.items():
        console.print(
            table(
                f"by {section}",
                [section, "requests", "cost", "share"],
                [
                    [
                        (row.model_extra or {}).get(section),
                        f"{row.requests:,}",
                        format_usd(row.cost_nano),
                        f"{row.share_pct:.2f}%",
                    ]
                    for row in sub.rows
                ],
                right=["requests", "cost", "share"],
            )
        )


def register(costs_app: typer.Typer) -> None:
    costs_app.command("compare")(compare_cmd)
    costs_app.command("report")(report_cmd)
