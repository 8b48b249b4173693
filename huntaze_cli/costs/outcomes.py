"""Reading campaign outcome files (CSV or JSONL) for `campaigns outcomes import`.

Each row names a campaign, a recipient, the revenue that fan brought (``revenue_usd``,
at most 9 decimals) and whether they converted. The whole file is validated before
anything is stored: a bad row stops the import naming its line, with nothing stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel

from huntaze_cli.costs.transfer import csv_records, jsonl_records
from huntaze_cli.errors import InputError
from huntaze_cli.money import usd_to_nano
from huntaze_cli.storage.sqlite.outcomes import Outcome

Format = Literal["csv", "jsonl"]
FIELDS = ("campaign_id", "recipient_id", "revenue_usd", "converted")
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}
MAX_ID = 256


class OutcomeImport(BaseModel):
    """What `campaigns outcomes import --json` prints."""

    read: int
    inserted: int
    updated: int
    unchanged: int


def _records(lines: Iterable[str], fmt: Format) -> Iterator[tuple[int, dict[str, Any] | str]]:
    if fmt == "jsonl":
        yield from jsonl_records(lines)
    else:
        yield from csv_records(lines, FIELDS)


def _outcome(record: dict[str, Any] | str) -> Outcome:
    if isinstance(record, str):
        raise ValueError(record)
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    unknown = [name for name in record if name not in FIELDS]
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field; expected {', '.join(FIELDS)}")
    ids = []
    for name in ("campaign_id", "recipient_id"):
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}: required, a non-empty text")
        if len(value) > MAX_ID:
            raise ValueError(f"{name}: longer than {MAX_ID} characters")
        ids.append(value)
    revenue = record.get("revenue_usd", 0)
    if isinstance(revenue, bool) or not isinstance(revenue, int | str | Decimal):
        raise ValueError("revenue_usd: must be a number")
    nano = usd_to_nano(
        revenue.strip() if isinstance(revenue, str) else revenue, field="revenue_usd"
    )
    converted = record.get("converted", False)
    if isinstance(converted, str):
        text = converted.strip().lower()
        if text not in _TRUE | _FALSE:
            raise ValueError(f"converted: {converted!r} is not true or false")
        converted = text in _TRUE
    elif isinstance(converted, int) and not isinstance(converted, bool) and converted in (0, 1):
        converted = bool(converted)
    elif not isinstance(converted, bool):
        raise ValueError("converted: must be true or false")
    return Outcome(ids[0], ids[1], nano, converted)


def read_outcomes(lines: Iterable[str], *, fmt: Format, source: str) -> list[Outcome]:
    """Every outcome of the file, validated; raises InputError naming the first bad line."""
    seen: dict[tuple[str, str], int] = {}
    out: list[Outcome] = []
    for number, record in _records(lines, fmt):
        try:
            outcome = _outcome(record)
            key = (outcome.campaign_id, outcome.recipient_id)
            if key in seen:
                raise ValueError(
                    f"campaign {key[0]!r}, recipient {key[1]!r} is already on line {seen[key]}"
                )
        except ValueError as exc:
            raise InputError(
                f"{source}: line {number}: {exc}; nothing was stored",
                hint="fix the line and run the import again",
            ) from None
        seen[key] = number
        out.append(outcome)
    return out
