"""`huntaze alerts list|ack|test`: the in-app alert history and a check of every channel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, table, warn

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.models import AlertList, AlertTestReport

app = typer.Typer(
    help="Alert history (in-app), marking alerts read, and a test of each channel.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            help="From: YYYY-MM-DD or ISO-8601 time (default: 7 days ago).", show_default=False
        ),
    ] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only rules scoped to this tenant.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The alert history, newest first, with each channel's state.

    Example: huntaze alerts list --since 2026-12-01 --rule agency_a-daily --json
    """
    from huntaze_cli.services.alerts import history

    report = history(state(ctx), since=since, rule=rule, tenant=tenant, limit=limit)
    emit(report, as_json=as_json, render=lambda console: _render_list(console, report))


@app.command("ack")
def ack_cmd(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(help="The alert id `alerts list` shows.")],
    as_json: JsonFlag = False,
) -> None:
    """Mark an alert read (in-app); exit 1 when there is no such alert.

    Example: huntaze alerts ack alr_3f9c2d1e0a7b6c5d4e3f
    """
    from huntaze_cli.services.alerts import ack

    report = ack(state(ctx), alert_id)
    emit(report, as_json=as_json, render=lambda c: c.print(f"acknowledged {alert_id}"))


@app.command("test")
def test_cmd(
    ctx: typer.Context,
    channel: Annotated[
        str | None, typer.Option(help="Only this channel (default: every configured one).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Send a clearly marked test alert on each configured channel.

    Exit 0 when every channel sent it, 1 naming each channel that failed and why. The
    first thing to run after configuring [alerts].

    Example: huntaze alerts test --channel slack
    """
    from huntaze_cli.services.alerts import send_test

    report = send_test(state(ctx), channel)
    emit(report, as_json=as_json, render=lambda console: _render_test(console, report))
    for name, result in report.channels.items():
        if result.error:
            warn(f"{name}: {result.error}")
    if not report.ok:
        raise typer.Exit(1)


def _render_list(console: Console, report: AlertList) -> None:
    if not report.alerts:
        console.print(f"no alerts since {report.since:%Y-%m-%d %H:%M} UTC")
        return
    rows = [
        [
            a.created_at.strftime("%Y-%m-%d %H:%M"),
            a.alert_id,
            a.rule,
            ", ".join(f"{k}={v}" for k, v in a.scope.items()) or "all",
            a.period_label,
            f"{a.level_pct}%",
            f"${a.observed_usd:,.2f} / ${a.limit_usd:,.2f}",
            ", ".join(f"{name}:{state.status}" for name, state in a.channels.items()) or "-",
            "read" if a.acked_at else "",
        ]
        for a in report.alerts
    ]
    console.print(
        table(
            f"Alerts since {report.since:%Y-%m-%d %H:%M} UTC",
            ["created", "id", "rule", "scope", "period", "level", "observed/limit", "channels", ""],
            rows,
        )
    )


def _render_test(console: Console, report: AlertTestReport) -> None:
    console.print(
        table(
            "Test alert",
            ["channel", "status", "error"],
            [[name, r.status, r.error or "-"] for name, r in report.channels.items()],
        )
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="alerts")
