"""Moving cost events in and out of a ledger: `costs export` and `costs import`.

Export streams raw events oldest first. Import is idempotent (an attempt_id already in
the ledger changes nothing), so `costs export | costs import -` moves a ledger between
backends and can be re-run safely. Amounts are parsed as Decimal and must be exact to
the nano-dollar.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TextIO

from pydantic import ValidationError

from huntaze_cli.errors import InputError
from huntaze_cli.models import EVENT_FIELDS, CostEvent, ImportReport
from huntaze_cli.storage.ledger import Ledger, RecordResult

Format = Literal["jsonl", "csv"]
BATCH = 5000
# Hosts' clocks differ a little; an event further ahead than this is a wrong timestamp.
MAX_CLOCK_SKEW = timedelta(minutes=5)


def export_events(
    ledger: Ledger,
    out: TextIO,
    *,
    fmt: Format = "jsonl",
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Write every event in ``[since, until)`` to ``out``; returns how many."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EVENT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for event in ledger.events(since, until):
            writer.writerow({k: csv_cell(v) for k, v in event.to_record().items()})
            count += 1
        return count
    dumps = json.dumps
    for event in ledger.events(since, until):
        out.write(dumps(event.to_record(), ensure_ascii=False))
        out.write("\n")
        count += 1
    return count


# A spreadsheet runs a cell starting with one of these as a formula (=HYPERLINK(..)).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a formula-leading string gets a ``'``.

    Strings starting with ``'`` get one too, so ``csv_uncell`` restores every value
    exactly and `costs export --format csv | costs import --format csv -` round-trips.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_uncell(cell: str) -> str:
    """The value ``csv_cell`` wrote."""
    return cell[1:] if cell.startswith("'") else cell


def jsonl_records(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, object or error text) per non-blank line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON: {exc.msg} at column {exc.colno}"


def csv_records(
    lines: Iterable[str], fields: Collection[str]
) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number, cells by header name, or error text) per non-blank CSV row.

    The header may name only ``fields``; an unknown column stops at line 1.
    """
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield 1, f"invalid CSV header: {exc}"
        return
    unknown = [name for name in header if name not in fields]
    if unknown:
        yield 1, f"unknown column {unknown[0]!r} in the CSV header"
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, f"invalid CSV: {exc}"
            return
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield reader.line_num, f"expected {len(header)} columns, found {len(row)}"
            continue
        yield reader.line_num, dict(zip(header, row, strict=True))


_NULLABLE = {
    "deployment", "error_kind", "route_reason", "campaign_id", "account", "experiment", "arm"
}  # fmt: skip


def _csv_events(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, cells in csv_records(lines, EVENT_FIELDS):
        if isinstance(cells, str):
            yield number, cells
            continue
        record: dict[str, Any] = {}
        for name, cell in cells.items():
            if cell == "" and name in _NULLABLE:
                record[name] = None
            elif name == "priced":
                record[name] = {"true": True, "false": False}.get(cell.lower(), cell)
            else:
                record[name] = csv_uncell(cell)
        yield number, record


def _explain(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(part) for part in first["loc"]) or "event"
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        if loc == "cost_nano":  # held in nano-dollars inside; the file says cost_usd
            loc, message = "cost_usd", "out of range (at most 9,223,372,036.854775807)"
        return f"{loc}: {message}"
    return str(exc)


def import_events(
    ledger: Ledger,
    lines: Iterable[str],
    *,
    fmt: Format = "jsonl",
    skip_bad: bool = False,
    on_bad: Callable[[int, str], None] | None = None,
) -> ImportReport:
    """Import events; stop at the first bad line unless ``skip_bad``.

    Everything before a bad line is stored and nothing from it on, so fixing the line
    and re-running the same import completes it (already stored events are skipped).
    """
    records = _csv_events(lines) if fmt == "csv" else jsonl_records(lines)
    latest = datetime.now(UTC) + MAX_CLOCK_SKEW
    result = RecordResult()
    batch: list[CostEvent] = []
    read = skipped = 0
    bad_lines: list[int] = []

    def flush() -> None:
        if batch:
            result.add(ledger.record(batch))
            batch.clear()

    while True:
        try:
            number, record = next(records)
        except StopIteration:
            break
        except InputError as exc:  # bytes that are not UTF-8: the stream cannot go on
            flush()
            raise InputError(
                f"{exc.message}; {result.stored} new events before it were stored",
                hint="convert the file to UTF-8 and re-run (stored events are skipped)",
            ) from None
        read += 1
        try:
            if isinstance(record, str):
                raise ValueError(record)
            event = CostEvent.from_record(record)
            if event.ts > latest:
                raise ValueError(
                    f"ts: {event.ts.isoformat()} is in the future (more than "
                    f"{int(MAX_CLOCK_SKEW.total_seconds())} s ahead of this clock); no "
                    "report would ever reach it"
                )
        except (ValidationError, ValueError) as exc:
            reason = _explain(exc)
            if not skip_bad:
                read -= 1
                flush()
                raise InputError(
                    f"line {number}: {reason}; {result.stored} new events before it were "
                    "stored, none from it on",
                    hint="fix the line and re-run (stored events are skipped), or pass --skip-bad",
                ) from None
            skipped += 1
            if len(bad_lines) < 100:
                bad_lines.append(number)
            if on_bad:
                on_bad(number, reason)
            continue
        batch.append(event)
        if len(batch) >= BATCH:
            flush()
    flush()
    return ImportReport(
        read=read,
        imported=result.stored,
        duplicates=result.duplicates,
        expired=result.expired,
        skipped_bad=skipped,
        bad_lines=bad_lines,
    )
