"""`huntaze costs breakdown|stats|forecast|anomalies|export|import`: reports over the ledger."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, styled, table
from huntaze_cli.errors import HuntazeError, InputError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.costs.anomaly_report import AnomalyReport
    from huntaze_cli.costs.forecast_report import ForecastFigures, ForecastReport
    from huntaze_cli.models import BreakdownReport, ImportReport, StatsReport

app = typer.Typer(
    help="Cost reports, export and import over the exact cost ledger.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TenantFlag = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        help="Only this tenant's costs ([tenants.<name>]), as its API token sees them.",
        show_default=False,
    ),
]
Since = Annotated[
    str | None,
    typer.Option(
        help="Start: YYYY-MM-DD (UTC day) or ISO-8601 time with offset.", show_default=False
    ),
]
Until = Annotated[
    str | None,
    typer.Option(
        help="End: a date is inclusive, a time exclusive. Default: today.", show_default=False
    ),
]


@app.command("breakdown")
def breakdown_cmd(
    ctx: typer.Context,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help=(
                "Group by provider|model|response_model|account|campaign|tenant|day; "
                "repeat to nest."
            ),
            show_default="provider",
        ),
    ] = None,
    since: Since = None,
    until: Until = None,
    days: Annotated[
        int | None,
        typer.Option(help="Last N UTC days including today (default 30).", show_default=False),
    ] = None,
    as_json: JsonFlag = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the rows as CSV.")] = False,
) -> None:
    """Cost table grouped by provider, model, account, campaign, tenant or day.

    response_model groups by the model the provider said served each call (the mapped
    model is `model`). Rows and the total are rounded together, so the rows add up to
    the total; cost_nano is exact. Reads daily rollups only, so it stays fast on
    millions of events. Days are UTC.

    Example: huntaze costs breakdown --days 7 --by provider --by model
    """
    from huntaze_cli.services import costs

    if as_json and as_csv:
        raise UsageError("--json and --csv cannot be used together")
    report = costs.breakdown(state(ctx), by=by, since=since, until=until, days=days)
    if as_csv:
        _breakdown_csv(report)
        return
    emit(report, as_json=as_json, render=lambda console: _render_breakdown(console, report))


_METRICS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_nano",
    "share_pct",
    "unpriced_requests",
)


def _breakdown_csv(report: BreakdownReport) -> None:
    import csv

    from huntaze_cli.costs.transfer import csv_cell

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([*report.group_by, *_METRICS])
    for row in report.rows:
        data = row.model_dump()
        writer.writerow(
            [
                *("" if data[k] is None else csv_cell(data[k]) for k in report.group_by),
                *(f"{data[m]:.6f}" if m == "cost_usd" else data[m] for m in _METRICS),
            ]
        )


def _render_breakdown(console: Console, report: BreakdownReport) -> None:
    from huntaze_cli.money import format_usd, usd_to_nano

    def usd(value: float) -> str:
        return format_usd(usd_to_nano(repr(value)))

    columns = [*report.group_by, "requests", "errors", "in tokens", "out tokens", "cost", "share"]
    rows = []
    for row in report.rows:
        data = row.model_dump()
        rows.append(
            [data[k] for k in report.group_by]
            + [
                f"{row.requests:,}",
                f"{row.errors:,}",
                f"{row.input_tokens:,}",
                f"{row.output_tokens:,}",
                usd(row.cost_usd),
                f"{row.share_pct:.2f}%",
            ]
        )
    total = report.total
    footer = [
        "total",
        *[""] * (len(report.group_by) - 1),
        f"{total.requests:,}",
        f"{total.errors:,}",
        f"{total.input_tokens:,}",
        f"{total.output_tokens:,}",
        usd(total.cost_usd),
        "100.00%" if report.rows else "",
    ]
    until = report.until.date().isoformat()
    title = f"Costs {report.since.date().isoformat()} .. {until} (UTC, end exclusive)"
    right = columns[len(report.group_by) :]
    console.print(table(title, columns, rows, right=right, footer=footer))
    if report.unpriced_requests:
        console.print(
            styled(
                (
                    f"{report.unpriced_requests:,} requests had no known price and are "
                    "counted at $0; add [pricing.overrides] for their models.",
                    "yellow",
                )
            )
        )
    if not report.rows:
        console.print("no cost events in this range")


@app.command("stats")
def stats_cmd(ctx: typer.Context, tenant: TenantFlag = None, as_json: JsonFlag = False) -> None:
    """Real-time figures: last hour, today, yesterday, month to date, per provider.

    Days and months are counted in [thresholds] timezone; reads rollups only. With
    --tenant, every figure (latency percentiles too) is that tenant's own, and today and
    the month are compared with its lowest day and month budgets (its quota), not with
    the global [thresholds].

    Example: huntaze costs stats --json | jq .thresholds.daily.used_pct
    """
    from huntaze_cli.services import costs

    report = costs.stats(state(ctx), tenant=tenant)
    emit(report, as_json=as_json, render=lambda console: _render_stats(console, report))


def _render_stats(console: Console, report: StatsReport) -> None:
    def money(value: float) -> str:
        return f"${value:,.6f}"

    periods = [
        ("last hour", report.last_hour),
        ("today", report.today),
        ("yesterday", report.yesterday),
        ("month to date", report.month_to_date),
    ]
    console.print(
        table(
            f"Spend ({report.timezone})",
            ["period", "requests", "errors", "cost"],
            [[name, f"{p.requests:,}", f"{p.errors:,}", money(p.cost_usd)] for name, p in periods],
            right=["requests", "errors", "cost"],
        )
    )
    console.print(
        table(
            "Providers today",
            ["provider", "requests", "errors", "cost", "share", "p50 ms", "p95 ms"],
            [
                [
                    name,
                    f"{p.requests:,}",
                    f"{p.errors:,}",
                    money(p.cost_usd),
                    f"{p.share_pct:.2f}%",
                    p.latency_p50_ms,
                    p.latency_p95_ms,
                ]
                for name, p in report.providers.items()
            ],
            right=["requests", "errors", "cost", "share", "p50 ms", "p95 ms"],
        )
    )
    console.print(
        table(
            "Thresholds",
            ["threshold", "limit", "spent", "used"],
            [
                [
                    f"{name} ({t.name})" if t.name else f"{name} (none)",
                    money(t.limit_usd),
                    money(t.spent_usd),
                    f"{t.used_pct:.2f}%",
                ]
                for name, t in report.thresholds.items()
            ],
            right=["limit", "spent", "used"],
        )
    )
    if report.unpriced_requests:
        console.print(
            styled((f"{report.unpriced_requests:,} unpriced requests this month", "yellow"))
        )
    if report.model_mismatches:
        console.print(
            styled(
                (
                    f"{report.model_mismatches:,} requests this month were served by another "
                    "model than the one mapped; see `costs breakdown --by model --by "
                    "response_model` and check [providers.<name>] deployments",
                    "yellow",
                )
            )
        )


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (one event per line) or csv.")
    ] = "jsonl",
    since: Since = None,
    until: Until = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file instead of stdout.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write every raw cost event (kept retention_days) as JSONL or CSV.

    Example: huntaze costs export --since 2026-11-01 > november.jsonl
    """
    from huntaze_cli.services import costs

    request = costs.export_request(fmt, since=since, until=until)
    st = state(ctx)
    if output is None:
        count = costs.export(st, sys.stdout, request)
    else:
        from huntaze_cli.storage.files import open_private

        try:
            fh = open_private(output)
        except OSError as exc:
            raise UsageError(f"--output: cannot write {output}: {exc.strerror}") from None
        try:
            with fh:
                count = costs.export(st, fh, request)
        except OSError as exc:
            raise HuntazeError(f"--output: writing {output} failed: {exc.strerror}") from None
    sys.stderr.write(f"exported {count:,} events\n")


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="JSONL or CSV file of cost events; - for stdin.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="jsonl or csv (default: from the file name, else jsonl).",
            show_default=False,
        ),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Skip invalid lines (named on stderr) instead of stopping."
        ),
    ] = False,
    trust_cost: Annotated[
        bool,
        typer.Option(
            "--trust-cost",
            help="Keep each given cost_usd even when it differs from the cost of its usage.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import cost events idempotently: an attempt_id already stored changes nothing.

    Every cost is recomputed from the event's usage with the same prices and
    [pricing.overrides] as generation; a differing cost_usd is replaced and reported
    (repriced), unless --trust-cost. A missing cost is computed, or the event is stored
    unpriced when its model has no known price. The whole file is checked first: an
    invalid line is exit 2 naming it and nothing is stored, unless --skip-bad. Events
    older than [ledger] retention_days are refused.

    Example: huntaze costs export | huntaze --config dynamo.toml costs import -
    """
    from huntaze_cli.services import costs
    from huntaze_cli.textfile import lines

    chosen = fmt or ("csv" if file.lower().endswith(".csv") else "jsonl")
    costs.transfer_format(chosen)  # a bad format before reading anything
    st = state(ctx)

    def on_bad(line: int, reason: str) -> None:
        sys.stderr.write(f"skipped line {line}: {reason}\n")

    if file == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        raw = stdin if stdin is not None else (line.encode() for line in sys.stdin)
        text = lines(raw, "<stdin>")
        report = costs.import_(
            st, text, fmt=chosen, trust_cost=trust_cost, skip_bad=skip_bad, on_bad=on_bad
        )
    else:
        path = Path(file)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror}") from None
        with fh:
            text = lines(fh, str(path))
            report = costs.import_(
                st, text, fmt=chosen, trust_cost=trust_cost, skip_bad=skip_bad, on_bad=on_bad
            )
    emit(report, as_json=as_json, render=lambda console: _render_import(console, report))


def _render_import(console: Console, report: ImportReport) -> None:
    from rich.markup import escape

    console.print(
        f"read {report.read:,}, imported {report.imported:,}, already present "
        f"{report.duplicates:,}, past retention {report.expired:,}, "
        f"skipped bad {report.skipped_bad:,}, repriced {report.repriced:,}, "
        f"cost computed {report.cost_computed:,}, unpriced {report.unpriced:,}",
        markup=False,
    )
    for line in report.repriced_lines:
        console.print(
            escape(
                f"line {line.line}: {line.attempt_id}: cost_usd {line.given_usd} replaced by "
                f"{line.computed_usd} (the cost of its usage; --trust-cost keeps the given one)"
            )
        )


@app.command("forecast")
def forecast_cmd(
    ctx: typer.Context,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", help="Also forecast per provider|tenant|account|model.", show_default=False
        ),
    ] = None,
    level: Annotated[
        float, typer.Option("--level", help="Prediction interval, in percent (0 < level < 100).")
    ] = 80.0,
    tenant: TenantFlag = None,
    as_json: JsonFlag = False,
) -> None:
    """Month-end spend with a prediction interval and the chance of crossing the monthly limit.

    Days and the month are counted in [thresholds] timezone (per tenant, account and
    model: UTC days). Works from 7 days of history; every forecast carries a backtest of
    the method on the ledger's own history. The first forecast of a day fits the models;
    later ones read a cache. The limit is [thresholds] monthly_usd; with --tenant it is
    that tenant's monthly budget (quota:<tenant>), or none; threshold.name says which.

    Example: huntaze costs forecast --by provider --level 90 --json
    """
    from huntaze_cli.services import costs

    report = costs.forecast(state(ctx), by=by, level=level, tenant=tenant)
    emit(report, as_json=as_json, render=lambda console: _render_forecast(console, report))


def _render_forecast(console: Console, report: ForecastReport) -> None:
    def money(value: float | None) -> str:
        return "-" if value is None else f"${value:,.2f}"

    def row(name: str, f: ForecastFigures) -> list[Any]:
        bt = f.backtest
        return [
            name,
            money(f.month_to_date_usd),
            money(f.forecast_usd),
            f"{money(f.lower_usd)} .. {money(f.upper_usd)}",
            f.method,
            f.history_days,
            "-"
            if bt.mape_pct is None
            else f"{bt.mape_pct:.1f}% / {bt.coverage_pct:.0f}% ({bt.windows})",
        ]

    rows = [row("all", report)]
    rows += [row(str(getattr(g, report.group_by or "", None) or "-"), g) for g in report.groups]
    columns = ["scope", "to date", "month end", f"{report.level_pct:g}% interval", "method",
               "history days", "backtest MAPE / coverage"]  # fmt: skip
    title = f"Forecast {report.month} ({report.timezone})"
    console.print(table(title, columns, rows, right=["to date", "month end", "history days"]))
    t = report.threshold
    if t is not None and t.probability_exceed_pct is not None:
        when = f", expected on {t.expected_breach_date}" if t.expected_breach_date else ""
        console.print(
            f"monthly limit {t.name} {money(t.limit_usd)}: {t.probability_exceed_pct:.1f}% chance "
            f"of crossing it{when}"
        )
    if report.method == "insufficient_history":
        console.print("fewer than 7 days of spend: no forecast yet")


@app.command("anomalies")
def anomalies_cmd(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            help="Spikes from: YYYY-MM-DD ([thresholds] timezone) or ISO-8601 time. "
            "Default: the last 7 days.",
            show_default=False,
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help="Also per provider|tenant|account|model; repeatable.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Spend spikes, hourly and daily, against each series' own seasonal baseline.

    Hourly and daily, overall and for every key. The running hour and day count with
    their spend so far, so a runaway campaign shows within the hour.

    Example: huntaze costs anomalies --since 2026-11-20 --by provider --json
    """
    from huntaze_cli.services import costs

    report = costs.anomalies(state(ctx), since=since, by=by)
    emit(report, as_json=as_json, render=lambda console: _render_anomalies(console, report))


def _render_anomalies(console: Console, report: AnomalyReport) -> None:
    rows = [
        [
            a.start.isoformat(),
            a.granularity,
            ", ".join(f"{k}={v}" for k, v in a.scope.items()) or "all",
            f"${a.observed_usd:,.4f}" + (" so far" if a.ongoing else ""),
            f"${a.expected_usd:,.4f}",
            f"{a.score:.1f}",
            a.severity,
        ]
        for a in report.anomalies
    ]
    columns = ["start", "per", "scope", "observed", "expected", "score", "severity"]
    console.print(
        table(f"Spend anomalies since {report.since.isoformat()}", columns, rows,
              right=["observed", "expected", "score"])
    )  # fmt: skip
    if not rows:
        console.print("no anomalies")
