"""How long to wait before trying again: jittered exponential backoff and Retry-After.

Every retry loop (the orchestrator on a provider, the delivery worker on a sink, the AWS
adapters on throttling) draws its pause from ``backoff_s``, and every server's request
to wait is read by ``retry_after_s`` / ``parse_retry_after``.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime

# The default spread: "equal jitter", half the capped delay plus a random half. Callers
# that retry in step (many workers throttled at once) spread out; none waits over max.
EQUAL_JITTER = (0.5, 1.0)


def backoff_s(
    retries: int,
    *,
    base_s: float,
    max_s: float,
    spread: tuple[float, float] = EQUAL_JITTER,
    rng: random.Random | None = None,
) -> float:
    """The pause before try ``retries + 1`` (``retries`` >= 0 tries already failed).

    Exponential from ``base_s``, capped at ``max_s``, then multiplied by a factor drawn
    uniformly from ``spread`` (``(1.0, 1.2)`` adds up to 20 %; the default takes 50-100 %).
    """
    low, high = spread
    ceiling = min(max_s, base_s * 2 ** max(retries, 0))
    draw = (rng or random).random()
    return ceiling * (low + (high - low) * draw)


# Azure and OpenAI send milliseconds in their own headers; the standard one is seconds.
_RETRY_AFTER_HEADERS = (
    ("retry-after-ms", 0.001),
    ("x-ms-retry-after-ms", 0.001),
    ("retry-after", 1.0),
)


def retry_after_s(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The wait a server asked for: ``retry-after-ms``, ``x-ms-retry-after-ms``, then
    ``Retry-After`` (seconds or an HTTP date); the first readable one wins, None when
    none is. ``headers`` is looked up in lower case (httpx's headers ignore case)."""
    for header, scale in _RETRY_AFTER_HEADERS:
        raw = headers.get(header)
        if scale == 1.0:
            seconds = parse_retry_after(raw, now=now)
        else:
            seconds = _number(raw)
            seconds = seconds * scale if seconds is not None else None
        if seconds is not None:
            return seconds
    return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from one ``Retry-After`` value (delta seconds or an HTTP date).

    None when absent or unreadable (a negative number is unreadable: the caller then uses
    its own backoff); a date in the past means 0.
    """
    if not value or not value.strip():
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates: RFC 5322 says UTC
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _number(value: str | None) -> float | None:
    """A finite, non-negative number of ``value``; None otherwise."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
