"""The per-account compliance rate limiter on DynamoDB, exact across hosts.

One item per account, ``pk = RL#<account>``, ``sk = RL`` (string keys named like the
ledger's, so ``[rate_limit] table`` may even point at the ledger's table):

* ``grants``: a List of Numbers, the account's last ``messages`` grant times in integer
  microseconds since the epoch, oldest first;
* ``version``: a Number that every write raises; a write is conditional on the version
  it read (``attribute_not_exists(pk)`` for an account's first grant);
* ``expires_at``: TTL, a day after the latest grant has left the window, so idle
  accounts' items go away on their own.

``acquire`` is a strongly consistent GetItem, the same decision as the SQLite limiter
(``next_slot`` in ratelimit.py: same rule, same boundary), then, when it
grants, a conditional PutItem. Two hosts granting from the same read cannot both
commit: the loser's condition fails, DynamoDB hands it the winner's item
(``ReturnValuesOnConditionCheckFailure``), and it decides again on that, after a
jittered pause of a millisecond or two. A refusal writes nothing.

Every stored grant is stamped no earlier than the latest one before it (a host whose
clock is behind is raised to it), so the stamps keep the window rule exactly. How
closely the stamps follow real time across hosts is as good as their clocks' sync (NTP
keeps that to milliseconds).

Quotas (``take_quota``): one item per key and period, ``pk = QUOTA#<key>``, ``sk = <period>``,
raised by a conditional UpdateItem (``ADD used 1`` if ``used < limit``): the check and
the count are one write, so two hosts never both take the last unit; ``expires_at`` lets
TTL drop it. IAM: ``dynamodb:UpdateItem`` too.

IAM actions on ``arn:aws:dynamodb:<region>:<account>:table/<table>``: always
``dynamodb:GetItem`` and ``dynamodb:PutItem``; with ``[rate_limit] create_tables = true``
also ``dynamodb:DescribeTable``, ``dynamodb:CreateTable``, ``dynamodb:DescribeTimeToLive``
and ``dynamodb:UpdateTimeToLive``.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from huntaze_cli.clock import (
    SYSTEM_CLOCK,
    US_PER_S,
    Clock,
    from_micros,
    micros,
    seconds_to_micros,
)
from huntaze_cli.errors import BackendError
from huntaze_cli.storage.aws.client import (
    THROTTLE_CODES,
    TableSpec,
    error_code,
    error_message,
)
from huntaze_cli.storage.aws.dynamodb_table import DynamoDBTable
from huntaze_cli.storage.ratelimit import (
    IDLE_MARGIN_US,
    Grant,
    next_slot,
    refusal,
    window_micros,
)

if TYPE_CHECKING:
    from huntaze_cli.config import Config

TTL_ATTRIBUTE = "expires_at"
SORT_KEY = "RL"
TABLE = TableSpec("rate_limit", label="rate-limit table", ttl_attribute=TTL_ATTRIBUTE)

# Conditional writes lost to other writers before acquire gives up for now and answers
# "retry shortly" (a refusal, so the caller waits instead of failing). Each loss means
# another writer got a slot, so losing this many in a row takes a crowd.
_MAX_CONFLICTS = 12
_CONFLICT_PAUSE_S = 0.002
_CONGESTED_RETRY_S = 0.05
_MAX_THROTTLE_RETRIES = 6
_CONFLICT = frozenset({"ConditionalCheckFailedException"})


class DynamoDBRateLimiter:
    """The ``RateLimiter`` protocol on one DynamoDB table, shared by every host."""

    def __init__(
        self,
        table: str,
        *,
        messages: int = 10,
        per_seconds: float = 60.0,
        region: str | None = None,
        endpoint_url: str | None = None,
        create_tables: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if messages < 1:
            raise ValueError(f"messages must be at least 1, got {messages}")
        self.table = table
        self.messages = messages
        self.per_seconds = per_seconds
        self._per_us = window_micros(per_seconds)
        self._clock = clock
        # A delivery waits on these calls: an unreachable endpoint must fail in seconds.
        self._db = DynamoDBTable(
            TABLE,
            table,
            region=region,
            endpoint_url=endpoint_url,
            create=create_tables,
            connect_timeout=2,
            read_timeout=5,
            max_retries=_MAX_THROTTLE_RETRIES,
            base_s=0.02,
            max_s=1.0,
            # A failed condition is not an error here: its ClientError is raised as it
            # is, carrying the item as it is now (ReturnValuesOnConditionCheckFailure).
            raw_codes=_CONFLICT,
            explain=_explain,
            parameter_validation=False,
        )

    @classmethod
    def from_config(cls, config: Config) -> DynamoDBRateLimiter:
        """The limiter ``[rate_limit]`` describes (``backend = "dynamodb"``)."""
        rate = config.rate_limit
        return cls(
            rate.table,
            messages=rate.messages,
            per_seconds=rate.per_seconds,
            region=rate.region,
            endpoint_url=rate.endpoint_url,
            create_tables=rate.create_tables,
        )

    def __enter__(self) -> DynamoDBRateLimiter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- RateLimiter protocol --------------------------------------------------------

    def acquire(self, account: str, *, now: datetime | None = None) -> Grant:
        """Take a slot for ``account`` if its window has room, else say how long to wait."""
        self._db.ensure_ready()
        fixed_us = micros(now) if now is not None else None
        key = {"pk": {"S": f"RL#{account}"}, "sk": {"S": SORT_KEY}}
        found = self._db.call("get_item", TableName=self.table, Key=key, ConsistentRead=True)
        item: dict[str, Any] | None = found.get("Item")
        for _ in range(_MAX_CONFLICTS):
            grants = [int(value["N"]) for value in item["grants"]["L"]] if item else []
            # The clock is read after the read returns: the stamp is as late as it can be.
            now_us = fixed_us if fixed_us is not None else seconds_to_micros(self._clock.time())
            slot = next_slot(grants, now_us, messages=self.messages, per_us=self._per_us)
            if slot.at_us is None:
                return refusal(slot.wait_us)
            stored, item = self._put(key, item, slot.grants, slot.at_us)
            if stored:
                return Grant(True, at=from_micros(slot.at_us))
            # Another writer took a slot first; decide again on what it wrote.
            self._clock.sleep(_CONFLICT_PAUSE_S * random.random())
        return Grant(False, retry_after_s=_CONGESTED_RETRY_S * (1 + random.random()))

    def take_quota(self, key: str, period: str, limit: int, *, expires_at: datetime) -> bool:
        """Count one against ``key`` in ``period`` unless ``limit`` are counted already."""
        self._db.ensure_ready()
        try:
            self._db.call(
                "update_item",
                TableName=self.table,
                Key={"pk": {"S": f"QUOTA#{key}"}, "sk": {"S": period}},
                UpdateExpression="ADD used :one SET #exp = :exp",
                ConditionExpression="attribute_not_exists(used) OR used < :limit",
                ExpressionAttributeNames={"#exp": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":exp": {"N": str(int(expires_at.timestamp()) + 1)},
                },
            )
        except ClientError:  # the condition failed: the quota is used up
            return False
        return True

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._db.close()

    # --- the conditional write -------------------------------------------------------

    def _put(
        self, key: dict[str, Any], old: dict[str, Any] | None, grants: list[int], at_us: int
    ) -> tuple[bool, dict[str, Any] | None]:
        """Store ``grants`` if the item is still ``old``: ``(True, None)``.

        Otherwise nothing is stored and the answer is ``(False, the item as it is now)``
        (None when it is gone: expired, or deleted by hand).

        The version never repeats, even when TTL deletes an item and a new one starts:
        a new version is also at least the grant's microsecond stamp, beyond any version
        the deleted item could have reached.
        """
        old_version = int(old["version"]["N"]) if old else None
        version = max(old_version + 1, at_us) if old_version is not None else at_us
        expires = (at_us + self._per_us + IDLE_MARGIN_US) // US_PER_S + 1
        params: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                **key,
                "grants": {"L": [{"N": str(us)} for us in grants]},
                "version": {"N": str(version)},
                TTL_ATTRIBUTE: {"N": str(expires)},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if old_version is None:
            params["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            params["ConditionExpression"] = "#v = :v"
            params["ExpressionAttributeNames"] = {"#v": "version"}
            params["ExpressionAttributeValues"] = {":v": {"N": str(old_version)}}
        try:
            self._db.call("put_item", **params)
        except ClientError as exc:  # the condition failed: another writer was first
            return False, exc.response.get("Item") or None
        return True, None


def _explain(exc: ClientError, action: str, table: DynamoDBTable) -> BackendError | None:
    """The limiter's wording for a foreign table and for throttling that did not end."""
    code, message = error_code(exc), error_message(exc)
    if code == "ValidationException" and "key" in message.lower():
        return BackendError(
            f"DynamoDB table {table.name!r} at {table.endpoint()} is not a huntaze table "
            f"({message}): it needs string keys pk/sk; point [rate_limit] table at a "
            "new name and set [rate_limit] create_tables = true"
        )
    if code in THROTTLE_CODES:
        return table.resource().kept_failing(action, code, message)
    return None
