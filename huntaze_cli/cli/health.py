"""`huntaze health`: config, ledger and every provider, for people, scripts and monitors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, styled, table

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.models import HealthReport


def health(
    ctx: typer.Context,
    deep: Annotated[
        bool, typer.Option("--deep", help="Also send each provider a one-token live probe.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds each live probe may take.")
    ] = 5.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout.")
    ] = False,
) -> None:
    """Check config, ledger and each provider (circuit state, last error).

    Exit 0 healthy, 3 degraded (a provider is down but another serves), 1 unhealthy
    (ledger unreachable or no provider can serve). Circuit state is what the running
    daemon or worker last wrote.

    Example: huntaze health --deep --json | jq '.providers | map_values(.status)'
    """
    from huntaze_cli.cli.exit_codes import for_health
    from huntaze_cli.services.health import check_health

    st = state(ctx)
    report = check_health(st.config(), st.ledger, deep=deep, probe_timeout_s=timeout)
    emit(report, as_json=as_json, render=lambda console: _render(console, report))
    raise typer.Exit(for_health(report.status))


def _render(console: Console, report: HealthReport) -> None:
    colour = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}[report.status]
    console.print(styled((report.status, f"bold {colour}")))
    console.print(
        table(
            None,
            ["check", "status", "detail"],
            [[name, c.status, c.detail] for name, c in report.checks.items()],
        )
    )
    console.print(
        table(
            "Providers",
            ["provider", "kind", "status", "circuit", "detail", "last error"],
            [
                [
                    name,
                    p.kind,
                    p.status,
                    p.circuit or "-",
                    p.detail + (f" ({p.probe_ms} ms)" if p.probe_ms is not None else ""),
                    f"{p.last_error_kind}: {p.last_error}" if p.last_error else "-",
                ]
                for name, p in report.providers.items()
            ],
        )
    )


def register(app: typer.Typer) -> None:
    app.command("health")(health)
