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
alert claims                see dynamodb_alerts.py
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
consistent: an export started within a second of a write may miss that write. Rollups
are read with strongly consistent Queries, one per day partition, several days in
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
rollups ``rollup_retention_days`` after their day, with no process running.
TTL deletes within a few days of expiry and reads return expired items until then;
``prune`` deletes the same items at once (BatchWriteItem), for a cut as exact as SQLite's.

Money is exact: nano-dollar integers are stored as DynamoDB Numbers and read back with
``int()``; the low-level client carries numbers as strings, so no float is ever involved.

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

import hashlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from huntaze_cli.errors import BackendError
from huntaze_cli.models import CostEvent, utcnow
from huntaze_cli.storage.aws.client import (
    THROTTLE_CODES,
    TableSetup,
    TableSpec,
    backoff,
    call_with_backoff,
    endpoint_of,
    error_code,
    error_message,
    make_client,
)
from huntaze_cli.storage.aws.dynamodb_usage import usage_from_item, usage_partition, usage_update
from huntaze_cli.storage.ledger import (
    COUNTER_FIELDS,
    DAILY_COUNTER_FIELDS,
    LATENCY_BUCKETS,
    SCOPE_RETENTION_DAYS,
    SLOT_SECONDS,
    Counters,
    DailyKey,
    DailyRollup,
    RecordResult,
    ScopeKey,
    SlotCost,
    SlotRollup,
    UsageRollup,
    aggregate,
    aggregate_scopes,
    aggregate_usage,
    daily_key,
    dedupe_batch,
    group_daily,
    group_scopes,
    group_slots,
    group_usage,
    retention_cutoff,
    scope_key,
    slot_of,
    usage_key,
)

if TYPE_CHECKING:
    from huntaze_cli.config import Config

GSI_NAME = "events_by_time"
TTL_ATTRIBUTE = "expires_at"
TABLE = TableSpec(
    "ledger", role="ledger", index=(GSI_NAME, "gpk", "gsk"), ttl_attribute=TTL_ATTRIBUTE
)

DAY_SECONDS = 86_400
MAX_TRANSACT_ITEMS = 100
# Rough byte budget of one transaction, well under DynamoDB's 4 MB (see _size_estimate).
MAX_TRANSACT_BYTES = 2_000_000
# Sort keys may hold 1024 bytes; longer ones are replaced by a digest (see _bounded).
MAX_SORT_KEY_BYTES = 1000

# Errors worth another try after a pause, as a whole call or as a transaction reason.
_RETRYABLE_CODES = THROTTLE_CODES | {
    "TransactionInProgressException",
    "TransactionConflictException",
}
_RETRYABLE_REASONS = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    }
)
_MAX_RETRIES = 8
_BACKOFF_BASE_S = 0.05
_BACKOFF_MAX_S = 2.0
# Parallel Queries when a read spans many day partitions (a month is ~32 of them).
_READ_THREADS = 8

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_OPTIONAL_EVENT_FIELDS = (
    "deployment", "response_model", "error_kind", "route_reason", "campaign_id", "account",
    "experiment", "arm",
)  # fmt: skip
_INT_EVENT_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "cost_nano")

_DAILY_SET = (
    "day",
    "provider",
    "model",
    "account",
    "campaign_id",
    "tenant",
    "response_model",
    TTL_ATTRIBUTE,
)
_DAILY_UPDATE = (
    "SET "
    + ", ".join(f"#{name} = :{name}" for name in _DAILY_SET)
    + " ADD "
    + ", ".join(f"#{name} :{name}" for name in DAILY_COUNTER_FIELDS)
)
_DAILY_NAMES = {f"#{name}": name for name in (*_DAILY_SET, *DAILY_COUNTER_FIELDS)}
_SLOT_SET = ("slot", "provider", TTL_ATTRIBUTE)
_SCOPE_SET = ("slot", "provider", "model", "account", "campaign_id", "tenant", TTL_ATTRIBUTE)
_SCOPE_UPDATE = (
    "SET "
    + ", ".join(f"#{name} = :{name}" for name in _SCOPE_SET)
    + " ADD "
    + ", ".join(f"#{name} :{name}" for name in COUNTER_FIELDS)
)
_SCOPE_NAMES = {f"#{name}": name for name in (*_SCOPE_SET, *COUNTER_FIELDS)}
_SLOT_NAMES = {f"#{name}": name for name in (*_SLOT_SET, *COUNTER_FIELDS)}

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
        self._create_tables = create_tables
        self._endpoint_hint = endpoint_url
        self._setup = TableSetup(TABLE, create=create_tables)
        self._lock = threading.Lock()
        self._indexed_days: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        # Throttling gets our own backoff (see _call).
        try:
            self._client: Any = make_client(
                "dynamodb",
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=3,
                read_timeout=10,
                max_pool_connections=_READ_THREADS * 2,
                # Client-side validation walks every attribute of every item: about 0.5 ms
                # per recorded event, more than all the rest of record(). The requests are
                # built here, and DynamoDB validates them anyway.
                parameter_validation=False,
            )
        except (BotoCoreError, ValueError) as exc:
            raise self._error(exc, "connect") from exc

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
        self._ensure_ready()
        cutoff = retention_cutoff(utcnow(), self.retention_days)
        fresh: list[CostEvent] = []
        for event in events:
            if event.ts < cutoff:
                result.expired += 1
            else:
                fresh.append(event)
        unique, result.duplicates = dedupe_batch(fresh)
        for chunk in _transaction_chunks(unique):
            self._index_days(chunk)
            result.add(self._write_chunk(chunk))
        return result

    def daily(self, since: date, until: date) -> list[DailyRollup]:
        """Daily rollups with ``since <= day < until``: one Query per day."""
        days = [since + timedelta(days=n) for n in range((until - since).days)]
        if not days:
            return []
        self._ensure_ready()
        pages = self._gather(lambda day: self._query_all(f"DAY#{day.isoformat()}"), days)
        rows = [_daily_from_item(item) for page in pages for item in page]
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
        rows = [_slot_from_item(item) for item in self._slot_items(since, until)]
        rows.sort(key=lambda r: (r.slot, r.provider))
        return rows

    def slot_costs(self, since: datetime, until: datetime) -> list[SlotCost]:
        """``(slot, provider, cost_nano)`` per quarter-hour rollup: projected Queries."""
        items = self._slot_items(since, until, projection=("slot", "provider", "cost_nano"))
        return sorted(
            (_int_of(item, "slot"), item["provider"]["S"], _int_of(item, "cost_nano"))
            for item in items
        )

    def _slot_items(
        self, since: datetime, until: datetime, *, projection: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        first = _ceil_to(_ceil_seconds(since), SLOT_SECONDS)
        last_second = _ceil_seconds(until) - 1  # slot < until  <=>  slot <= ceil(until) - 1
        last = last_second - last_second % SLOT_SECONDS
        if first > last:
            return []
        self._ensure_ready()
        # Same-width digits, and every sk has "#provider" after them, so this range holds
        # exactly the slots first..last (last + 1 is never a slot start).
        bounds = (f"{first:010d}", f"{last + 1:010d}")
        pages = self._gather(
            lambda day: list(
                self._query_iter(
                    f"SLOTDAY#{day.isoformat()}", between=bounds, projection=projection
                )
            ),
            _days_between(first, last),
        )
        return [item for page in pages for item in page]

    def usage(
        self, since: date, until: date, *, experiment: str | None = None
    ) -> list[UsageRollup]:
        """Usage rollups with ``since <= day < until``: one Query per day."""
        days = [since + timedelta(days=n) for n in range((until - since).days)]
        if not days:
            return []
        self._ensure_ready()
        pages = self._gather(lambda day: self._query_all(usage_partition(day.isoformat())), days)
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
        first = _ceil_to(_ceil_seconds(since), SLOT_SECONDS)
        last_second = _ceil_seconds(until) - 1
        last = last_second - last_second % SLOT_SECONDS
        if first > last:
            return []
        self._ensure_ready()
        bounds = (f"{first:010d}", f"{last + 1:010d}")
        pages = self._gather(
            lambda day: self._query_all(f"SCOPEDAY#{day.isoformat()}", between=bounds),
            _days_between(first, last),
        )
        rows = [(_scope_key_of(item), _counters_of(item)) for page in pages for item in page]
        return group_scopes(rows, since, until, group_by, where)

    def events(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[CostEvent]:
        """Raw events with ``since <= ts < until``, oldest first, streamed page by page."""
        self._ensure_ready()
        since_us = _micros(since) if since is not None else None
        until_us = _micros(until) if until is not None else None
        if since_us is not None and until_us is not None and since_us >= until_us:
            return
        first_day = _utc(since).date().isoformat() if since is not None else "0"
        last_day = (_utc(until) - _MICROSECOND).date().isoformat() if until is not None else "9"
        days = [
            item["sk"]["S"] for item in self._query_all("EVDAYS", between=(first_day, last_day))
        ]
        # As in slots(): all gsk have 16 digits then "#", so "<until_us>" bounds ts < until.
        bounds = (
            f"{since_us:016d}" if since_us is not None else "0",
            f"{until_us:016d}" if until_us is not None else "9" * 17,
        )
        for day in days:
            for item in self._query_iter(
                f"EVDAY#{day}", between=bounds, index=GSI_NAME, key=("gpk", "gsk")
            ):
                yield _event_from_item(item)

    def prune(self, now: datetime) -> None:
        """Delete raw events past retention and rollups past rollup retention, now.

        TTL deletes the same items on its own, days later; this makes the cut exact and
        immediate, with the same rules as the SQLite ledger: raw events with
        ``ts < now - retention_days``, daily rollups of days before the rollup cutoff's
        day, slot rollups of slots starting before the cutoff's slot. The day index items
        stay until TTL removes them: a writer may still hold them in its cache.
        """
        self._ensure_ready()
        cutoff = retention_cutoff(_utc(now), self.retention_days)
        cutoff_us, cutoff_day = _micros(cutoff), cutoff.date().isoformat()
        for item in self._query_all("EVDAYS", between=("0", cutoff_day)):
            day = item["sk"]["S"]
            old = self._query_iter(
                f"EVDAY#{day}",
                between=("0", f"{cutoff_us:016d}"),
                index=GSI_NAME,
                key=("gpk", "gsk"),
                projection=("pk", "sk"),
            )
            self._delete(old)
        rollup_cutoff = retention_cutoff(_utc(now), self.rollup_retention_days)
        rollup_day, rollup_slot = rollup_cutoff.date().isoformat(), slot_of(rollup_cutoff)
        for item in self._query_all("ROLLDAYS", between=("0", rollup_day)):
            day = item["sk"]["S"]
            if day < rollup_day:
                self._delete(self._query_iter(f"DAY#{day}", projection=("pk", "sk")))
                self._delete(self._query_iter(f"SLOTDAY#{day}", projection=("pk", "sk")))
                self._delete(self._query_iter(usage_partition(day), projection=("pk", "sk")))
            else:
                # The cutoff's own day: only the slots that start before the cutoff slot.
                bounds = ("0", f"{rollup_slot:010d}")
                self._delete(
                    self._query_iter(f"SLOTDAY#{day}", between=bounds, projection=("pk", "sk"))
                )

    def check(self) -> None:
        """Raise BackendError unless the table is usable: DescribeTable + a conditional write."""
        self._ensure_ready()
        table = self._call("describe_table", TableName=self.table)["Table"]
        TABLE.validate(self.table, table, self._endpoint(), create=self._create_tables)
        status = table.get("TableStatus")
        if status not in ("ACTIVE", "UPDATING"):
            raise BackendError(
                f"DynamoDB table {self.table!r} at {self._endpoint()} is {status}: "
                "wait until it is ACTIVE, or point [ledger] table at another table"
            )
        now = utcnow()
        # The condition proves conditional writes (which idempotency relies on) work, and
        # keeps the probe from overwriting an item that is not a probe.
        self._call(
            "put_item",
            TableName=self.table,
            Item={
                "pk": _s("HEALTH"),
                "sk": _s("CHECK"),
                "kind": _s("health"),
                "checked_at": _s(now.isoformat()),
                TTL_ATTRIBUTE: _n(_epoch(now) + DAY_SECONDS),
            },
            ConditionExpression="attribute_not_exists(pk) OR #kind = :kind",
            ExpressionAttributeNames={"#kind": "kind"},
            ExpressionAttributeValues={":kind": _s("health")},
        )

    def close(self) -> None:
        """Release the read threads and the HTTP connection pool."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._client.close()

    # --- table set-up ----------------------------------------------------------------

    def _ensure_ready(self) -> None:
        """Create the table on first use when asked to; otherwise trust it exists."""
        self._setup.ensure(self._client, self.table, self._error)

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
                expires = _day_epoch(day) + (keep_days + 2) * DAY_SECONDS
                item = {"pk": _s(partition), "sk": _s(day), TTL_ATTRIBUTE: _n(expires)}
                requests.append({"PutRequest": {"Item": item}})
        self._batch_write(requests)
        self._indexed_days.update(days)

    def _delete(self, keys: Iterable[dict[str, Any]]) -> None:
        self._batch_write({"DeleteRequest": {"Key": key}} for key in keys)

    def _batch_write(self, requests: Iterable[dict[str, Any]]) -> None:
        """BatchWriteItem in groups of 25, retrying what DynamoDB leaves unprocessed."""
        batch: list[dict[str, Any]] = []
        for request in requests:
            batch.append(request)
            if len(batch) == 25:
                self._batch_write_group(batch)
                batch = []
        if batch:
            self._batch_write_group(batch)

    def _batch_write_group(self, batch: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.table: batch}
        retries = 0
        while pending:
            answer = self._call("batch_write_item", RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if pending:
                if retries >= _MAX_RETRIES:
                    raise BackendError(
                        f"DynamoDB table {self.table!r} at {self._endpoint()} kept "
                        "throttling BatchWriteItem: retry later"
                    )
                _backoff(retries)
                retries += 1

    def _write_chunk(self, chunk: list[CostEvent]) -> RecordResult:
        """Commit one transaction's worth of events, dropping ids already stored."""
        result = RecordResult()
        pending = chunk
        retries = 0
        while pending:
            items = self._transaction_items(pending)
            try:
                self._client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                code = error_code(exc)
                if code == "TransactionCanceledException":
                    reasons = [
                        reason.get("Code") or "None"
                        for reason in exc.response.get("CancellationReasons") or []
                    ]
                    # The Puts come first, in the order of ``pending``.
                    duplicates = {
                        i
                        for i, reason in enumerate(reasons[: len(pending)])
                        if reason == "ConditionalCheckFailed"
                    }
                    retryable = any(reason in _RETRYABLE_REASONS for reason in reasons)
                    if duplicates:
                        result.duplicates += len(duplicates)
                        pending = [e for i, e in enumerate(pending) if i not in duplicates]
                    if retryable and retries < _MAX_RETRIES:
                        _backoff(retries)
                        retries += 1
                        continue
                    if duplicates and not retryable:
                        continue
                elif code in _RETRYABLE_CODES and retries < _MAX_RETRIES:
                    _backoff(retries)
                    retries += 1
                    continue
                raise self._error(exc, "TransactWriteItems") from exc
            except BotoCoreError as exc:
                raise self._error(exc, "TransactWriteItems") from exc
            result.stored += len(pending)
            break
        return result

    def _transaction_items(self, events: list[CostEvent]) -> list[dict[str, Any]]:
        daily, slots = aggregate(events)
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._event_item(event),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for event in events
        ]
        items.extend(self._daily_update(key, counters) for key, counters in daily.items())
        items.extend(self._slot_update(slot) for slot in slots.values())
        items.extend(
            usage_update(
                self.table,
                rollup,
                sort_key=_join_key(key[1:]),
                expires_at=_day_epoch(key[0]) + (self.rollup_retention_days + 1) * DAY_SECONDS,
                ttl_attribute=TTL_ATTRIBUTE,
            )
            for key, rollup in aggregate_usage(events).items()
        )
        items.extend(
            self._scope_update(key, counters) for key, counters in aggregate_scopes(events).items()
        )
        return items

    def _scope_update(self, key: ScopeKey, counters: Counters) -> dict[str, Any]:
        slot, provider, model, account, campaign_id, tenant = key
        day = datetime.fromtimestamp(slot, UTC).date().isoformat()
        keep_days = max(SCOPE_RETENTION_DAYS, self.retention_days)
        values = {
            ":slot": _n(slot),
            ":provider": _s(provider),
            ":model": _s(model),
            ":account": _s(account),
            ":campaign_id": _s(campaign_id),
            ":tenant": _s(tenant),
            f":{TTL_ATTRIBUTE}": _n(_day_epoch(day) + (keep_days + 1) * DAY_SECONDS),
        }
        for name in COUNTER_FIELDS:
            values[f":{name}"] = _n(getattr(counters, name))
        return {
            "Update": {
                "TableName": self.table,
                "Key": {
                    "pk": _s(f"SCOPEDAY#{day}"),
                    "sk": _s(_bounded(_join_key(key[1:]), prefix=f"{slot:010d}#")),
                },
                "UpdateExpression": _SCOPE_UPDATE,
                "ExpressionAttributeNames": _SCOPE_NAMES,
                "ExpressionAttributeValues": values,
            }
        }

    def _event_item(self, event: CostEvent) -> dict[str, Any]:
        ts_us = _micros(event.ts)
        item: dict[str, Any] = {
            "pk": _s(f"EVENT#{event.attempt_id}"),
            "sk": _s("E"),
            "gpk": _s(f"EVDAY#{event.ts.date().isoformat()}"),
            "gsk": _s(_bounded(event.attempt_id, prefix=f"{ts_us:016d}#")),
            "attempt_id": _s(event.attempt_id),
            "request_id": _s(event.request_id),
            "ts": _s(event.ts.isoformat()),
            "ts_us": _n(ts_us),
            "provider": _s(event.provider),
            "model": _s(event.model),
            "priced": {"BOOL": event.priced},
            "latency_ms": _float_value(event.latency_ms),
            "status": _s(event.status),
            "tenant": _s(event.tenant),
            TTL_ATTRIBUTE: _n(_epoch(event.ts) + self.retention_days * DAY_SECONDS),
        }
        for name in _INT_EVENT_FIELDS:
            item[name] = _n(getattr(event, name))
        for name in _OPTIONAL_EVENT_FIELDS:
            value = getattr(event, name)
            if value is not None:
                item[name] = _s(value)
        return item

    def _daily_update(self, key: DailyKey, counters: Counters) -> dict[str, Any]:
        day, provider, model, account, campaign_id, tenant, response_model = key
        values = {
            ":day": _s(day),
            ":provider": _s(provider),
            ":model": _s(model),
            ":account": _s(account),
            ":campaign_id": _s(campaign_id),
            ":tenant": _s(tenant),
            ":response_model": _s(response_model),
            f":{TTL_ATTRIBUTE}": _n(
                _day_epoch(day) + (self.rollup_retention_days + 1) * DAY_SECONDS
            ),
        }
        for name in DAILY_COUNTER_FIELDS:
            values[f":{name}"] = _n(getattr(counters, name))
        return {
            "Update": {
                "TableName": self.table,
                # Without a response model the sort key is what it was before the
                # response model became a key, so older rollups keep adding up.
                "Key": {
                    "pk": _s(f"DAY#{day}"),
                    "sk": _s(_join_key(key[1:] if response_model else key[1:6])),
                },
                "UpdateExpression": _DAILY_UPDATE,
                "ExpressionAttributeNames": _DAILY_NAMES,
                "ExpressionAttributeValues": values,
            }
        }

    def _slot_update(self, slot: SlotRollup) -> dict[str, Any]:
        day = datetime.fromtimestamp(slot.slot, UTC).date().isoformat()
        values = {
            ":slot": _n(slot.slot),
            ":provider": _s(slot.provider),
            f":{TTL_ATTRIBUTE}": _n(
                _day_epoch(day) + (self.rollup_retention_days + 1) * DAY_SECONDS
            ),
        }
        for name in COUNTER_FIELDS:
            values[f":{name}"] = _n(getattr(slot.counters, name))
        adds = [f"#{name} :{name}" for name in COUNTER_FIELDS]
        names = dict(_SLOT_NAMES)
        # Only the buckets this batch touched: most of the 23 stay zero.
        for bucket, count in enumerate(slot.latency):
            if count:
                adds.append(f"#lat_{bucket} :lat_{bucket}")
                names[f"#lat_{bucket}"] = f"lat_{bucket}"
                values[f":lat_{bucket}"] = _n(count)
        expression = (
            "SET "
            + ", ".join(f"#{name} = :{name}" for name in _SLOT_SET)
            + " ADD "
            + ", ".join(adds)
        )
        return {
            "Update": {
                "TableName": self.table,
                "Key": {
                    "pk": _s(f"SLOTDAY#{day}"),
                    "sk": _s(f"{slot.slot:010d}#{slot.provider}"),
                },
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    # --- reads -----------------------------------------------------------------------

    def _query_all(
        self,
        partition: str,
        *,
        between: tuple[str, str] | None = None,
        index: str | None = None,
        key: tuple[str, str] = ("pk", "sk"),
    ) -> list[dict[str, Any]]:
        return list(self._query_iter(partition, between=between, index=index, key=key))

    def _query_iter(
        self,
        partition: str,
        *,
        between: tuple[str, str] | None = None,
        index: str | None = None,
        key: tuple[str, str] = ("pk", "sk"),
        projection: tuple[str, ...] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of one partition (optionally a sort-key range), page by page."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#p = :p",
            "ExpressionAttributeNames": {"#p": key[0]},
            "ExpressionAttributeValues": {":p": _s(partition)},
        }
        if projection is not None:
            names = {f"#a{n}": name for n, name in enumerate(projection)}
            params["ProjectionExpression"] = ", ".join(names)
            params["ExpressionAttributeNames"].update(names)
        if between is not None:
            params["KeyConditionExpression"] += " AND #s BETWEEN :lo AND :hi"
            params["ExpressionAttributeNames"]["#s"] = key[1]
            params["ExpressionAttributeValues"].update(
                {":lo": _s(between[0]), ":hi": _s(between[1])}
            )
        if index is not None:
            params["IndexName"] = index
        else:
            # Reports right after a write (thresholds, stats) must see it; index reads
            # cannot be strongly consistent.
            params["ConsistentRead"] = True
        while True:
            page = self._call("query", **params)
            yield from page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

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

    # --- calls and errors ------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> Any:
        """One client call with backoff on throttling; library errors become BackendError."""
        return call_with_backoff(
            self._client,
            operation,
            params,
            error=self._error,
            retry_codes=_RETRYABLE_CODES,
            max_retries=_MAX_RETRIES,
            base_s=_BACKOFF_BASE_S,
            max_s=_BACKOFF_MAX_S,
        )

    def _endpoint(self) -> str:
        return endpoint_of(getattr(self, "_client", None), self._endpoint_hint)

    def _error(self, exc: Exception, action: str) -> BackendError:
        """A one-line BackendError for ``exc`` naming the table, endpoint and next step."""
        resource = TABLE.resource(self.table, self._endpoint())
        if isinstance(exc, ClientError):
            code, message = error_code(exc), error_message(exc)
            if code == "ValidationException" and "index" in message.lower():
                return BackendError(
                    f"DynamoDB table {self.table!r} at {resource.where} has no index "
                    f"{GSI_NAME!r} ({message}): it was not created by huntaze; point [ledger] "
                    "table at a new name and set [ledger] create_tables = true"
                )
            if code == "TransactionCanceledException":
                reasons = [
                    f"{r.get('Code')}: {r.get('Message', '')}".strip(": ")
                    for r in exc.response.get("CancellationReasons") or []
                    if r.get("Code") not in (None, "None")
                ]
                message = "; ".join(dict.fromkeys(reasons)) or message
            if code in _RETRYABLE_CODES or code == "TransactionCanceledException":
                return resource.kept_failing(action, code, message, "; the write is idempotent")
        return resource.error(exc, action)


# --- item encoding ---------------------------------------------------------------------


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _float_value(value: float) -> dict[str, str]:
    """A float as an exact DynamoDB Number, or as a String when Numbers cannot hold it."""
    # repr() is the shortest decimal that reads back as the same float; DynamoDB Numbers
    # hold magnitudes 1e-130..1e125, which excludes inf (the model allows it) and extremes.
    if value == 0 or (math.isfinite(value) and 1e-100 < abs(value) < 1e100):
        return {"N": repr(value)}
    return {"S": repr(value)}


def _float_of(attr: dict[str, str]) -> float:
    return float(attr["N"] if "N" in attr else attr["S"])


def _int_of(item: dict[str, Any], name: str) -> int:
    attr = item.get(name)
    return int(attr["N"]) if attr else 0


def _str_of(item: dict[str, Any], name: str) -> str | None:
    attr = item.get(name)
    return attr["S"] if attr and "S" in attr else None


def _escape(part: str) -> str:
    """Make ``part`` free of the key separators so joined keys cannot collide."""
    return part.replace("%", "%25").replace("\x1e", "%1E").replace("\x1f", "%1F")


def _join_key(parts: Iterable[str]) -> str:
    return _bounded("\x1f".join(_escape(part) for part in parts))


def _bounded(key: str, *, prefix: str = "") -> str:
    """``prefix + key``, or ``prefix`` + a digest of ``key`` when too long for a sort key.

    The prefix (a timestamp, say) keeps its place in the sort order. Escaped keys never
    contain ``\\x1e``, so a digest key cannot equal a plain one. The item's attributes
    keep the full values; keys are never parsed back.
    """
    full = prefix + key
    if len(full) * 4 <= MAX_SORT_KEY_BYTES or len(full.encode()) <= MAX_SORT_KEY_BYTES:
        return full
    return prefix + "\x1e" + hashlib.sha256(key.encode()).hexdigest()


def _event_from_item(item: dict[str, Any]) -> CostEvent:
    data: dict[str, Any] = {
        "attempt_id": item["attempt_id"]["S"],
        "request_id": item["request_id"]["S"],
        "ts": datetime.fromisoformat(item["ts"]["S"]),
        "provider": item["provider"]["S"],
        "model": item["model"]["S"],
        "priced": item["priced"]["BOOL"],
        "latency_ms": _float_of(item["latency_ms"]),
        "status": item["status"]["S"],
        "tenant": item["tenant"]["S"],
    }
    for name in _INT_EVENT_FIELDS:
        data[name] = _int_of(item, name)
    for name in _OPTIONAL_EVENT_FIELDS:
        data[name] = _str_of(item, name)
    return CostEvent.model_validate(data)


def _counters_of(item: dict[str, Any]) -> Counters:
    return Counters(**{name: _int_of(item, name) for name in COUNTER_FIELDS})


def _daily_from_item(item: dict[str, Any]) -> DailyRollup:
    return DailyRollup(
        day=date.fromisoformat(item["day"]["S"]),
        provider=item["provider"]["S"],
        model=item["model"]["S"],
        account=_str_of(item, "account") or None,
        campaign_id=_str_of(item, "campaign_id") or None,
        tenant=item["tenant"]["S"],
        counters=_counters_of(item),
        response_model=_str_of(item, "response_model") or None,
    )


def _scope_key_of(item: dict[str, Any]) -> ScopeKey:
    return (
        _int_of(item, "slot"),
        item["provider"]["S"],
        item["model"]["S"],
        _str_of(item, "account") or "",
        _str_of(item, "campaign_id") or "",
        item["tenant"]["S"],
    )


def _slot_from_item(item: dict[str, Any]) -> SlotRollup:
    return SlotRollup(
        slot=_int_of(item, "slot"),
        provider=item["provider"]["S"],
        counters=_counters_of(item),
        latency=[_int_of(item, f"lat_{bucket}") for bucket in range(LATENCY_BUCKETS)],
    )


# --- batching, time and small helpers -------------------------------------------------


def _transaction_chunks(events: list[CostEvent]) -> Iterator[list[CostEvent]]:
    """Split events so that each chunk's Puts plus rollup updates fit one transaction."""
    chunk: list[CostEvent] = []
    keys: list[set[Any]] = [set(), set(), set(), set()]  # daily, slot, usage, scope
    size = 0
    for event in events:
        new: tuple[Any, ...] = (
            daily_key(event),
            (slot_of(event.ts), event.provider),
            usage_key(event),
            scope_key(event),
        )
        added = 1 + sum(key not in seen for key, seen in zip(new, keys, strict=True))
        event_size = _size_estimate(event)
        if chunk and (
            len(chunk) + sum(map(len, keys)) + added > MAX_TRANSACT_ITEMS
            or size + event_size > MAX_TRANSACT_BYTES
        ):
            yield chunk
            chunk, keys, size = [], [set(), set(), set(), set()], 0
        chunk.append(event)
        for key, seen in zip(new, keys, strict=True):
            seen.add(key)
        size += event_size
    if chunk:
        yield chunk


def _size_estimate(event: CostEvent) -> int:
    """An upper bound of the bytes an event adds to a transaction (Put + four updates)."""
    text = sum(
        len(value)
        for value in (
            event.attempt_id,
            event.request_id,
            event.provider,
            event.deployment,
            event.model,
            event.error_kind,
            event.route_reason,
            event.campaign_id,
            event.account,
            event.tenant,
            event.experiment,
            event.arm,
        )
        if value
    )
    # 4 bytes per character at most, in up to five items (the usage rollup's histograms
    # and sums add about 1 KB).
    return 3072 + 20 * text
    return 2048 + 16 * text  # 4 bytes per character at most, in up to four items


def _backoff(retries: int) -> None:
    backoff(retries, base_s=_BACKOFF_BASE_S, max_s=_BACKOFF_MAX_S)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _micros(moment: datetime) -> int:
    return (_utc(moment) - _EPOCH) // _MICROSECOND


def _epoch(moment: datetime) -> int:
    return _micros(moment) // 1_000_000


def _ceil_seconds(moment: datetime) -> int:
    return -(-_micros(moment) // 1_000_000)


def _ceil_to(value: int, step: int) -> int:
    return -(-value // step) * step


def _day_epoch(day: str) -> int:
    return _epoch(datetime.fromisoformat(day).replace(tzinfo=UTC))


def _days_between(first: int, last: int) -> list[date]:
    """The UTC days from the one holding epoch ``first`` to the one holding ``last``."""
    start = datetime.fromtimestamp(first, UTC).date()
    end = datetime.fromtimestamp(last, UTC).date()
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]
