"""`huntaze check-thresholds`: evaluate spend thresholds for cron and alert once per period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, styled, table, warn

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.models import ThresholdReport


def check_thresholds(
    ctx: typer.Context,
    no_alert: Annotated[
        bool, typer.Option("--no-alert", help="Only evaluate: send and record no alert.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout.")
    ] = False,
) -> None:
    """Evaluate the daily and monthly spend thresholds; alert once per threshold per period.

    Exit 0 within thresholds, 3 when a threshold is breached, 1 when an alert could not
    be sent (the next run retries it). Days and months are counted in
    [thresholds] timezone. With [metrics] cloudwatch = true, also publishes daily and
    month-to-date cost per provider to CloudWatch.

    Example (crontab): */10 * * * * huntaze check-thresholds --json >> /var/log/huntaze.log
    """
    from huntaze_cli.cli.exit_codes import for_thresholds
    from huntaze_cli.services.thresholds import check

    result = check(state(ctx), send_alerts=not no_alert)
    if result.cloudwatch_error is not None:
        warn(f"cloudwatch: {result.cloudwatch_error}")
    report = result.report
    emit(report, as_json=as_json, render=lambda console: _render(console, report))
    for name, error in result.alert_errors:
        warn(f"{name} alert not sent: {error}")
    raise typer.Exit(for_thresholds(result))


def _render(console: Console, report: ThresholdReport) -> None:
    rows = [
        [
            r.name,
            r.period,
            f"${r.limit_usd:,.2f}",
            f"${r.spent_usd:,.6f}",
            f"{r.used_pct:.2f}%",
            "BREACHED" if r.breached else "ok",
            ", ".join(r.alert_channels) if r.alerted else "-",
        ]
        for r in report.thresholds
    ]
    console.print(
        table(
            f"Thresholds ({report.timezone})",
            ["threshold", "period", "limit", "spent", "used", "state", "alerted via"],
            rows,
            right=["limit", "spent", "used"],
        )
    )
    if report.unpriced_requests:
        console.print(
            styled(
                (
                    f"{report.unpriced_requests:,} requests this month had no known price and "
                    "are not in the spend above; add [pricing.overrides] for their models.",
                    "yellow",
                )
            )
        )


def register(app: typer.Typer) -> None:
    app.command("check-thresholds")(check_thresholds)
