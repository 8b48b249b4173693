"""The one backoff and the one Retry-After reader every retry loop uses."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from huntaze_cli.retry import backoff_s, parse_retry_after, retry_after_s


def test_backoff_doubles_from_base_up_to_the_cap_within_its_spread() -> None:
    rng = random.Random(7)
    for retries, ceiling in [(0, 0.25), (1, 0.5), (2, 1.0), (5, 8.0), (12, 8.0)]:
        delays = [backoff_s(retries, base_s=0.25, max_s=8.0, rng=rng) for _ in range(200)]
        # Equal jitter by default: half the capped delay plus a random half.
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling * 0.3  # really spread, not constant


def test_backoff_spread_can_add_instead_of_take() -> None:
    rng = random.Random(3)
    delays = [backoff_s(2, base_s=1.0, max_s=60.0, spread=(1.0, 1.2), rng=rng) for _ in range(200)]
    assert all(4.0 <= d <= 4.8 for d in delays)
    assert backoff_s(3, base_s=1.0, max_s=60.0, spread=(1.0, 1.0)) == 8.0


def test_backoff_uses_the_rng_it_is_given() -> None:
    one = [backoff_s(1, base_s=1.0, max_s=9.0, rng=random.Random(5)) for _ in range(3)]
    two = [backoff_s(1, base_s=1.0, max_s=9.0, rng=random.Random(5)) for _ in range(3)]
    assert one == two


NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-3", None),  # not a delay-seconds value: the caller's own backoff applies
        ("nan", None),
        ("inf", None),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # a date in the past: now
        ("tomorrow-ish", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_reads_milliseconds_headers_first_then_retry_after() -> None:
    later = format_datetime(datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_s({"retry-after": later}, now=NOW) == 30.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"x-ms-retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after-ms": "nan", "retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "-5"}) is None
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None
