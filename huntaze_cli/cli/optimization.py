"""`huntaze costs optimize`, `huntaze experiments list|report`: optimization commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, table

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.costs.experiments import ExperimentList, ExperimentReport
    from huntaze_cli.costs.optimize import OptimizeReport

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def optimize_cmd(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="Window: the last N UTC days including today.")] = 30,
    as_json: JsonFlag = False,
) -> None:
    """Recommendations from the ledger, each with its monthly saving and evidence.

    Kinds: provider_price, model_downgrade, max_tokens, retry_waste, prompt_caching,
    strategy. Savings are the window's, projected to 30 days; each one names the config
    or campaign change that applies it. Reads rollups only.

    Example: huntaze costs optimize --days 14 --json | jq '.recommendations[0].action'
    """
    from huntaze_cli.services.optimization import optimize_report

    report = optimize_report(state(ctx), days=days)
    emit(report, as_json=as_json, render=lambda console: _render(console, report))


def _render(console: Console, report: OptimizeReport) -> None:
    title = (
        f"Recommendations, last {report.window_days} days "
        f"({report.days_with_traffic} with traffic, ${report.spend_usd:,.2f} spent)"
    )
    if not report.recommendations:
        console.print(f"{title}: none; nothing in this window is worth changing")
        return
    console.print(
        table(
            title,
            ["kind", "saving / month", "confidence", "what"],
            [
                [r.kind, f"${r.saving_usd_month:,.2f}", r.confidence, r.title]
                for r in report.recommendations
            ],
            right=["saving / month"],
        )
    )
    for r in report.recommendations:
        console.print(f"\n[bold]{r.id}[/bold]: {r.action.summary}")
        if r.action.toml:
            console.print(r.action.toml, markup=False)
        if r.action.experiment_toml:
            console.print(r.action.experiment_toml, markup=False)


experiments_app = typer.Typer(
    help="A/B experiments of routing strategies, models, providers and max_tokens.",
    no_args_is_help=True,
)


@experiments_app.command("list")
def experiments_list_cmd(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every configured experiment: arms, split, scope and baseline.

    Example: huntaze experiments list --json | jq '.experiments[].name'
    """
    from huntaze_cli.services.optimization import experiment_list

    result = experiment_list(state(ctx))
    emit(result, as_json=as_json, render=lambda console: _render_list(console, result))


@experiments_app.command("report")
def experiments_report_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The experiment's name in [experiments.<name>].")],
    days: Annotated[int, typer.Option(help="Window: the last N UTC days including today.")] = 30,
    as_json: JsonFlag = False,
) -> None:
    """Per arm messages, cost per message, latency, failures and fallbacks, and each
    difference to the baseline arm with its 95 % confidence interval.

    With too few messages it says how many more each arm needs. Reads rollups only.

    Example: huntaze experiments report gpt4o-vs-mini --json | jq .comparison
    """
    from huntaze_cli.services.optimization import experiment_report

    report = experiment_report(state(ctx), name, days=days)
    emit(report, as_json=as_json, render=lambda console: _render_report(console, report))


def _render_list(console: Console, result: ExperimentList) -> None:
    if not result.experiments:
        console.print("no experiments configured; add [experiments.<name>] to the config")
        return
    rows = [
        [
            e.name,
            "yes" if e.enabled else "no",
            ", ".join(f"{arm} {share:g}%" for arm, share in e.split.items()),
            ", ".join(f"{k}={v}" for k, v in e.scope.items()) or "all",
            e.baseline,
        ]
        for e in result.experiments
    ]
    console.print(table("Experiments", ["name", "enabled", "split", "scope", "baseline"], rows))


def _render_report(console: Console, report: ExperimentReport) -> None:
    def maybe(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    columns = ["arm", "messages", "cost", "per message", "p50 ms", "p95 ms", "fail %",
               "fallback %", "needs"]  # fmt: skip
    rows = [
        [
            a.arm,
            f"{a.messages:,}",
            f"${a.cost_usd:,.6f}",
            maybe(a.cost_per_message_usd, ".6f"),
            maybe(a.latency_p50_ms, ".1f"),
            maybe(a.latency_p95_ms, ".1f"),
            f"{a.failure_pct:.2f}",
            f"{a.fallback_pct:.2f}",
            f"{a.needs_more_messages:,}" if a.needs_more_messages else "",
        ]
        for a in report.arms
    ]
    console.print(table(f"Experiment {report.name}", columns, rows, right=columns[1:]))
    if report.comparison:
        console.print(
            table(
                f"Against {report.baseline} (95 % confidence intervals)",
                ["metric", "arm", "difference", "interval", "significant"],
                [
                    [
                        c.metric,
                        c.arm,
                        f"{c.difference:+.6g}",
                        f"{maybe(c.ci_low, '+.6g')} .. {maybe(c.ci_high, '+.6g')}",
                        "yes" if c.significant else "no",
                    ]
                    for c in report.comparison
                ],
            )
        )
    console.print(report.verdict)


def register(app: typer.Typer, costs_app: typer.Typer) -> None:
    costs_app.command("optimize")(optimize_cmd)
    app.add_typer(experiments_app, name="experiments")
