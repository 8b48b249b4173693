"""The DynamoDB table behind the campaign store and the provider state (``[campaigns]``).

What the two share: one client, the table's set-up on first use, calls with backoff
and one-line errors, paged Queries of a partition (of the table, or of its ``lists``
index), and ``transact``: conditional writes committed together with a counter shard,
dropping the writes whose condition failed. The item layout is described in
dynamodb_campaigns.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from huntaze_cli.errors import BackendError
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

if TYPE_CHECKING:
    from huntaze_cli.config import Config

INDEX = "lists"
TTL_ATTRIBUTE = "expires_at"
TABLE = TableSpec(
    "campaigns", label="campaign table", role="campaign table", index=(INDEX, "lk", "ls")
)
SHARDS = 8  # counter items per campaign
MAX_RETRIES = 8
_RETRYABLE_CODES = THROTTLE_CODES | {
    "TransactionInProgressException",
    "TransactionConflictException",
}
_RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
_CONFLICT = frozenset({"ConditionalCheckFailedException"})


class CampaignTable:
    """One ``[campaigns]`` table: client, set-up, calls, queries and transactions."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        create_tables: bool = False,
        retention_days: int = 90,
    ) -> None:
        self.name = table
        self.retention_s = retention_days * 86_400
        self._endpoint_hint = endpoint_url
        self._setup = TableSetup(TABLE, create=create_tables)
        try:
            self._client: Any = make_client(
                "dynamodb",
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=2,
                read_timeout=30,
                max_pool_connections=16,
            )
        except (BotoCoreError, ValueError) as exc:
            raise self._error(exc, "connect") from exc

    @classmethod
    def from_config(cls, config: Config) -> CampaignTable:
        """The store ``[campaigns]`` describes (``backend = "dynamodb"``)."""
        section = config.campaigns
        return cls(
            section.table,
            region=section.region,
            endpoint_url=section.endpoint_url,
            create_tables=section.create_tables,
            retention_days=section.retention_days,
        )

    def close(self) -> None:
        self._client.close()

    def transact(
        self, campaign_id: str, writes: list[dict[str, Any]], per_item: dict[str, int]
    ) -> int:
        """Commit ``writes`` with a counter shard that adds ``per_item`` for each of them;
        drops the writes whose condition fails. Returns how many were committed."""
        pending = writes
        retries = 0
        while pending:
            items = list(pending)
            if per_item:
                items.append(self._counter_update(campaign_id, per_item, len(pending)))
            try:
                self._client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                code = error_code(exc)
                if code == "TransactionCanceledException":
                    reasons = [
                        r.get("Code") or "None"
                        for r in exc.response.get("CancellationReasons") or []
                    ]
                    failed = {
                        i
                        for i, r in enumerate(reasons[: len(pending)])
                        if r == "ConditionalCheckFailed"
                    }
                    retryable = any(r in _RETRYABLE_REASONS for r in reasons)
                    if failed:
                        pending = [w for i, w in enumerate(pending) if i not in failed]
                        continue
                    if retryable and retries < MAX_RETRIES:
                        backoff(retries, base_s=0.02, max_s=1.0)
                        retries += 1
                        continue
                elif code in _RETRYABLE_CODES and retries < MAX_RETRIES:
                    backoff(retries, base_s=0.05, max_s=2.0)
                    retries += 1
                    continue
                raise self._error(exc, "TransactWriteItems") from exc
            except BotoCoreError as exc:
                raise self._error(exc, "TransactWriteItems") from exc
            return len(pending)
        return 0

    def _counter_update(self, campaign_id: str, per_item: dict[str, int], n: int) -> dict[str, Any]:
        names = {f"#c{i}": name for i, name in enumerate(per_item)}
        values = {f":c{i}": number(delta * n) for i, delta in enumerate(per_item.values())}
        adds = ", ".join(f"#c{i} :c{i}" for i in range(len(per_item)))
        return {
            "Update": {
                "TableName": self.name,
                "Key": item_key("N#" + campaign_id, str(random.randrange(SHARDS))),
                "UpdateExpression": f"SET expires_at = :exp ADD {adds}",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {**values, ":exp": self.expires()},
            }
        }

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        self.ready()
        found = self.call(
            "get_item", TableName=self.name, Key=item_key(pk, sk), ConsistentRead=True
        )
        item: dict[str, Any] | None = found.get("Item")
        return item

    def query(
        self,
        partition: str,
        *,
        index: bool = False,
        forward: bool = True,
        after: str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items of one partition (of the table, or of the index), page by page."""
        self.ready()
        hash_key, range_key = ("lk", "ls") if index else ("pk", "sk")
        params: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": f"{hash_key} = :p",
            "ExpressionAttributeValues": {":p": string(partition)},
            "ScanIndexForward": forward,
        }
        if after is not None:
            params["KeyConditionExpression"] += f" AND {range_key} > :after"
            params["ExpressionAttributeValues"][":after"] = string(after)
        if index:
            params["IndexName"] = INDEX
        else:
            params["ConsistentRead"] = True
        if limit is not None:
            if limit <= 0:
                return
            params["Limit"] = limit
        while True:
            page = self.call("query", **params)
            yield from page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def expires(self) -> dict[str, str]:
        return number(int(time.time()) + self.retention_s)

    def ready(self) -> None:
        self._setup.ensure(self._client, self.name, self._error)

    def call(self, operation: str, **params: Any) -> Any:
        """One client call with backoff on throttling; a failed condition is raised as
        the ClientError it is, every other library error as BackendError."""
        return call_with_backoff(
            self._client,
            operation,
            params,
            error=self._error,
            retry_codes=_RETRYABLE_CODES,
            max_retries=MAX_RETRIES,
            base_s=0.05,
            max_s=2.0,
            raw_codes=_CONFLICT,
        )

    def _error(self, exc: Exception, action: str) -> BackendError:
        resource = TABLE.resource(
            self.name, endpoint_of(getattr(self, "_client", None), self._endpoint_hint)
        )
        if isinstance(exc, ClientError):
            code, message = error_code(exc), error_message(exc)
            if code in _RETRYABLE_CODES or code == "TransactionCanceledException":
                return resource.kept_failing(action, code, message, "; nothing was changed twice")
        return resource.error(exc, action)


def string(value: str) -> dict[str, str]:
    return {"S": value}


def number(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def item_key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": string(pk), "sk": string(sk)}
