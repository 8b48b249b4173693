"""Optimization commands: `costs optimize`, `costs roi`, `experiments list|report` and
`campaigns outcomes import`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, table

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.costs.experiments import ExperimentList, ExperimentReport
    from huntaze_cli.costs.recommendations import OptimizeReport
    from huntaze_cli.costs.roi import RoiReport

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


def roi_cmd(
    ctx: typer.Context,
    campaign: Annotated[
        str | None, typer.Option(help="Only this campaign id.", show_default=False)
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Per campaign (and experiment arm): cost, revenue, conversions, cost per conversion
    and ROI %, from the ledger and imported outcomes.

    Lists the campaigns that have outcomes (or the one named by --campaign).

    Example: huntaze costs roi --campaign cmp_1a2b3c --json | jq .campaigns[0].roi_pct
    """
    from huntaze_cli.services.optimization import roi

    report = roi(state(ctx), campaign=campaign)
    emit(report, as_json=as_json, render=lambda console: _render_roi(console, report))


def _render_roi(console: Console, report: RoiReport) -> None:
    def money(value: float | None) -> str:
        return "-" if value is None else f"${value:,.6f}"

    columns = ["campaign", "arm", "messages", "cost", "revenue", "conversions",
               "per conversion", "ROI %"]  # fmt: skip
    rows = []
    for c in report.campaigns:
        for label, f in [(c.name or "", c), *((f"{a.experiment}/{a.arm}", a) for a in c.arms)]:
            rows.append(
                [
                    c.campaign_id if f is c else "",
                    label if f is not c else (c.name or ""),
                    f"{f.messages:,}",
                    money(f.cost_usd),
                    money(f.revenue_usd),
                    "-" if f.conversions is None else f"{f.conversions:,}",
                    money(f.cost_per_conversion_usd),
                    "-" if f.roi_pct is None else f"{f.roi_pct:,.2f}",
                ]
            )
    if not rows:
        console.print(
            "no campaign has outcomes yet; import them with "
            "`huntaze campaigns outcomes import FILE`"
        )
        return
    console.print(table("Return on investment", columns, rows, right=columns[2:]))


campaigns_app = typer.Typer(
    help="Campaign data beside the messages: outcomes.", no_args_is_help=True
)
outcomes_app = typer.Typer(
    help="Revenue and conversions per fan, for ROI and experiment reports.", no_args_is_help=True
)
campaigns_app.add_typer(outcomes_app, name="outcomes")


@outcomes_app.command("import")
def outcomes_import_cmd(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            help="CSV (with a header) or JSONL of campaign_id, recipient_id, revenue_usd, "
            "converted; - for stdin."
        ),
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="csv or jsonl (default: from the file name, else jsonl).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import outcomes idempotently: one per campaign and recipient, the latest wins.

    The whole file is checked first: a bad row exits 2 naming its line, and nothing
    is stored.

    Example: huntaze campaigns outcomes import december.csv --json
    """
    import sys
    from pathlib import Path

    from huntaze_cli.errors import InputError
    from huntaze_cli.services.optimization import import_outcomes
    from huntaze_cli.textfile import lines

    chosen = fmt or ("csv" if file.lower().endswith(".csv") else "jsonl")
    if file == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        raw = stdin if stdin is not None else (line.encode() for line in sys.stdin)
        result = import_outcomes(state(ctx), lines(raw, "<stdin>"), fmt=chosen, source="stdin")
    else:
        path = Path(file)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror}") from None
        with fh:
            text = lines(fh, str(path))
            result = import_outcomes(state(ctx), text, fmt=chosen, source=str(path))
    emit(
        result,
        as_json=as_json,
        render=lambda console: console.print(
            f"read {result.read:,}: {result.inserted:,} new, {result.updated:,} changed, "
            f"{result.unchanged:,} already there"
        ),
    )


def register(app: typer.Typer, costs_app: typer.Typer) -> None:
    costs_app.command("optimize")(optimize_cmd)
    costs_app.command("roi")(roi_cmd)
    app.add_typer(experiments_app, name="experiments")
    app.add_typer(campaigns_app, name="campaigns")
