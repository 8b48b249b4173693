"""Time as a dependency: the one clock every component reads, and a clock tests move.

Whatever decides by the time (the circuit breaker's cooldown, queue delays and leases,
the rate limiter's window, the thresholds' periods) takes a ``Clock`` and defaults to
``SYSTEM_CLOCK``. Tests pass a ``ManualClock`` and ``advance`` it instead of sleeping,
so waiting out a 30 s cooldown costs nothing and no test depends on the machine's speed.

Also here: the one conversion between datetimes and integer microseconds since the epoch,
the unit the ledger and the rate limiter store instants in.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

US_PER_S = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Clock(Protocol):
    """Wall time, a monotonic time for intervals, and a way to wait."""

    def time(self) -> float:
        """Seconds since the epoch (wall clock): what is stored and compared across hosts."""
        ...

    def now(self) -> datetime:
        """The wall clock as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go back: for intervals in-process."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...


class SystemClock:
    """The machine's clocks; what every component uses unless a test passes another."""

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when told: ``advance``, or a ``sleep`` (which advances).

    Wall and monotonic time move together. ``start`` is the wall time it shows first
    (a datetime, or seconds since the epoch); the default is a fixed, round instant so
    that tests are reproducible.
    """

    def __init__(self, start: datetime | float = datetime(2025, 1, 1, tzinfo=UTC)) -> None:
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise ValueError("start must carry a UTC offset")
            start = start.timestamp()
        self._wall = float(start)
        self._mono = 1000.0

    def time(self) -> float:
        return self._wall

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall, UTC)

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (never back)."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, got {seconds}")
        self._wall += seconds
        self._mono += seconds


def micros(moment: datetime) -> int:
    """Exact microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MICROSECOND


def from_micros(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=us)


def seconds_to_micros(seconds: float) -> int:
    """Wall seconds (``Clock.time()``) as whole microseconds, rounded."""
    return round(seconds * US_PER_S)
