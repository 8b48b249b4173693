"""`huntaze budgets list`: every budget with what it has spent and holds for calls in flight."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, table

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.budgets.report import BudgetList

app = typer.Typer(
    help="Budgets: hard spending limits every provider call reserves against.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@app.command("list")
def list_cmd(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every budget in its current period: spent, reserved (calls in flight), remaining
    and its state (ok, soft past soft_pct, hard when nothing is left).

    Example: huntaze budgets list --json
    """
    from huntaze_cli.services.budgets import list_budgets

    report = list_budgets(state(ctx))
    emit(report, as_json=as_json, render=lambda console: _render(console, report))


def _render(console: Console, report: BudgetList) -> None:
    if not report.budgets:
        console.print("no budgets: add [[budgets.rules]] to the config (`huntaze config path`)")
        return
    console.print(
        table(
            "Budgets",
            ["budget", "scope", "period", "limit", "spent", "reserved", "remaining", "state"],
            [
                [
                    b.name,
                    ",".join(f"{k}={v}" for k, v in b.scope.items()) or "all",
                    b.period_label,
                    f"${b.limit_usd:,.6f}",
                    f"${b.spent_usd:,.6f}",
                    f"${b.reserved_usd:,.6f}",
                    f"${b.remaining_usd:,.6f}",
                    b.state,
                ]
                for b in report.budgets
            ],
            right=["limit", "spent", "reserved", "remaining"],
            whole=["budget", "state"],
        )
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="budgets")
