"""The injectable clock and the one datetime <-> epoch-microseconds conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from huntaze_cli.clock import SYSTEM_CLOCK, ManualClock, from_micros, micros, seconds_to_micros


def test_manual_clock_moves_only_when_told() -> None:
    start = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
    clock = ManualClock(start)
    mono = clock.monotonic()
    assert clock.now() == start and clock.time() == start.timestamp()
    clock.advance(90)
    clock.sleep(10)  # sleeping is advancing, at no cost
    assert clock.now() == start + timedelta(seconds=100)
    assert clock.monotonic() == mono + 100
    clock.sleep(-5)  # a negative wait is no wait
    assert clock.monotonic() == mono + 100
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="UTC offset"):
        ManualClock(datetime(2025, 1, 1))


def test_system_clock_is_the_real_time() -> None:
    before = datetime.now(UTC)
    now = SYSTEM_CLOCK.now()
    assert now.tzinfo is not None and before <= now <= datetime.now(UTC)
    first = SYSTEM_CLOCK.monotonic()
    assert SYSTEM_CLOCK.monotonic() >= first


def test_micros_are_exact_and_round_trip() -> None:
    moment = datetime(2025, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    assert micros(moment) == 1_764_072_000_123_456
    assert from_micros(micros(moment)) == moment
    # A naive datetime is UTC; another offset is the same instant.
    assert micros(moment.replace(tzinfo=None)) == micros(moment)
    assert micros(moment.astimezone(timezone(timedelta(hours=-5)))) == micros(moment)
    assert seconds_to_micros(1.5) == 1_500_000
