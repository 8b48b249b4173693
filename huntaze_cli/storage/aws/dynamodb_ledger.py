"""The cost ledger on DynamoDB, shared by every host and process that runs huntaze.

One table with string keys ``pk``/``sk``, on-demand billing and TTL on ``expires_at``:

==========================  ===============================  ===============================
item                        pk                               sk
==========================  ===============================  ===============================
raw cost event              ``EVENT#<attempt_id>``           ``E``
daily rollup                ``DAY#<yyyy-mm-dd>``             provider, model, account,
                                                             campaign, tenant (escaped,
                                                             joined by ``\\x1f``)
quarter-hour rollup         ``SLOTDAY#<yyyy-mm-dd>``         ``<slot epoch>#<provider>``
usage rollup                ``USAGEDAY#<yyyy-mm-dd>``        see dynamodb_usage.py
quarter-hour scope rollup   ``SCOPEDAY#<yyyy-mm-dd>``        ``<slot epoch>#`` + provider,
                                                             model, account, campaign,
                                                             tenant (escaped, joined)
days holding raw events     ``EVDAYS``                       ``<yyyy-mm-dd>``
days holding rollups        ``ROLLDAYS``                     ``<yyyy-mm-dd>``
alert claims and history    see dynamodb_alerts.py
health probe                ``HEALTH``                       ``CHECK``
==========================  ===============================  ===============================

Raw events are keyed by ``attempt_id`` alone, so "store once" is a conditional Put
(``attribute_not_exists(pk)``) whatever else the event says. To export them in time order
without a Scan (which would also read every rollup, in no order) each event carries the
keys of a sparse global secondary index, ``events_by_time``: ``gpk = EVDAY#<UTC day>`` and
``gsk = <ts in microseconds, 16 digits>#<attempt_id>``. Only event items have these
attributes, so the index holds nothing else. One partition per UTC day keeps a day's
events sorted, spreads the write load over days, and lets ``events`` read day after day
with one paginated Query each. The ``EVDAYS`` and ``ROLLDAYS`` items say which days hold
events and rollups, so an export without bounds, or ``prune``, visits only those days; a
process writes a day's items (once) before the first transaction that stores an event of
that day, so a reader that sees an event also finds its day. The index is eventually
consistent: an export started within a second of a write may miss that write. Rollups and
alerts are read with strongly consistent Queries, one per day partition, several days in
parallel threads.

``record`` writes up to 100 items per ``TransactWriteItems``: one conditional Put per new
event plus one ``ADD`` update per rollup item the batch touches (increments aggregated, as
an item may appear once per transaction). When a Put's condition fails, the cancellation
reasons name the duplicates; they are dropped and the rest is retried, so rollups count
each event once. Every writer updates the same rollup items, so concurrent transactions
are cancelled with ``TransactionConflict`` now and then; they are retried with jittered
exponential backoff, like throttling. A batch larger than one transaction is committed
transaction by transaction: if ``record`` fails half-way, calling it again with the same
events stores exactly what is missing.

Retention is DynamoDB's TTL: raw events expire ``retention_days`` after their timestamp,
rollups and alerts ``rollup_retention_days`` after their day, with no process running.
TTL deletes within a few days of expiry and reads return expired items until then;
``prune`` deletes the same items at once (BatchWriteItem), for a cut as exact as SQLite's.

Money is exact: nano-dollar integers are stored as DynamoDB Numbers and read back with
``int()``; the low-level client carries numbers as strings, so no float is ever involved.

This module holds the ledger's logic; how its items are encoded and decoded is in
``dynamodb_items``, and the client, table set-up, backoff and paged queries it shares with
the DynamoDB rate limiter are in ``dynamodb_table``.

IAM actions needed on ``arn:aws:dynamodb:<region>:<account>:table/<table>`` and
``.../table/<table>/index/*``:

* always: ``dynamodb:DescribeTable``, ``dynamodb:PutItem``, ``dynamodb:UpdateItem``,
  ``dynamodb:GetItem``, ``dynamodb:Query``, ``dynamodb:BatchWriteItem`` (day indexes and
  ``prune``). ``TransactWriteItems`` has no IAM action of its own: DynamoDB authorises
  the Put and Update inside it as PutItem and UpdateItem.
* with ``[ledger] create_tables = true`` also: ``dynamodb:CreateTable``,
  ``dynamodb:DescribeTimeToLive``, ``dynamodb:UpdateTimeToLive``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from huntaze_cli.clock import SYSTEM_CLOCK, from_micros, micros
from huntaze_cli.errors import BackendError
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.aws.client import (
    TableSpec,
    error_code,
    error_message,
)
from huntaze_cli.storage.aws.dynamodb_items import (
    DAY_SECONDS,
    TTL_ATTRIBUTE,
    attr_n,
    attr_s,
    ceil_seconds,
    ceil_to,
    daily_from_item,
    day_epoch,
    days_between,
    epoch_seconds,
    event_from_item,
    int_of,
    scope_key_of,
    scope_slot_of,
    slot_from_item,
    transaction_chunks,
    transaction_items,
    utc,
)
from huntaze_cli.storage.aws.dynamodb_table import (
    TRANSACTION_RETRY_CODES,
    DynamoDBTable,
    kept_failing,
)
from huntaze_cli.storage.aws.dynamodb_usage import usage_from_item, usage_partition
from huntaze_cli.storage.ledger import (
    COUNTER_FIELDS,
    SLOT_SECONDS,
    Counters,
    DailyRollup,
    RecordResult,
    SlotCost,
    SlotRollup,
    UsageRollup,
    dedupe_batch,
    group_daily,
    group_scope_slots,
    group_scopes,
    group_slots,
    group_usage,
    retention_cutoff,
    slot_of,
)

if TYPE_CHECKING:
    from huntaze_cli.config import Config

GSI_NAME = "events_by_time"
TABLE = TableSpec(
    "ledger", role="ledger", index=(GSI_NAME, "gpk", "gsk"), ttl_attribute=TTL_ATTRIBUTE
)

_MAX_RETRIES = 8
_BACKOFF_BASE_S = 0.05
_BACKOFF_MAX_S = 2.0
# Parallel Queries when a read spans many day partitions (a month is ~32 of them).
_READ_THREADS = 8

T = TypeVar("T")
R = TypeVar("R")


class DynamoDBLedger:
    """The ``Ledger`` protocol on one DynamoDB table, safe across processes and hosts."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None,
        endpoint_url: str | None,
        create_tables: bool = False,
        retention_days: int = 30,
        rollup_retention_days: int = 400,
    ) -> None:
        self.table = table
        self.retention_days = retention_days
        self.rollup_retention_days = rollup_retention_days
        self._lock = threading.Lock()
        self._indexed_days: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._db = DynamoDBTable(
            TABLE,
            table,
            region=region,
            endpoint_url=endpoint_url,
            create=create_tables,
            connect_timeout=3,
            read_timeout=10,
            max_retries=_MAX_RETRIES,
            base_s=_BACKOFF_BASE_S,
            max_s=_BACKOFF_MAX_S,
            retry_codes=TRANSACTION_RETRY_CODES,
            explain=_explain,
            max_pool_connections=_READ_THREADS * 2,
            # Client-side validation walks every attribute of every item: about 0.5 ms
            # per recorded event, more than all the rest of record(). The requests are
            # built here, and DynamoDB validates them anyway.
            parameter_validation=False,
        )

    @classmethod
    def from_config(cls, config: Config) -> DynamoDBLedger:
        """The ledger ``[ledger]`` describes (``backend = "dynamodb"``)."""
        ledger = config.ledger
        return cls(
            ledger.table,
            region=ledger.region,
            endpoint_url=ledger.endpoint_url,
            create_tables=ledger.create_tables,
            retention_days=ledger.retention_days,
            rollup_retention_days=ledger.rollup_retention_days,
        )

    # --- Ledger protocol -------------------------------------------------------------

    def record(self, events: Sequence[CostEvent]) -> RecordResult:
        """Store events not yet stored and add them to the rollups, atomically per event."""
        result = RecordResult()
        if not events:
            return result
        self._db.ensure_ready()
        cutoff = retention_cutoff(SYSTEM_CLOCK.now(), self.retention_days)
        fresh: list[CostEvent] = []
        for event in events:
            if event.ts < cutoff:
                result.expired += 1
            else:
                fresh.append(event)
        unique, result.duplicates = dedupe_batch(fresh)
        for chunk in transaction_chunks(unique):
            self._index_days(chunk)
            result.add(self._write_chunk(chunk))
        return result

    def daily(self, since: date, until: date) -> list[DailyRollup]:
        """Daily rollups with ``since <= day < until``: one Query per day."""
        days = [since + timedelta(days=n) for n in range((until - since).days)]
        if not days:
            return []
        self._db.ensure_ready()
        pages = self._gather(lambda day: self._db.query_all(f"DAY#{day.isoformat()}"), days)
        rows = [daily_from_item(item) for page in pages for item in page]
        rows.sort(
            key=lambda r: (
                r.day,
                r.provider,
                r.model,
                r.account or "",
                r.campaign_id or "",
                r.tenant,
            )
        )
        return rows

    def daily_groups(
        self, since: date, until: date, group_by: Sequence[str]
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        """Daily rollups with ``since <= day < until`` summed by GROUP_FIELDS keys.

        DynamoDB cannot group server-side; the rollups are few (one per key and day), so
        summing them here costs what reading them costs.
        """
        return group_daily(self.daily(since, until), group_by)

    def slot_groups(
        self, ranges: Sequence[tuple[datetime, datetime]]
    ) -> list[dict[str, SlotRollup]]:
        """Per range, slot rollups summed by provider: one read of the whole span."""
        if not ranges:
            return []
        since = min(start for start, _ in ranges)
        until = max(end for _, end in ranges)
        return group_slots(self.slots(since, until), ranges)

    def slots(self, since: datetime, until: datetime) -> list[SlotRollup]:
        """Quarter-hour rollups whose slot starts in ``[since, until)``: one Query per day."""
        rows = [slot_from_item(item) for item in self._slot_items(since, until)]
        rows.sort(key=lambda r: (r.slot, r.provider))
        return rows

    def slot_costs(self, since: datetime, until: datetime) -> list[SlotCost]:
        """``(slot, provider, cost_nano)`` per quarter-hour rollup: projected Queries."""
        items = self._slot_items(since, until, projection=("slot", "provider", "cost_nano"))
        return sorted(
            (int_of(item, "slot"), item["provider"]["S"], int_of(item, "cost_nano"))
            for item in items
        )

    def _slot_items(
        self,
        since: datetime,
        until: datetime,
        *,
        prefix: str = "SLOTDAY#",
        projection: tuple[str, ...] | None = None,
    ) -> list[dict[str, Any]]:
        """Items of quarter-hour slots in ``[since, until)``, from the day partitions
        ``<prefix><day>`` (slot rollups, or scope rollups with ``SCOPEDAY#``)."""
        first = ceil_to(ceil_seconds(since), SLOT_SECONDS)
        last_second = ceil_seconds(until) - 1  # slot < until  <=>  slot <= ceil(until) - 1
        last = last_second - last_second % SLOT_SECONDS
        if first > last:
            return []
        self._db.ensure_ready()
        # Same-width digits, and every sk has "#provider" after them, so this range holds
        # exactly the slots first..last (last + 1 is never a slot start).
        bounds = (f"{first:010d}", f"{last + 1:010d}")
        pages = self._gather(
            lambda day: list(
                self._db.query_iter(
                    f"{prefix}{day.isoformat()}", between=bounds, projection=projection
                )
            ),
            days_between(first, last),
        )
        return [item for page in pages for item in page]

    def usage(
        self, since: date, until: date, *, experiment: str | None = None
    ) -> list[UsageRollup]:
        """Usage rollups with ``since <= day < until``: one Query per day."""
        days = [since + timedelta(days=n) for n in range((until - since).days)]
        if not days:
            return []
        self._db.ensure_ready()
        pages = self._gather(lambda day: self._db.query_all(usage_partition(day.isoformat())), days)
        rows = [usage_from_item(item) for page in pages for item in page]
        if experiment is not None:
            rows = [row for row in rows if row.experiment == experiment]
        return rows

    def usage_groups(
        self,
        since: date,
        until: date,
        group_by: Sequence[str],
        *,
        experiment: str | None = None,
    ) -> list[UsageRollup]:
        """Usage rollups summed by USAGE_GROUPS keys, here: DynamoDB cannot group."""
        return group_usage(self.usage(since, until, experiment=experiment), group_by)

    def scope_groups(
        self,
        since: datetime,
        until: datetime,
        group_by: Sequence[str],
        where: Mapping[str, str] | None = None,
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        """Scope rollups in ``[since, until)``: one Query per day, filtered and summed here."""
        rows = [
            (scope_key_of(item), Counters(**{n: int_of(item, n) for n in COUNTER_FIELDS}))
            for item in self._slot_items(since, until, prefix="SCOPEDAY#")
        ]
        return group_scopes(rows, since, until, group_by, where)

    def scope_slot_groups(
        self, ranges: Sequence[tuple[datetime, datetime]], where: Mapping[str, str]
    ) -> list[dict[str, SlotRollup]]:
        """Per range, scope rollups matching ``where`` summed by provider, with latency:
        one read of the whole span (one Query per day), filtered and summed here."""
        if not ranges:
            return []
        since = min(start for start, _ in ranges)
        until = max(end for _, end in ranges)
        items = self._slot_items(since, until, prefix="SCOPEDAY#")
        return group_scope_slots(map(scope_slot_of, items), ranges, where)

    def events(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[CostEvent]:
        """Raw events with ``since <= ts < until``, oldest first, streamed page by page."""
        self._db.ensure_ready()
        since_us = micros(since) if since is not None else None
        until_us = micros(until) if until is not None else None
        if since_us is not None and until_us is not None and since_us >= until_us:
            return
        first_day = utc(since).date().isoformat() if since is not None else "0"
        last_day = from_micros(micros(until) - 1).date().isoformat() if until is not None else "9"
        days = [
            item["sk"]["S"] for item in self._db.query_all("EVDAYS", between=(first_day, last_day))
        ]
        # As in slots(): all gsk have 16 digits then "#", so "<until_us>" bounds ts < until.
        bounds = (
            f"{since_us:016d}" if since_us is not None else "0",
            f"{until_us:016d}" if until_us is not None else "9" * 17,
        )
        for day in days:
            for item in self._db.query_iter(
                f"EVDAY#{day}", between=bounds, index=GSI_NAME, key=("gpk", "gsk")
            ):
                yield event_from_item(item)

    def prune(self, now: datetime) -> None:
        """Delete raw events past retention and rollups past rollup retention, now.

        TTL deletes the same items on its own, days later; this makes the cut exact and
        immediate, with the same rules as the SQLite ledger: raw events with
        ``ts < now - retention_days``, daily rollups of days before the rollup cutoff's
        day, slot rollups of slots starting before the cutoff's slot. The day index items
        stay until TTL removes them: a writer may still hold them in its cache.
        """
        self._db.ensure_ready()
        cutoff = retention_cutoff(utc(now), self.retention_days)
        cutoff_us, cutoff_day = micros(cutoff), cutoff.date().isoformat()
        for item in self._db.query_all("EVDAYS", between=("0", cutoff_day)):
            day = item["sk"]["S"]
            old = self._db.query_iter(
                f"EVDAY#{day}",
                between=("0", f"{cutoff_us:016d}"),
                index=GSI_NAME,
                key=("gpk", "gsk"),
                projection=("pk", "sk"),
            )
            self._db.delete(old)
        rollup_cutoff = retention_cutoff(utc(now), self.rollup_retention_days)
        rollup_day, rollup_slot = rollup_cutoff.date().isoformat(), slot_of(rollup_cutoff)
        for item in self._db.query_all("ROLLDAYS", between=("0", rollup_day)):
            day = item["sk"]["S"]
            if day < rollup_day:
                self._db.delete(self._db.query_iter(f"DAY#{day}", projection=("pk", "sk")))
                self._db.delete(self._db.query_iter(f"SLOTDAY#{day}", projection=("pk", "sk")))
                self._db.delete(self._db.query_iter(usage_partition(day), projection=("pk", "sk")))
            else:
                # The cutoff's own day: only the slots that start before the cutoff slot.
                bounds = ("0", f"{rollup_slot:010d}")
                self._db.delete(
                    self._db.query_iter(f"SLOTDAY#{day}", between=bounds, projection=("pk", "sk"))
                )

    def check(self) -> None:
        """Raise BackendError unless the table is usable: DescribeTable + a conditional write."""
        self._db.ensure_ready()
        table = self._db.call("describe_table", TableName=self.table)["Table"]
        TABLE.validate(self.table, table, self._db.endpoint(), create=self._db.create)
        status = table.get("TableStatus")
        if status not in ("ACTIVE", "UPDATING"):
            raise BackendError(
                f"DynamoDB table {self.table!r} at {self._db.endpoint()} is {status}: "
                "wait until it is ACTIVE, or point [ledger] table at another table"
            )
        now = SYSTEM_CLOCK.now()
        # The condition proves conditional writes (which idempotency relies on) work, and
        # keeps the probe from overwriting an item that is not a probe.
        self._db.call(
            "put_item",
            TableName=self.table,
            Item={
                "pk": attr_s("HEALTH"),
                "sk": attr_s("CHECK"),
                "kind": attr_s("health"),
                "checked_at": attr_s(now.isoformat()),
                TTL_ATTRIBUTE: attr_n(epoch_seconds(now) + DAY_SECONDS),
            },
            ConditionExpression="attribute_not_exists(pk) OR #kind = :kind",
            ExpressionAttributeNames={"#kind": "kind"},
            ExpressionAttributeValues={":kind": attr_s("health")},
        )

    def close(self) -> None:
        """Release the read threads and the HTTP connection pool."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._db.close()

    # --- writes ----------------------------------------------------------------------

    def _index_days(self, events: Iterable[CostEvent]) -> None:
        """Note the UTC days of ``events`` in the day indexes, once per day and process.

        ``EVDAYS`` lists days with raw events (for ``events`` and ``prune``), ``ROLLDAYS``
        days with rollups (for ``prune``); each lives as long as what it points to.
        """
        days = sorted({event.ts.date().isoformat() for event in events} - self._indexed_days)
        requests = []
        for day in days:
            for partition, keep_days in (
                ("EVDAYS", self.retention_days),
                ("ROLLDAYS", self.rollup_retention_days),
            ):
                expires = day_epoch(day) + (keep_days + 2) * DAY_SECONDS
                item = {"pk": attr_s(partition), "sk": attr_s(day), TTL_ATTRIBUTE: attr_n(expires)}
                requests.append({"PutRequest": {"Item": item}})
        self._db.batch_write(requests)
        self._indexed_days.update(days)

    def _write_chunk(self, chunk: list[CostEvent]) -> RecordResult:
        """Commit one transaction's worth of events, dropping ids already stored."""
        stored = self._db.transact(
            chunk,
            lambda pending: transaction_items(
                self.table,
                pending,
                retention_days=self.retention_days,
                rollup_retention_days=self.rollup_retention_days,
            ),
        )
        # A Put's condition fails only for an attempt id already stored.
        return RecordResult(stored=len(stored), duplicates=len(chunk) - len(stored))

    # --- reads -----------------------------------------------------------------------

    def _gather(self, fn: Callable[[T], R], keys: Sequence[T]) -> list[R]:
        """``[fn(k) for k in keys]``, in parallel threads when there are several keys."""
        if len(keys) <= 1:
            return [fn(key) for key in keys]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=_READ_THREADS, thread_name_prefix="huntaze-dynamodb"
                )
            pool = self._pool
        return list(pool.map(fn, keys))


def _explain(exc: ClientError, action: str, table: DynamoDBTable) -> BackendError | None:
    """The ledger's wording for a missing index and for writes that kept failing."""
    code, message = error_code(exc), error_message(exc)
    if code == "ValidationException" and "index" in message.lower():
        return BackendError(
            f"DynamoDB table {table.name!r} at {table.endpoint()} has no index "
            f"{GSI_NAME!r} ({message}): it was not created by huntaze; point [ledger] "
            "table at a new name and set [ledger] create_tables = true"
        )
    return kept_failing(exc, action, table, note="; the write is idempotent")
