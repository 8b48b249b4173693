"""Period against period: what each group cost in range A and in range B, and the change.

``a`` is the period looked at, ``b`` the one it is compared with: ``delta = a - b`` and
``delta_pct`` is that change as a percentage of ``b`` (None when ``b`` cost nothing). By
default ``a`` is this UTC month to date and ``b`` the whole month before; given only
``a``, ``b`` is the period of equal length just before it (what the finance report
compares with). Both sides are breakdowns over the daily rollups, so ranges are whole
UTC days and no raw event is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from huntaze_cli.costs.reports import breakdown, time_range, validate_group_by
from huntaze_cli.errors import UsageError
from huntaze_cli.models import BreakdownReport, BreakdownRow, _Report
from huntaze_cli.money import nano_to_usd
from huntaze_cli.storage.ledger import Ledger


class CompareFigures(BaseModel):
    """Both periods' cost of one group (or of everything), and the change from b to a."""

    a_requests: int = 0
    b_requests: int = 0
    a_cost_usd: float = 0.0
    a_cost_nano: int = 0
    b_cost_usd: float = 0.0
    b_cost_nano: int = 0
    delta_usd: float = 0.0
    delta_nano: int = 0
    delta_pct: float | None = None


class CompareRow(CompareFigures):
    """One group; its keys (provider, model, ...) are extra fields, as in a breakdown."""

    model_config = ConfigDict(extra="allow")


class CompareReport(_Report):
    """`costs compare` and ``GET /api/v2/costs/compare``."""

    a_since: datetime
    a_until: datetime
    b_since: datetime
    b_until: datetime
    group_by: list[str]
    rows: list[CompareRow]
    total: CompareFigures
    a_unpriced_requests: int
    b_unpriced_requests: int


def delta_pct(a_nano: int, b_nano: int) -> float | None:
    """The change from ``b`` to ``a`` in percent of ``b``, 2 decimals; None when b is 0."""
    if b_nano == 0:
        return None
    return round((a_nano - b_nano) * 100 / b_nano, 2)


def _figures(
    a_requests: int, a_usd: float, a_nano: int, b_requests: int, b_usd: float, b_nano: int
) -> dict[str, object]:
    return {
        "a_requests": a_requests,
        "b_requests": b_requests,
        "a_cost_usd": a_usd,
        "a_cost_nano": a_nano,
        "b_cost_usd": b_usd,
        "b_cost_nano": b_nano,
        "delta_usd": nano_to_usd(a_nano - b_nano),
        "delta_nano": a_nano - b_nano,
        "delta_pct": delta_pct(a_nano, b_nano),
    }


def compare_reports(a: BreakdownReport, b: BreakdownReport) -> CompareReport:
    """Join two breakdowns grouped by the same keys into one comparison."""
    keys = a.group_by

    def key_of(row: BreakdownRow) -> tuple[object, ...]:
        data = row.model_extra or {}
        return tuple(data.get(k) for k in keys)

    joined: dict[tuple[object, ...], tuple[BreakdownRow | None, BreakdownRow | None]] = {}
    for row in a.rows:
        joined[key_of(row)] = (row, None)
    for row in b.rows:
        joined[key_of(row)] = (joined.get(key_of(row), (None, None))[0], row)
    rows = []
    for group, (ra, rb) in joined.items():
        figures = _figures(
            ra.requests if ra else 0,
            ra.cost_usd if ra else 0.0,
            ra.cost_nano if ra else 0,
            rb.requests if rb else 0,
            rb.cost_usd if rb else 0.0,
            rb.cost_nano if rb else 0,
        )
        rows.append(CompareRow(**dict(zip(keys, group, strict=True)), **figures))
    rows.sort(
        key=lambda r: (
            -max(r.a_cost_nano, r.b_cost_nano),
            -abs(r.delta_nano),
            [str(getattr(r, k, None)) for k in keys],
        )
    )
    total = CompareFigures.model_validate(
        _figures(
            a.total.requests,
            a.total.cost_usd,
            a.total.cost_nano,
            b.total.requests,
            b.total.cost_usd,
            b.total.cost_nano,
        )
    )
    return CompareReport(
        a_since=a.since,
        a_until=a.until,
        b_since=b.since,
        b_until=b.until,
        group_by=list(keys),
        rows=rows,
        total=total,
        a_unpriced_requests=a.unpriced_requests,
        b_unpriced_requests=b.unpriced_requests,
    )


def previous_period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The range of equal length that ends where ``[start, end)`` begins."""
    return start - (end - start), start


def month_ranges(now: datetime) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """This UTC month up to the end of today, and the whole month before it."""
    today = now.astimezone(UTC).date()
    first = date(today.year, today.month, 1)
    before = (first - timedelta(days=1)).replace(day=1)
    a = (_midnight(first), _midnight(today + timedelta(days=1)))
    return a, (_midnight(before), _midnight(first))


def resolve_ranges(
    *,
    a_since: str | None,
    a_until: str | None,
    b_since: str | None,
    b_until: str | None,
    now: datetime,
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """The two UTC ranges a comparison covers, from the parameters as typed.

    No ``a_since`` (and no ``a_until``): this month to date, against last month unless
    ``b`` is given. ``b_since`` without ``b_until`` runs ``b`` for as long as ``a``.
    """
    if a_since is None and a_until is not None:
        raise UsageError("<a_since> is needed with <a_until>", field="a_since", refs=["a_until"])
    if b_since is None and b_until is not None:
        raise UsageError("<b_since> is needed with <b_until>", field="b_since", refs=["b_until"])
    if a_since is None:
        a, b = month_ranges(now)
    else:
        a = _range(a_since, a_until, now=now, prefix="a")
        b = previous_period(*a)
    if b_since is not None:
        if b_until is None:
            start = _range(b_since, None, now=now, prefix="b")[0]
            b = (start, start + (a[1] - a[0]))
        else:
            b = _range(b_since, b_until, now=now, prefix="b")
    return a, b


def compare(
    ledger: Ledger,
    *,
    a: tuple[datetime, datetime],
    b: tuple[datetime, datetime],
    group_by: Sequence[str],
) -> CompareReport:
    """Cost by ``group_by`` in range ``a`` against range ``b`` (two rollup reads)."""
    keys = validate_group_by(group_by)
    return compare_reports(
        breakdown(ledger, start=a[0], end=a[1], group_by=keys),
        breakdown(ledger, start=b[0], end=b[1], group_by=keys),
    )


def _range(
    since: str, until: str | None, *, now: datetime, prefix: str
) -> tuple[datetime, datetime]:
    try:
        return time_range(since=since, until=until, days=None, now=now)
    except UsageError as exc:
        # The same checks as a breakdown's, spelled with this side's parameter names.
        names = {ref: f"{prefix}_{ref}" for ref in ("since", "until", "days")}
        text = exc.text
        for ref, name in names.items():
            text = text.replace(f"<{ref}>", f"<{name}>")
        raise UsageError(
            text,
            field=names.get(exc.field or "since", f"{prefix}_since"),
            value=exc.value,
            refs=[names.get(ref, ref) for ref in exc.refs],
        ) from None


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
