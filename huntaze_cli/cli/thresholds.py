"""`huntaze check-thresholds` and `huntaze thresholds list|set|delete`: the alert rules.

check-thresholds evaluates every rule for cron and alerts once per level and period;
`thresholds` lists the rules with their spend and manages the stored ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, styled, table, warn
from huntaze_cli.errors import UsageError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

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
    """Evaluate every alert rule; alert once per rule, scope, level and period.

    Rules: global-daily and global-monthly ([thresholds] daily_usd / monthly_usd),
    [[thresholds.rules]] and the rules stored with `huntaze thresholds set`. Exit 0
    within every limit, 3 when a rule is breached, 1 when an alert could not be sent on
    a channel (named on stderr; the next run retries it). Days and months are counted in
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
            r.name + ("" if r.kind == "spend" else f" ({r.kind})"),
            _scope(r.scope),
            r.period,
            _usd(r.limit_usd),
            f"${r.spent_usd:,.6f}"
            + ("" if r.forecast_usd is None else f" (forecast ${r.forecast_usd:,.2f})"),
            f"{r.used_pct:.2f}%",
            "BREACHED" if r.breached else "ok",
            ", ".join(r.alert_channels) if r.alerted else "-",
        ]
        for r in report.thresholds
    ]
    console.print(
        table(
            f"Alert rules ({report.timezone})",
            ["rule", "scope", "period", "limit", "spent", "used", "state", "alerted via"],
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


def _usd(value: float) -> str:
    # Cents hide a small limit ($0.0001 is not $0.00).
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:,.6f}"


def _scope(scope: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in scope.items()) or "all"


rules_app = typer.Typer(
    help="List the alert rules with their spend; create, replace or delete stored rules.",
    no_args_is_help=True,
)


@rules_app.command("list")
def list_cmd(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every rule (global, config, stored) with its spend in its current period.

    Example: huntaze thresholds list --json | jq '.thresholds[] | {name, used_pct}'
    """
    from huntaze_cli.services.alerts import list_rules

    report = list_rules(state(ctx))
    emit(report, as_json=as_json, render=lambda console: _render(console, report))


def _csv_ints(value: str | None, *, field: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise UsageError(
            f"<{field}> {value!r}: give whole percents separated by commas, like 50,80,100",
            field=field,
            value=value,
        ) from None


def _scope_pairs(pairs: list[str]) -> dict[str, str]:
    scope: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise UsageError(
                f"<scope> {pair!r}: write KEY=VALUE, e.g. tenant=agency_a",
                field="scope",
                value=pair,
            )
        scope[key.strip()] = value.strip()
    return scope


@rules_app.command("set")
def set_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Rule name (letters, digits, _ . : -).")],
    limit: Annotated[str, typer.Option("--limit", help="Limit in US dollars.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="KEY=VALUE, KEY one of tenant|account|campaign|provider|model; repeatable. "
            "None: everything.",
        ),
    ] = None,
    period: Annotated[str, typer.Option("--period", help="day | month")] = "day",
    levels: Annotated[
        str | None, typer.Option("--levels", help="Percents of the limit, e.g. 50,80,100.")
    ] = None,
    channels: Annotated[
        str | None,
        typer.Option("--channels", help="Comma-separated; default: [alerts] channels."),
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="spend | forecast | anomaly")] = "spend",
    as_json: JsonFlag = False,
) -> None:
    """Create or replace a stored rule; config rules cannot be changed here (exit 2).

    Example: huntaze thresholds set a-daily --scope tenant=agency_a --limit 20 --levels 50,80,100
    """
    from huntaze_cli.services.alerts import set_rule

    fields: dict[str, Any] = {
        "kind": kind,
        "scope": _scope_pairs(scope or []),
        "period": period,
        "limit_usd": limit,
    }
    parsed = _csv_ints(levels, field="levels")
    if parsed is not None:
        fields["levels"] = parsed
    if channels is not None:
        fields["channels"] = [c.strip() for c in channels.split(",") if c.strip()]
    change = set_rule(state(ctx), name, fields)
    emit(change, as_json=as_json, render=lambda console: console.print(f"{change.action}: {name}"))


@rules_app.command("delete")
def delete_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of a stored rule.")],
    as_json: JsonFlag = False,
) -> None:
    """Delete a stored rule; a config rule cannot be deleted here (exit 2).

    Example: huntaze thresholds delete agency_a-daily
    """
    from huntaze_cli.services.alerts import delete_rule

    change = delete_rule(state(ctx), name)
    emit(change, as_json=as_json, render=lambda console: console.print(f"deleted: {name}"))


def register(app: typer.Typer) -> None:
    app.command("check-thresholds")(check_thresholds)
    app.add_typer(rules_app, name="thresholds")
