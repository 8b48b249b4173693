"""What each dashboard view shows: the API's own documents, plus their charts.

Every view calls the application services the matching API routes call and hands the
templates those models unchanged; charts only scale the models' figures to pixels (the
month line adds up the daily figures the overview shows, which is drawing, not
accounting). So a figure on the page is a figure of ``/api/v2/...``, or, for the
overview's spend per day, of ``costs.daily`` (days of ``[thresholds] timezone``, the days
the daily limit counts, from the rollups ``costs stats`` reads).
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from huntaze_cli.server.dashboard import charts

if TYPE_CHECKING:
    from huntaze_cli.budgets.report import BudgetList
    from huntaze_cli.campaigns.detail import CampaignDetail
    from huntaze_cli.costs.compare import CompareReport
    from huntaze_cli.costs.daily import DailySpend
    from huntaze_cli.costs.forecast_report import ForecastReport
    from huntaze_cli.models import (
        AlertList,
        HealthReport,
        StatsReport,
        StatusOverview,
        ThresholdReport,
    )
    from huntaze_cli.services import Services

DAYS = 30  # the overview's spend chart
GROUPINGS = ("provider", "model", "account", "campaign", "tenant", "day")


@dataclass
class OverviewData:
    """The documents behind the overview: `costs stats`, `costs forecast` and `health`
    (the same as their routes), and the spend per day of the threshold time zone by
    provider over 30 days (``costs.daily``)."""

    stats: StatsReport
    daily: DailySpend
    forecast: ForecastReport
    health: HealthReport


def overview_data(services: Services, tenant: str | None = None) -> OverviewData:
    """With ``tenant``, that tenant's figures only (health is the daemon's, tenant-safe)."""
    from huntaze_cli.services import costs
    from huntaze_cli.services.health import check_health

    return OverviewData(
        stats=costs.stats(services, tenant=tenant),
        daily=costs.daily_spend(services, days=DAYS, tenant=tenant),
        forecast=costs.forecast(services, by=None, level=80.0, tenant=tenant),
        health=check_health(services.config(), services.ledger),
    )


def overview(services: Services, tenant: str | None) -> dict[str, Any]:
    data = overview_data(services, tenant)
    daily = data.daily
    days = [day.isoformat() for day in daily.days]
    providers: list[str] = []
    cells: dict[tuple[str, str], float] = {}
    for row in daily.rows:
        if row.provider not in providers:
            providers.append(row.provider)
        cells[(row.day.isoformat(), row.provider)] = row.cost_usd
    series = [(p, [cells.get((d, p), 0.0) for d in days]) for p in providers]
    daily_limit = data.stats.thresholds["daily"].limit_usd
    monthly_limit = data.stats.thresholds["monthly"].limit_usd
    spend_chart = charts.stacked_bars(
        f"Spend per day ({daily.timezone}) by provider, last {DAYS} days, with the daily limit",
        days,
        series,
        lines=[("daily limit", daily_limit)],
    )
    today: date = daily.days[-1]
    month_first = today.replace(day=1)
    month_days = [d for d in days if d >= month_first.isoformat()]
    cumulative: list[float] = []
    for day in month_days:
        spent = sum(cells.get((day, p), 0.0) for p in providers)
        cumulative.append(round((cumulative[-1] if cumulative else 0.0) + spent, 6))
    forecast = data.forecast
    band = None
    if forecast.forecast_usd is not None:
        band = (forecast.forecast_usd, forecast.lower_usd, forecast.upper_usd)
    month_chart = charts.month_line(
        "This month: spend so far, the month-end forecast band and the monthly limit",
        month_days,
        cumulative,
        month_days=monthrange(today.year, today.month)[1],
        limit=monthly_limit,
        forecast=band,
    )
    use = data.stats.thresholds
    gauges = [
        charts.gauge(
            "Today against the daily limit",
            use["daily"].used_pct,
            f"today {charts.usd(use['daily'].spent_usd)} of {charts.usd(use['daily'].limit_usd)}"
            f" ({use['daily'].used_pct:.2f}%)",
        ),
        charts.gauge(
            "This month against the monthly limit",
            use["monthly"].used_pct,
            f"month {charts.usd(use['monthly'].spent_usd)} of "
            f"{charts.usd(use['monthly'].limit_usd)} ({use['monthly'].used_pct:.2f}%)",
        ),
    ]
    return {
        "data": data,
        "days": days,
        "series": series,
        "spend_chart": spend_chart,
        "month_days": month_days,
        "cumulative": cumulative,
        "month_chart": month_chart,
        "gauges": gauges,
    }


def campaigns_page(services: Services, tenant: str | None) -> dict[str, Any]:
    from huntaze_cli.services import campaigns

    status: StatusOverview = campaigns.overview(services, limit=50, tenant=tenant)
    return {"campaign_list": status}


def campaign_page(services: Services, campaign_id: str, *, tenant: str | None) -> dict[str, Any]:
    from huntaze_cli.services import campaigns

    detail: CampaignDetail = campaigns.detail(services, campaign_id, tenant=tenant)
    counts = detail.campaign.counts
    states_chart = charts.hbars(
        "Messages by state",
        [(state, [("messages", float(n))]) for state, n in counts.items()],
        unit="count",
    )
    cost_chart = charts.hbars(
        "Cost by provider",
        [(p.provider, [("cost", p.cost_usd)]) for p in detail.providers],
    )
    return {"detail": detail, "states_chart": states_chart, "cost_chart": cost_chart}


def costs_page(
    services: Services, *, by: str, ranges: dict[str, str | None], tenant: str | None
) -> dict[str, Any]:
    from huntaze_cli.services import costs

    report: CompareReport = costs.compare(services, by=[by], tenant=tenant, **ranges)
    chart = charts.hbars(
        f"Cost by {by}: period a against period b",
        [
            (
                str((row.model_extra or {}).get(by) or "-"),
                [("a", row.a_cost_usd), ("b", row.b_cost_usd)],
            )
            for row in report.rows[:15]
        ],
    )
    last_day = (report.a_until - timedelta(days=1)).date().isoformat()
    return {
        "report": report,
        "by": by,
        "groupings": GROUPINGS,
        "chart": chart,
        "export": {"since": report.a_since.date().isoformat(), "until": last_day},
        "ranges": ranges,
    }


def alerts_page(services: Services, tenant: str | None) -> dict[str, Any]:
    from huntaze_cli.services import alerts

    rules: ThresholdReport = alerts.list_rules(services, tenant=tenant)
    history: AlertList = alerts.history(services, limit=50, tenant=tenant)
    chart = charts.hbars(
        "Spend against each rule's limit, in percent",
        [(rule.name, [("used %", rule.used_pct)]) for rule in rules.thresholds],
        unit="pct",
    )
    return {"rules": rules, "history": history, "chart": chart}


def tenants_page(services: Services, tenant: str | None) -> dict[str, Any]:
    """Every tenant (configured or in the ledger): this month's spend (`costs compare
    --by tenant`, this month against last) beside its quotas and markup from the config."""
    from huntaze_cli.services import costs

    assert tenant is None, "the tenants view is the admin's"
    report: CompareReport = costs.compare(
        services, by=["tenant"], a_since=None, a_until=None, b_since=None, b_until=None
    )
    configured = services.config().tenants
    spend = {str((row.model_extra or {}).get("tenant")): row for row in report.rows}
    names = [*configured, *(name for name in spend if name not in configured)]
    chart = charts.hbars(
        "Spend per tenant: this month (a) against last month (b)",
        [
            (name, [("a", spend[name].a_cost_usd), ("b", spend[name].b_cost_usd)])
            for name in names
            if name in spend
        ],
    )
    return {
        "report": report,
        "names": names,
        "spend": spend,
        "configured": configured,
        "chart": chart,
    }


def budgets_page(services: Services, tenant: str | None) -> dict[str, Any]:
    """`budgets list` (``GET /api/v2/costs/budgets``): each budget's period, limit, spent,
    reserved, remaining and state, with a bar of its use; a tenant sees its own only."""
    from huntaze_cli.services.budgets import list_budgets

    budgets: BudgetList = list_budgets(services, tenant=tenant)
    bars = {
        budget.name: charts.gauge(
            f"Budget {budget.name}",
            budget.used_pct,
            f"{charts.usd(budget.spent_usd)} spent + {charts.usd(budget.reserved_usd)} reserved"
            f" of {charts.usd(budget.limit_usd)} ({budget.used_pct:.2f}%)",
        )
        for budget in budgets.budgets
    }
    return {"budgets": budgets, "bars": bars}
