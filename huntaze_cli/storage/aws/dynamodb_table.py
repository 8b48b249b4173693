"""One of huntaze's DynamoDB tables as a store uses it: the plumbing the ledger, the alert
store and the campaign table share.

``DynamoDBTable`` holds the low-level client (short timeouts, see ``make_client``), makes
the table ready on first use (``TableSetup``), makes every call with jittered backoff on
throttling, turns botocore errors into one-line ``BackendError``s naming the table and
endpoint, reads partitions page by page, and commits transactions of conditional writes
(``transact``: the writes whose condition failed are dropped, the rest committed). The
stores keep only what is theirs: item layout, conditions, and the few error messages only
they can word.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from huntaze_cli.errors import BackendError
from huntaze_cli.storage.aws.client import (
    THROTTLE_CODES,
    Resource,
    TableSetup,
    TableSpec,
    backoff,
    call_with_backoff,
    endpoint_of,
    error_code,
    error_message,
    make_client,
)

T = TypeVar("T")

# A store's own wording for some ClientErrors: (exc, action, table) -> error, or None
# for the generic message.
Explain = Callable[[ClientError, str, "DynamoDBTable"], BackendError | None]

BATCH_WRITE_ITEMS = 25  # DynamoDB's limit per BatchWriteItem

# Errors worth another try after a pause for a store that writes in transactions: as the
# code of a whole call, or as a reason a transaction was cancelled.
TRANSACTION_RETRY_CODES = THROTTLE_CODES | {
    "TransactionInProgressException",
    "TransactionConflictException",
}
TRANSACTION_RETRY_REASONS = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    }
)


class DynamoDBTable:
    """A client bound to one table: set-up, calls with backoff, errors, queries."""

    def __init__(
        self,
        spec: TableSpec,
        name: str,
        *,
        region: str | None,
        endpoint_url: str | None,
        create: bool,
        connect_timeout: float,
        read_timeout: float,
        max_retries: int,
        base_s: float,
        max_s: float,
        retry_codes: frozenset[str] = THROTTLE_CODES,
        raw_codes: frozenset[str] = frozenset(),
        explain: Explain | None = None,
        **client_options: Any,
    ) -> None:
        """``retry_codes`` are retried up to ``max_retries`` times after a jittered pause
        from ``base_s`` to ``max_s``; ``raw_codes`` reach the caller as ClientError (a
        failed condition it handles itself). ``client_options`` go to botocore's Config."""
        self.spec = spec
        self.name = name
        self.create = create
        self.max_retries = max_retries
        self._base_s = base_s
        self._max_s = max_s
        self._retry_codes = retry_codes
        self._raw_codes = raw_codes
        self._explain = explain
        self._endpoint_hint = endpoint_url
        self._setup = TableSetup(spec, create=create)
        self.client: Any = None
        # Throttling gets our own backoff (see call), not botocore's.
        try:
            self.client = make_client(
                "dynamodb",
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                **client_options,
            )
        except (BotoCoreError, ValueError) as exc:
            raise self.error(exc, "connect") from exc

    # --- errors ----------------------------------------------------------------------

    def endpoint(self) -> str:
        return endpoint_of(self.client, self._endpoint_hint)

    def resource(self) -> Resource:
        return self.spec.resource(self.name, self.endpoint())

    def error(self, exc: Exception, action: str) -> BackendError:
        """A one-line BackendError for ``exc`` naming the table, endpoint and next step."""
        if isinstance(exc, ClientError) and self._explain is not None:
            special = self._explain(exc, action, self)
            if special is not None:
                return special
        return self.resource().error(exc, action)

    # --- calls -----------------------------------------------------------------------

    def ensure_ready(self) -> None:
        """Create the table on first use when asked to; otherwise trust it exists.

        Without ``create`` a missing table surfaces on the first real call.
        """
        self._setup.ensure(self.client, self.name, self.error)

    def call(self, operation: str, **params: Any) -> Any:
        """One client call with backoff on throttling; library errors become BackendError."""
        return call_with_backoff(
            self.client,
            operation,
            params,
            error=self.error,
            retry_codes=self._retry_codes,
            max_retries=self.max_retries,
            base_s=self._base_s,
            max_s=self._max_s,
            raw_codes=self._raw_codes,
        )

    def backoff(self, retries: int) -> None:
        """The pause before retry ``retries + 1`` of a write DynamoDB did not finish."""
        backoff(retries, base_s=self._base_s, max_s=self._max_s)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self.client.close()

    # --- reads -----------------------------------------------------------------------

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """One item, read strongly consistent; None when there is none."""
        found = self.call("get_item", TableName=self.name, Key=key, ConsistentRead=True)
        item: dict[str, Any] | None = found.get("Item")
        return item

    def query_iter(
        self,
        partition: str,
        *,
        between: tuple[str, str] | None = None,
        after: str | None = None,
        index: str | None = None,
        key: tuple[str, str] = ("pk", "sk"),
        projection: tuple[str, ...] | None = None,
        forward: bool = True,
        limit: int | None = None,
        where: tuple[str, dict[str, Any]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of one partition (optionally a sort-key range), page by page.

        ``between`` keeps sort keys in ``[lo, hi]``, ``after`` those above it; ``forward``
        false reads from the highest sort key down; ``limit`` stops after that many items
        (and asks for no larger pages). ``where`` is a filter expression and its values:
        DynamoDB still reads every item of the range, but returns only those matching.
        Table reads are strongly consistent (a report
        right after a write must see it); index reads cannot be.
        """
        if limit is not None and limit <= 0:
            return
        params: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": "#p = :p",
            "ExpressionAttributeNames": {"#p": key[0]},
            "ExpressionAttributeValues": {":p": {"S": partition}},
        }
        if not forward:
            params["ScanIndexForward"] = False
        if projection is not None:
            names = {f"#a{n}": name for n, name in enumerate(projection)}
            params["ProjectionExpression"] = ", ".join(names)
            params["ExpressionAttributeNames"].update(names)
        if between is not None:
            params["KeyConditionExpression"] += " AND #s BETWEEN :lo AND :hi"
            params["ExpressionAttributeNames"]["#s"] = key[1]
            params["ExpressionAttributeValues"].update(
                {":lo": {"S": between[0]}, ":hi": {"S": between[1]}}
            )
        elif after is not None:
            params["KeyConditionExpression"] += " AND #s > :after"
            params["ExpressionAttributeNames"]["#s"] = key[1]
            params["ExpressionAttributeValues"][":after"] = {"S": after}
        if where is not None:
            params["FilterExpression"] = where[0]
            params["ExpressionAttributeValues"].update(where[1])
        if index is not None:
            params["IndexName"] = index
        else:
            params["ConsistentRead"] = True
        left = limit
        while True:
            if left is not None:
                params["Limit"] = left
            page = self.call("query", **params)
            for item in page.get("Items", []):
                yield item
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def query_all(
        self,
        partition: str,
        *,
        between: tuple[str, str] | None = None,
        index: str | None = None,
        key: tuple[str, str] = ("pk", "sk"),
    ) -> list[dict[str, Any]]:
        return list(self.query_iter(partition, between=between, index=index, key=key))

    # --- transactions ----------------------------------------------------------------

    def commit(
        self,
        items: list[dict[str, Any]],
        *,
        retry_reasons: frozenset[str] = TRANSACTION_RETRY_REASONS,
    ) -> list[str] | None:
        """One TransactWriteItems: None when it committed, else the code of each item's
        cancellation reason (``"None"`` for an item that was not the cause) when a
        condition failed. Cancelled for a conflict or throttling, or throttled, it is
        retried after a jittered pause, up to ``max_retries`` times; anything else (those
        retries run out included) is raised as a BackendError.
        """
        retries = 0
        while True:
            try:
                self.client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                code = error_code(exc)
                if code == "TransactionCanceledException":
                    reasons = [
                        reason.get("Code") or "None"
                        for reason in exc.response.get("CancellationReasons") or []
                    ]
                    retryable = any(reason in retry_reasons for reason in reasons)
                    if retryable and retries < self.max_retries:
                        self.backoff(retries)
                        retries += 1
                        continue
                    if not retryable and "ConditionalCheckFailed" in reasons:
                        return reasons
                elif code in self._retry_codes and retries < self.max_retries:
                    self.backoff(retries)
                    retries += 1
                    continue
                raise self.error(exc, "TransactWriteItems") from exc
            except BotoCoreError as exc:
                raise self.error(exc, "TransactWriteItems") from exc
            return None

    def transact(
        self,
        writes: Sequence[T],
        items: Callable[[list[T]], list[dict[str, Any]]],
        *,
        retry_reasons: frozenset[str] = TRANSACTION_RETRY_REASONS,
    ) -> list[T]:
        """Commit ``items(pending)`` in one TransactWriteItems; returns the writes committed.

        ``items`` turns the writes still pending into the transaction: its first
        ``len(pending)`` items are theirs, in order (conditional Puts or Updates), and it
        may add more (rollups, a counter shard) sized to them. A write whose condition
        failed is dropped and the rest tried again; conflicts and throttling are retried
        as ``commit`` does.
        """
        pending = list(writes)
        while pending:
            reasons = self.commit(items(pending), retry_reasons=retry_reasons)
            if reasons is None:
                return pending
            failed = {
                i
                for i, reason in enumerate(reasons[: len(pending)])
                if reason == "ConditionalCheckFailed"
            }
            if not failed:
                # Only an item added by ``items`` failed its condition: nothing to drop.
                raise BackendError(
                    f"DynamoDB table {self.name!r} at {self.endpoint()}: TransactWriteItems "
                    f"was cancelled ({', '.join(reasons)})"
                )
            pending = [w for i, w in enumerate(pending) if i not in failed]
        return []

    # --- batch writes ----------------------------------------------------------------

    def batch_write(self, requests: Iterable[dict[str, Any]]) -> None:
        """BatchWriteItem in groups of 25, retrying what DynamoDB leaves unprocessed."""
        batch: list[dict[str, Any]] = []
        for request in requests:
            batch.append(request)
            if len(batch) == BATCH_WRITE_ITEMS:
                self._batch_write_group(batch)
                batch = []
        if batch:
            self._batch_write_group(batch)

    def delete(self, keys: Iterable[dict[str, Any]]) -> None:
        self.batch_write({"DeleteRequest": {"Key": key}} for key in keys)

    def _batch_write_group(self, batch: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.name: batch}
        retries = 0
        while pending:
            answer = self.call("batch_write_item", RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if pending:
                if retries >= self.max_retries:
                    raise BackendError(
                        f"DynamoDB table {self.name!r} at {self.endpoint()} kept "
                        "throttling BatchWriteItem: retry later"
                    )
                self.backoff(retries)
                retries += 1


def kept_failing(
    exc: ClientError, action: str, table: DynamoDBTable, *, note: str
) -> BackendError | None:
    """The error for a write still throttled, conflicting or cancelled after every retry
    (naming the cancellation reasons), or None for any other error. ``note`` says what
    the caller may rely on (``"; the write is idempotent"``)."""
    code, message = error_code(exc), error_message(exc)
    if code == "TransactionCanceledException":
        reasons = [
            f"{r.get('Code')}: {r.get('Message', '')}".strip(": ")
            for r in exc.response.get("CancellationReasons") or []
            if r.get("Code") not in (None, "None")
        ]
        message = "; ".join(dict.fromkeys(reasons)) or message
    if code in TRANSACTION_RETRY_CODES or code == "TransactionCanceledException":
        return table.resource().kept_failing(action, code, message, note)
    return None
