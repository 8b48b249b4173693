"""Moving cost events in and out of a ledger: `costs export` and `costs import`.

Export streams raw events oldest first, amounts as exact decimals (JSON numbers and CSV
cells such as ``0.0000129``, never ``1.29e-05``). Import is idempotent (an attempt_id
already in the ledger changes nothing), so `costs export | costs import -` moves a ledger
between backends and can be re-run safely. Import trusts no cost: each is recomputed
from the event's usage with the orchestrator's price book (see ``import_events``).
Amounts are parsed as Decimal and must be exact to the nano-dollar.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TextIO

from pydantic import ValidationError

from huntaze_cli.errors import InputError
from huntaze_cli.models import EVENT_FIELDS, CostEvent, ImportReport, RepricedLine
from huntaze_cli.money import nano_to_usd, usd_text
from huntaze_cli.storage.ledger import Ledger, RecordResult

if TYPE_CHECKING:
    from huntaze_cli.config import Config

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
            record = event.to_record()
            record["cost_usd"] = usd_text(event.cost_nano)  # exact, never 1e-05
            writer.writerow({k: csv_cell(v) for k, v in record.items()})
            count += 1
        return count
    for event in ledger.events(since, until):
        out.write(event.to_json())
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
    "deployment", "response_model", "error_kind", "route_reason", "campaign_id", "account",
    "experiment", "arm", "budget_action", "cost_usd",
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


class Repricer:
    """Prices imported events as the orchestrator prices attempts: same PriceBook and overrides.

    A provider named in ``[providers]`` is priced by its kind; any other name is taken
    as the kind itself (``azure``, ``openai``), as on the host that recorded it.
    """

    def __init__(self, config: Config) -> None:
        from huntaze_cli.llm.pricing import PriceBook

        self._book = PriceBook(config.pricing.overrides)
        self._kinds = {name: cfg.kind for name, cfg in config.providers.items()}

    def cost_nano(self, event: CostEvent) -> int | None:
        """The cost of the event's usage, or None when its model has no known price."""
        from huntaze_cli.llm.types import Usage

        kind = self._kinds.get(event.provider, event.provider)
        price = self._book.served_price(event.provider, kind, event.model, event.response_model)
        if price is None:
            return None
        usage = Usage(event.input_tokens, event.cached_input_tokens, event.output_tokens)
        return self._book.cost_nano(price, usage)


REPORTED_LINES = 20


def import_events(
    ledger: Ledger,
    lines: Iterable[str],
    *,
    prices: Repricer,
    fmt: Format = "jsonl",
    trust_cost: bool = False,
    skip_bad: bool = False,
    on_bad: Callable[[int, str], None] | None = None,
) -> ImportReport:
    """Check, price and import events; a bad line stops the import before anything is stored.

    Every event's cost is recomputed from its usage (``prices``). A missing cost becomes
    the computed one, or the event is stored unpriced when its model has no price (never
    a priced $0). A given cost that differs is replaced by the computed one and reported
    (``repriced``), unless ``trust_cost``. The whole input is checked first (spooled to
    a temporary file), so a bad line raises InputError naming it and nothing of the
    input is stored; with ``skip_bad`` bad lines are reported and left out instead.
    """
    records = _csv_events(lines) if fmt == "csv" else jsonl_records(lines)
    report = ImportReport(
        read=0, imported=0, duplicates=0, expired=0, skipped_bad=0, trust_cost=trust_cost
    )
    latest = datetime.now(UTC) + MAX_CLOCK_SKEW
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        while True:
            try:
                number, record = next(records)
            except StopIteration:
                break
            except InputError as exc:  # bytes that are not UTF-8: the stream cannot go on
                raise InputError(
                    f"{exc.message}; nothing was imported",
                    hint="convert the file to UTF-8 and re-run",
                ) from None
            report.read += 1
            try:
                if isinstance(record, str):
                    raise ValueError(record)
                event, given = CostEvent.from_record(record)
                if event.ts > latest:
                    raise ValueError(
                        f"ts: {event.ts.isoformat()} is in the future (more than "
                        f"{int(MAX_CLOCK_SKEW.total_seconds())} s ahead of this clock); no "
                        "report would ever reach it"
                    )
            except (ValidationError, ValueError) as exc:
                reason = _explain(exc)
                if not skip_bad:
                    raise InputError(
                        f"line {number}: {reason}; nothing was imported",
                        hint="fix the line and re-run, or pass --skip-bad to leave bad lines out",
                    ) from None
                report.skipped_bad += 1
                if len(report.bad_lines) < 100:
                    report.bad_lines.append(number)
                if on_bad:
                    on_bad(number, reason)
                continue
            event = _priced(event, given, number, prices, trust_cost, report)
            spool.write(event.model_dump_json())
            spool.write("\n")
        spool.seek(0)
        _store(ledger, spool, report)
    return report


def _priced(
    event: CostEvent,
    given: int | None,
    number: int,
    prices: Repricer,
    trust_cost: bool,
    report: ImportReport,
) -> CostEvent:
    used = event.input_tokens or event.cached_input_tokens or event.output_tokens
    if not event.priced and not used:
        # Nothing to price (a call cut short by a crash, say): it stays unpriced, as
        # recorded, rather than becoming a priced $0.
        report.unpriced += 1
        return event
    computed = prices.cost_nano(event)
    if computed is None:
        if given is None or not event.priced:
            report.unpriced += 1
            return event.model_copy(update={"priced": False, "cost_nano": 0})
        return event  # a cost for a model we cannot price: kept as given
    if given is None or not event.priced:
        report.cost_computed += 1
        return event.model_copy(update={"priced": True, "cost_nano": computed})
    if given == computed or trust_cost:
        return event
    report.repriced += 1
    if len(report.repriced_lines) < REPORTED_LINES:
        report.repriced_lines.append(
            RepricedLine(
                line=number,
                attempt_id=event.attempt_id,
                given_usd=nano_to_usd(given, 9),
                given_nano=given,
                computed_usd=nano_to_usd(computed, 9),
                computed_nano=computed,
            )
        )
    return event.model_copy(update={"cost_nano": computed})


def _store(ledger: Ledger, spool: TextIO, report: ImportReport) -> None:
    """Record the checked events of ``spool`` (one CostEvent JSON per line) in batches."""
    result = RecordResult()
    batch: list[CostEvent] = []
    for line in spool:
        batch.append(CostEvent.model_validate_json(line))
        if len(batch) >= BATCH:
            result.add(ledger.record(batch))
            batch.clear()
    if batch:
        result.add(ledger.record(batch))
    report.imported = result.stored
    report.duplicates = result.duplicates
    report.expired = result.expired
