"""Server-rendered SVG charts for the dashboard: no script, no library, nothing fetched.

Each function takes figures already in a report (the API's JSON) and only scales them to
pixels. Every data mark has ``class="point"`` and a ``<title>`` (the tooltip and what a
screen reader announces); each chart is an ``role="img"`` with a label, and the page
puts a table of the same figures beside it. Text is escaped here: labels come from
users (campaign names, tenants).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from huntaze_cli.reports.palette import colour

WIDTH = 760
FONT = 'font-family="system-ui, sans-serif" font-size="13"'
# Labels drawn over bars keep a white outline, so they stay legible on any colour.
HALO = 'stroke="#fff" stroke-width="4" paint-order="stroke"'


def usd(value: float) -> str:
    """Dollars for an axis or tooltip: cents above $100, more digits below."""
    if abs(value) >= 100:
        return f"${value:,.2f}"
    if abs(value) >= 1:
        return f"${value:,.4f}".rstrip("0").rstrip(".")
    return f"${value:,.6f}".rstrip("0").rstrip(".") if value else "$0"


def nice_ceiling(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _open(label: str, height: int) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
        f"<title>{escape(label)}</title>"
    )


def _y_axis(top: float, left: float, plot_h: float, plot_w: float, peak: float) -> list[str]:
    parts = []
    for tick in range(5):
        value = peak * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#d0d4da" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#3b4250">'
            f"{escape(usd(value))}</text>"
        )
    return parts


def stacked_bars(
    label: str,
    days: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    lines: Sequence[tuple[str, float]] = (),
) -> Markup:
    """One bar per day, one colour per series stacked; ``lines`` are horizontal limits."""
    height, top, left, bottom = 280, 16, 78, 34
    plot_w, plot_h = WIDTH - left - 12, height - top - bottom
    totals = [sum(values[i] for _, values in series) for i in range(len(days))]
    peak = nice_ceiling(max([*totals, *(value for _, value in lines)], default=0))
    parts = [_open(label, height), *_y_axis(top, left, plot_h, plot_w, peak)]
    step = plot_w / max(len(days), 1)
    every = max(1, math.ceil(len(days) / 10))
    for index, day in enumerate(days):
        base = float(top + plot_h)
        for number, (name, values) in enumerate(series):
            value = values[index]
            if value <= 0:
                continue
            bar = plot_h * value / peak
            base -= bar
            parts.append(
                f'<rect class="point" x="{left + index * step + step * 0.15:.1f}" '
                f'y="{base:.1f}" width="{step * 0.7:.1f}" height="{bar:.1f}" '
                f'fill="{colour(number)}" data-series="{escape(name)}" '
                f'data-label="{escape(day)}" data-value="{value}">'
                f"<title>{escape(day)} {escape(name)}: {escape(usd(value))}</title></rect>"
            )
        if index % every == 0:
            parts.append(
                f'<text x="{left + index * step + step / 2:.1f}" y="{height - 14}" '
                f'text-anchor="middle" fill="#3b4250">{escape(day[5:])}</text>'
            )
    for name, value in lines:
        if value <= 0:
            continue
        y = top + plot_h - plot_h * min(value, peak) / peak
        parts.append(
            f'<line class="limit" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#B00020" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<text x="{left + plot_w}" y="{y - 5:.1f}" text-anchor="end" fill="#8A0018" '
            f"{HALO}>{escape(name)} {escape(usd(value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def month_line(
    label: str,
    days: Sequence[str],
    cumulative: Sequence[float],
    *,
    month_days: int,
    limit: float | None,
    forecast: tuple[float, float | None, float | None] | None,
) -> Markup:
    """Spend so far this month (a line over ``days``), the monthly limit and the
    forecast band from the last day to the month's end (point, lower, upper)."""
    height, top, left, bottom = 280, 16, 78, 34
    plot_w, plot_h = WIDTH - left - 12, height - top - bottom
    values = list(cumulative)
    if forecast is not None:
        values += [v for v in forecast if v is not None]
    # A limit far above the spend would flatten the line: it is named, not drawn, then.
    drawn_limit = limit if limit and limit <= 1.5 * max(values, default=0) else None
    peak = nice_ceiling(max([*values, drawn_limit or 0], default=0))
    parts = [_open(label, height), *_y_axis(top, left, plot_h, plot_w, peak)]
    step = plot_w / max(month_days - 1, 1)

    def xy(index: int, value: float) -> tuple[float, float]:
        return left + index * step, top + plot_h - plot_h * value / peak

    if forecast is not None and cumulative:
        point, lower, upper = forecast
        x0, y0 = xy(len(cumulative) - 1, cumulative[-1])
        if lower is not None and upper is not None:
            x1, y_low = xy(month_days - 1, lower)
            _, y_up = xy(month_days - 1, upper)
            parts.append(
                f'<polygon class="band" points="{x0:.1f},{y0:.1f} {x1:.1f},{y_up:.1f} '
                f'{x1:.1f},{y_low:.1f}" fill="#0072B2" fill-opacity="0.18">'
                f"<title>forecast range {escape(usd(lower))} to {escape(usd(upper))}</title>"
                f"</polygon>"
            )
        x1, y1 = xy(month_days - 1, point)
        parts.append(
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#0072B2" '
            f'stroke-width="2" stroke-dasharray="4 4"/>'
            f'<circle class="point" cx="{x1:.1f}" cy="{y1:.1f}" r="4" fill="#fff" '
            f'stroke="#0072B2" stroke-width="2" data-label="forecast" data-value="{point}">'
            f"<title>month-end forecast {escape(usd(point))}</title></circle>"
        )
    coords = [xy(i, v) for i, v in enumerate(cumulative)]
    if coords:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0072B2" stroke-width="2"/>')
    for (x, y), day, value in zip(coords, days, cumulative, strict=True):
        parts.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#0072B2" '
            f'data-label="{escape(day)}" data-value="{value}">'
            f"<title>{escape(day)}: {escape(usd(value))} so far</title></circle>"
        )
    every = max(1, math.ceil(month_days / 10))
    for index in range(0, month_days, every):
        parts.append(
            f'<text x="{left + index * step:.1f}" y="{height - 14}" text-anchor="middle" '
            f'fill="#3b4250">{index + 1}</text>'
        )
    if drawn_limit:
        y = xy(0, drawn_limit)[1]
        parts.append(
            f'<line class="limit" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#B00020" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<text x="{left + 4}" y="{y - 5:.1f}" fill="#8A0018" {HALO}>monthly limit '
            f"{escape(usd(drawn_limit))}</text>"
        )
    elif limit:
        parts.append(
            f'<text x="{left + 4}" y="{top + 12}" fill="#8A0018" {HALO}>monthly limit '
            f"{escape(usd(limit))}, above this scale</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def gauge(label: str, used_pct: float, text: str) -> Markup:
    """A horizontal meter (green below 80 %, amber to 100 %, red past it) and its caption
    as page text, which stays readable at any width."""
    fill = "#007A5A" if used_pct < 80 else "#7A5C00" if used_pct < 100 else "#B00020"
    width = 100 * min(max(used_pct, 0.0), 100.0) / 100
    return Markup(
        f'<svg class="gauge" viewBox="0 0 100 6" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}: {escape(text)}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="0" y="0" width="100" height="6" fill="#eef0f3"/>'
        f'<rect class="point" x="0" y="0" width="{width:.2f}" height="6" fill="{fill}" '
        f'data-value="{used_pct}"><title>{escape(text)}</title></rect></svg>'
        f'<p class="gauge-text">{escape(text)}</p>'
    )


def hbars(
    label: str,
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    *,
    unit: str = "usd",
) -> Markup:
    """Horizontal bars, one group per row, one bar per (series, value) in the group
    (a compare's a and b, or a single figure); ``unit``: usd, count or pct."""
    names = [name for _, bars in rows[:1] for name, _ in bars]
    bar_h, gap, left = 14, 12, 190
    height = max(len(rows), 1) * (bar_h * max(len(names), 1) + gap) + 8
    peak = max((value for _, bars in rows for _, value in bars), default=0) or 1
    plot_w = WIDTH - left - 120
    parts = [_open(label, height)]
    y = 4.0
    for group, bars in rows:
        text = group if len(group) <= 26 else group[:25] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_h * len(bars) / 2 + 4:.1f}" text-anchor="end" '
            f'fill="#1d2330">{escape(text)}</text>'
        )
        for number, (name, value) in enumerate(bars):
            width = plot_w * max(value, 0) / peak
            shown = (
                usd(value)
                if unit == "usd"
                else f"{value:.2f}%"
                if unit == "pct"
                else f"{value:,.0f}"
            )
            parts.append(
                f'<rect class="point" x="{left}" y="{y:.1f}" width="{max(width, 1):.1f}" '
                f'height="{bar_h - 2}" fill="{colour(number)}" data-series="{escape(name)}" '
                f'data-label="{escape(group)}" data-value="{value}">'
                f"<title>{escape(group)} {escape(name)}: {escape(shown)}</title></rect>"
                f'<text x="{left + width + 6:.1f}" y="{y + bar_h - 3:.1f}" fill="#3b4250">'
                f"{escape(shown)}</text>"
            )
            y += bar_h
        y += gap
    parts.append("</svg>")
    return Markup("".join(parts))
