"""The cost-report use cases: `costs breakdown|stats|forecast|anomalies|compare|report|
export|import` and their HTTP routes.

Parameters arrive as the user typed them (strings, repeated keys); bad ones raise
``UsageError`` naming the parameter as a field, which each interface spells its way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, TextIO

from huntaze_cli.config.tenants import configured_tenant
from huntaze_cli.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from huntaze_cli.config import Config
    from huntaze_cli.costs.anomaly_report import AnomalyReport
    from huntaze_cli.costs.compare import CompareReport
    from huntaze_cli.costs.daily import DailySpend
    from huntaze_cli.costs.finance import FinanceReport
    from huntaze_cli.costs.forecast_report import ForecastReport
    from huntaze_cli.costs.limits import Limit
    from huntaze_cli.costs.transfer import Format
    from huntaze_cli.models import BreakdownReport, ImportReport, StatsReport
    from huntaze_cli.services import Services


def breakdown(
    services: Services,
    *,
    by: Sequence[str] | None,
    since: str | None,
    until: str | None,
    days: int | None,
    tenant: str | None = None,
) -> BreakdownReport:
    """Cost grouped by ``by`` (default provider) over since/until or the last ``days``;
    only ``tenant``'s costs when one is named (every report here takes ``tenant``)."""
    from huntaze_cli.costs.reports import breakdown as report
    from huntaze_cli.costs.reports import time_range, validate_group_by

    keys = validate_group_by(by or [])
    start, end = time_range(since=since, until=until, days=days, now=datetime.now(UTC))
    return report(services.ledger_for(tenant), start=start, end=end, group_by=keys)


def compare(
    services: Services,
    *,
    by: Sequence[str] | None,
    a_since: str | None,
    a_until: str | None,
    b_since: str | None,
    b_until: str | None,
    tenant: str | None = None,
) -> CompareReport:
    """Cost by ``by`` in range a against range b (default: this month against last)."""
    from huntaze_cli.costs.compare import compare as report
    from huntaze_cli.costs.compare import resolve_ranges
    from huntaze_cli.costs.reports import validate_group_by

    keys = validate_group_by(by or [])
    a, b = resolve_ranges(
        a_since=a_since, a_until=a_until, b_since=b_since, b_until=b_until, now=datetime.now(UTC)
    )
    return report(services.ledger_for(tenant), a=a, b=b, group_by=keys)


REPORT_FORMATS = ("json", "csv", "pdf")


def report_format(value: str) -> str:
    """``json``, ``csv`` or ``pdf``; anything else is a usage error on ``format``."""
    if value not in REPORT_FORMATS:
        raise UsageError(
            f"<format>: unknown format {value!r}; choose json, csv or pdf",
            field="format",
            value=value,
        )
    return value


def finance_report(
    services: Services, *, since: str | None, until: str | None, tenant: str | None = None
) -> FinanceReport:
    """The finance report over since/until (default: the last 30 UTC days)."""
    from huntaze_cli.costs.finance import finance_report as report
    from huntaze_cli.costs.reports import time_range

    now = datetime.now(UTC)
    start, end = time_range(since=since, until=until, days=None, now=now)
    return report(services.ledger_for(tenant), start=start, end=end, now=now)


def render_report(report: FinanceReport, fmt: str) -> bytes:
    """The report's bytes in ``fmt``: the JSON document, the CSV table or the PDF."""
    if fmt == "csv":
        from huntaze_cli.costs.finance import finance_csv

        return finance_csv(report).encode()
    if fmt == "pdf":
        from huntaze_cli.costs.finance_pdf import finance_pdf

        return finance_pdf(report)
    from huntaze_cli.jsondoc import dump_json

    return dump_json(report)


def daily_spend(services: Services, *, days: int, tenant: str | None = None) -> DailySpend:
    """Spend per day of ``[thresholds] timezone`` by provider, the last ``days`` days."""
    from huntaze_cli.costs.daily import daily_spend as report

    return report(services.config(), services.ledger_for(tenant), days=days, now=datetime.now(UTC))


def stats(services: Services, *, tenant: str | None = None) -> StatsReport:
    """Last hour, today, yesterday, month to date, per provider, threshold use."""
    from huntaze_cli.costs.reports import stats as report

    config = services.config()
    if tenant is None:
        return report(config, services.ledger())
    configured_tenant(config.tenants, tenant)
    return report(config, services.ledger_for(tenant), limits=tenant_limits(config, tenant))


def forecast(
    services: Services, *, by: str | None, level: float, tenant: str | None = None
) -> ForecastReport:
    """Month-end spend with an interval, the chance of crossing the monthly limit."""
    from huntaze_cli.costs.forecast_report import forecast_report, validate_level
    from huntaze_cli.costs.series import validate_key

    validate_key(by)
    validate_level(level)
    config = services.config()
    if tenant is None:
        return forecast_report(config, services.ledger(), by=by, level_pct=level)
    configured_tenant(config.tenants, tenant)
    return forecast_report(
        config,
        services.ledger_for(tenant),
        by=by,
        level_pct=level,
        limit=tenant_limits(config, tenant)["monthly"],
    )


def tenant_limits(config: Config, tenant: str) -> dict[str, Limit | None]:
    """The daily and monthly limits a tenant's stats and forecast are compared with: the
    lowest budget of that period on exactly that tenant (its ``quota:<tenant>`` from
    ``quota_usd_month``, or a ``[[budgets.rules]]`` scoped to it), None when it has none.
    Never the global ``[thresholds]``: that is everybody's spend, not the tenant's."""
    from huntaze_cli.budgets.rules import budgets_in_force
    from huntaze_cli.costs.limits import Limit
    from huntaze_cli.money import round_to_nano

    found: dict[str, list[Limit]] = {"daily": [], "monthly": []}
    for budget in budgets_in_force(config):
        if budget.scope.as_dict() == {"tenant": tenant}:
            period = "daily" if budget.period == "day" else "monthly"
            found[period].append(Limit(budget.name, "budget", round_to_nano(budget.limit_usd)))
    return {
        period: min(limits, key=lambda limit: (limit.limit_nano, limit.name), default=None)
        for period, limits in found.items()
    }


# How often a long-running process looks whether a new day needs a forecast fitted.
WARM_CHECK_S = 300.0


def warm_forecast(services: Services) -> date:
    """Fit (or find cached) today's overall forecast and its backtest: the cache every
    `costs forecast` of the day reads. Returns the local day it was warmed for."""
    from huntaze_cli.costs.forecast_report import forecast_report

    config = services.config()
    now = datetime.now(UTC)
    forecast_report(config, services.ledger(), now=now)
    return now.astimezone(config.thresholds.tz).date()


async def keep_forecast_warm(services: Services, stopping: Callable[[], bool]) -> None:
    """Warm today's forecast now and again on each new day of ``[thresholds] timezone``,
    until ``stopping()``, so the first `costs forecast` of a day (CLI or HTTP) does not
    import statsmodels and fit. `serve` and `worker` run it in the background.

    The fit runs in a child process (`huntaze costs forecast`), not a thread: statsmodels,
    pandas and scipy add some 100 MB to whatever imports them, and a daemon that stays
    under its idle memory budget must not hold them for a cache it only fills once a day.
    A failure is logged and retried on the next look."""
    import asyncio
    import logging

    log = logging.getLogger("huntaze.forecast")
    warmed: date | None = None
    while not stopping():
        config = services.config()
        today = datetime.now(UTC).astimezone(config.thresholds.tz).date()
        if today != warmed:
            error = await _forecast_in_child(config.source)
            if error is None:
                warmed = today
            else:  # best effort: a cold cache only costs the next call
                log.warning("warming the forecast failed", extra={"error": error})
        await asyncio.sleep(WARM_CHECK_S)


async def _forecast_in_child(source: Path | None) -> str | None:
    """Run `huntaze costs forecast --json` in a child process on the same config; None
    when it succeeded, else the last line it wrote on stderr."""
    import asyncio
    import sys

    argv = [sys.executable, "-m", "huntaze_cli"]
    if source is not None:
        argv += ["--config", str(source)]
    argv += ["costs", "forecast", "--json"]
    child = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await child.communicate()
    except asyncio.CancelledError:
        if child.returncode is None:
            child.kill()
            await child.wait()
        raise
    if child.returncode == 0:
        return None
    lines = err.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {child.returncode}"


def anomalies(
    services: Services,
    *,
    since: str | None,
    by: Sequence[str] | None,
    tenant: str | None = None,
) -> AnomalyReport:
    """Hourly and daily spend spikes since ``since`` (default: the last 7 days)."""
    from huntaze_cli.costs.anomaly_report import anomaly_report, parse_since, validate_keys

    keys = validate_keys(by or [])
    config = services.config()
    start = parse_since(since, config.thresholds.tz)
    return anomaly_report(config, services.ledger_for(tenant), since=start, by=keys)


def transfer_format(value: str) -> Format:
    """``jsonl`` or ``csv``; anything else is a usage error on ``format``."""
    if value == "jsonl":
        return "jsonl"
    if value == "csv":
        return "csv"
    raise UsageError(
        f"<format>: unknown format {value!r}; choose jsonl or csv", field="format", value=value
    )


@dataclass(frozen=True)
class ExportRequest:
    """A validated export: the format and the UTC range (None: unbounded)."""

    fmt: Format
    since: datetime | None
    until: datetime | None


def export_request(fmt: str, *, since: str | None, until: str | None) -> ExportRequest:
    """Check an export's parameters before anything is opened; dates are inclusive."""
    from huntaze_cli.costs.reports import parse_when

    chosen = transfer_format(fmt)
    start = _instant(parse_when(since, field="since"), end=False) if since else None
    end = _instant(parse_when(until, field="until"), end=True) if until else None
    if start is not None and end is not None and start >= end:
        raise UsageError(
            "<since> must be before <until>", field="since", value=since, refs=["until"]
        )
    return ExportRequest(chosen, start, end)


def export(services: Services, out: TextIO, request: ExportRequest) -> int:
    """Write the raw events of ``request``'s range to ``out``; returns the count."""
    from huntaze_cli.costs.transfer import export_events

    return export_events(
        services.ledger(), out, fmt=request.fmt, since=request.since, until=request.until
    )


def import_(
    services: Services,
    lines: Iterable[str],
    *,
    fmt: str,
    skip_bad: bool,
    on_bad: Callable[[int, str], None],
    trust_cost: bool = False,
) -> ImportReport:
    """Check, reprice and record every event of ``lines`` idempotently (see
    ``costs.transfer``): priced as generation prices them, unless ``trust_cost``."""
    from huntaze_cli.costs.transfer import Repricer, import_events

    chosen = transfer_format(fmt)
    return import_events(
        services.ledger(),
        lines,
        prices=Repricer(services.config()),
        fmt=chosen,
        trust_cost=trust_cost,
        skip_bad=skip_bad,
        on_bad=on_bad,
    )


def _instant(value: datetime | date, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        day = value + timedelta(days=1) if end else value
    except OverflowError:  # until 9999-12-31: everything from since on
        return datetime.max.replace(tzinfo=UTC)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
