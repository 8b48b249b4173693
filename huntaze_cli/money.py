"""Exact money: amounts are integer nano-dollars inside huntaze, never floats.

A cost is computed once per provider attempt as a Decimal, rounded half-even to a whole
nano-dollar, and from then on only integers are added. Floats appear only at the very
edge, when a rounded amount is written as a JSON number.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANO_PER_USD = 1_000_000_000
_NANO = Decimal(NANO_PER_USD)
_PLACES = {places: Decimal(1).scaleb(-places) for places in range(10)}


def usd_to_nano(value: Decimal | str | int | float, *, field: str = "cost_usd") -> int:
    """Convert a dollar amount with at most 9 decimals to exact nano-dollars.

    A float is read by its shortest repr (what a JSON writer printed), never its binary value.

    Raises ValueError naming ``field`` when the amount is negative, not a number, or
    more precise than a nano-dollar (which would silently lose money).
    """
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{field}: {value!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{field}: {value!r} is not a finite number")
    if amount < 0:
        raise ValueError(f"{field}: {value!r} is negative")
    try:
        nano = amount * _NANO
        exact = nano == nano.to_integral_value()
    except ArithmeticError:  # decimal.Overflow for 1e999999999
        raise ValueError(f"{field}: {value!r} is too large") from None
    if not exact:
        raise ValueError(f"{field}: {value!r} has more than 9 decimals")
    return int(nano)


def round_to_nano(amount_usd: Decimal) -> int:
    """Round an exact Decimal dollar amount half-even to whole nano-dollars."""
    return int((amount_usd * _NANO).to_integral_value(rounding=ROUND_HALF_EVEN))


def nano_to_decimal(nano: int) -> Decimal:
    """The exact dollar amount of ``nano`` nano-dollars."""
    return Decimal(nano).scaleb(-9)


def nano_to_usd(nano: int, places: int = 6) -> float:
    """A JSON-ready dollar number rounded half-even to ``places`` decimals.

    The float is only a carrier for the rounded decimal: every value with up to 15
    significant digits round-trips exactly through ``repr``.
    """
    return float(nano_to_decimal(nano).quantize(_PLACES[places], rounding=ROUND_HALF_EVEN))


def format_usd(nano: int, places: int = 6) -> str:
    """A dollar amount for people: ``$1,234.567890``."""
    amount = nano_to_decimal(nano).quantize(_PLACES[places], rounding=ROUND_HALF_EVEN)
    return f"${amount:,.{places}f}"


def pct(part: int, whole: int) -> float:
    """``part`` as a percentage of ``whole`` rounded to 2 decimals (0 when whole is 0)."""
    if whole <= 0:
        return 0.0
    return float((Decimal(part) * 100 / Decimal(whole)).quantize(_PLACES[2], ROUND_HALF_EVEN))


def usd_text(nano: int) -> str:
    """The exact dollar amount as a plain decimal literal: ``0.0000129``, never ``1.29e-05``.

    No exponent and no trailing zeros, so JSON and CSV readers get the exact amount
    (JSON parsers that read numbers as Decimal, and ``usd_to_nano``, read it back exactly).
    """
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    text = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}.{text}" if text else f"{sign}{whole}"


def apportion(parts: list[int], unit: int) -> list[int]:
    """Round each of ``parts`` to a multiple of ``unit`` so that the rounded parts add up
    to their total rounded half-even to ``unit`` (largest-remainder method).

    Every part is first rounded down; the units left over go one each to the parts with
    the largest remainders (earlier parts first on ties). Parts must be >= 0. A table of
    rows rounded this way sums to its rounded total, which separate rounding does not
    promise (three rows of $0.0000005 would each show $0.000000 or $0.000001).
    """
    total = sum(parts)
    quotient, remainder = divmod(total, unit)
    if 2 * remainder > unit or (2 * remainder == unit and quotient % 2):
        quotient += 1
    floors = [part // unit for part in parts]
    left = quotient - sum(floors)
    order = sorted(range(len(parts)), key=lambda i: (-(parts[i] % unit), i))
    for index in order[:left]:
        floors[index] += 1
    return [units * unit for units in floors]


def shares_pct(parts: list[int]) -> list[float]:
    """Each part's share of the total in percent, 2 decimals, adding up to exactly 100
    (0 each when the total is 0)."""
    total = sum(parts)
    if total <= 0:
        return [0.0 for _ in parts]
    # Shares in 1/10,000ths of the total, apportioned like money: they add up to 10,000.
    scaled = [part * 10_000 for part in parts]
    return [units / total / 100 for units in apportion(scaled, total)]
