"""The DynamoDB table behind the campaign store and the provider state (``[campaigns]``).

``CampaignTable`` is the shared ``DynamoDBTable`` (one client, the table's set-up on first
use, calls with backoff and one-line errors, paged Queries, transactions that drop the
writes whose condition failed) plus what the two stores add: a partition read from the
table or its ``lists`` index, the TTL stamp every write carries, and ``transact`` with a
counter shard committed alongside. The items are listed in dynamodb_campaign_items.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.errors import BackendError
from huntaze_cli.storage.aws.client import TableSpec
from huntaze_cli.storage.aws.dynamodb_table import (
    TRANSACTION_RETRY_CODES,
    DynamoDBTable,
    kept_failing,
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
_CONFLICT = frozenset({"ConditionalCheckFailedException"})


class CampaignTable(DynamoDBTable):
    """One ``[campaigns]`` table: the shared table plumbing, TTL stamps and counter shards."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        create_tables: bool = False,
        retention_days: int = 90,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.retention_s = retention_days * 86_400
        self.clock = clock
        super().__init__(
            TABLE,
            table,
            region=region,
            endpoint_url=endpoint_url,
            create=create_tables,
            connect_timeout=2,
            read_timeout=30,
            max_retries=MAX_RETRIES,
            base_s=0.05,
            max_s=2.0,
            retry_codes=TRANSACTION_RETRY_CODES,
            raw_codes=_CONFLICT,
            explain=_explain,
            max_pool_connections=16,
        )

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock = SYSTEM_CLOCK) -> CampaignTable:
        """The store ``[campaigns]`` describes (``backend = "dynamodb"``)."""
        section = config.campaigns
        return cls(
            section.table,
            region=section.region,
            endpoint_url=section.endpoint_url,
            create_tables=section.create_tables,
            retention_days=section.retention_days,
            clock=clock,
        )

    def transact_counted(
        self, campaign_id: str, writes: list[dict[str, Any]], per_item: dict[str, int]
    ) -> int:
        """Commit ``writes`` with a counter shard that adds ``per_item`` for each of them;
        drops the writes whose condition fails. Returns how many were committed."""
        if not writes:
            return 0
        self.ensure_ready()

        def items(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not per_item:
                return pending
            return [*pending, self._counter_update(campaign_id, per_item, len(pending))]

        return len(self.transact(writes, items))

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

    def item(self, pk: str, sk: str) -> dict[str, Any] | None:
        """One item by its keys, strongly consistent."""
        self.ensure_ready()
        return self.get(item_key(pk, sk))

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
        self.ensure_ready()
        return self.query_iter(
            partition,
            index=INDEX if index else None,
            key=("lk", "ls") if index else ("pk", "sk"),
            forward=forward,
            after=after,
            limit=limit,
        )

    def expires(self, after_s: float | None = None) -> dict[str, str]:
        """The TTL stamp of an item written now: ``retention_days`` ahead, or ``after_s``."""
        keep = self.retention_s if after_s is None else after_s
        return number(int(self.clock.time() + keep))


def _explain(exc: ClientError, action: str, table: DynamoDBTable) -> BackendError | None:
    return kept_failing(exc, action, table, note="; nothing was changed twice")


def string(value: str) -> dict[str, str]:
    return {"S": value}


def number(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def item_key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": string(pk), "sk": string(sk)}
