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

IAM actions on ``arn:aws:dynamodb:<region>:<account>:table/<table>``: always
``dynamodb:GetItem`` and ``dynamodb:PutItem``; with ``[rate_limit] create_tables = true``
also ``dynamodb:DescribeTable``, ``dynamodb:CreateTable``, ``dynamodb:DescribeTimeToLive``
and ``dynamodb:UpdateTimeToLive``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from huntaze_cli.backends.ratelimit import (
    IDLE_MARGIN_US,
    US_PER_S,
    Grant,
    from_micros,
    micros,
    next_slot,
    refusal,
    window_micros,
)
from huntaze_cli.errors import BackendError

if TYPE_CHECKING:
    from huntaze_cli.config import Config

TTL_ATTRIBUTE = "expires_at"
SORT_KEY = "RL"

# Conditional writes lost to other writers before acquire gives up for now and answers
# "retry shortly" (a refusal, so the caller waits instead of failing). Each loss means
# another writer got a slot, so losing this many in a row takes a crowd.
_MAX_CONFLICTS = 12
_CONFLICT_PAUSE_S = 0.002
_CONGESTED_RETRY_S = 0.05
_THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)
_MAX_THROTTLE_RETRIES = 6
_AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "IncompleteSignature",
    }
)


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        if messages < 1:
            raise ValueError(f"messages must be at least 1, got {messages}")
        self.table = table
        self.messages = messages
        self.per_seconds = per_seconds
        self._per_us = window_micros(per_seconds)
        self._clock = clock
        self._create_tables = create_tables
        self._endpoint_hint = endpoint_url
        self._lock = threading.Lock()
        self._ready = False
        # A delivery waits on this call: an unreachable endpoint must fail in seconds,
        # and throttling gets the backoff below rather than botocore's.
        boto_config = BotoConfig(
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 2, "mode": "standard"},
            parameter_validation=False,
        )
        try:
            session = boto3.session.Session(region_name=region)
            self._client: Any = session.client(
                "dynamodb", endpoint_url=endpoint_url, config=boto_config
            )
        except (BotoCoreError, ValueError) as exc:
            raise self._error(exc, "connect") from exc

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
        self._ensure_ready()
        fixed_us = micros(now) if now is not None else None
        key = {"pk": {"S": f"RL#{account}"}, "sk": {"S": SORT_KEY}}
        found = self._call("get_item", TableName=self.table, Key=key, ConsistentRead=True)
        item: dict[str, Any] | None = found.get("Item")
        for _ in range(_MAX_CONFLICTS):
            grants = [int(value["N"]) for value in item["grants"]["L"]] if item else []
            # The clock is read after the read returns: the stamp is as late as it can be.
            now_us = fixed_us if fixed_us is not None else round(self._clock() * US_PER_S)
            slot = next_slot(grants, now_us, messages=self.messages, per_us=self._per_us)
            if slot.at_us is None:
                return refusal(slot.wait_us)
            stored, item = self._put(key, item, slot.grants, slot.at_us)
            if stored:
                return Grant(True, at=from_micros(slot.at_us))
            # Another writer took a slot first; decide again on what it wrote.
            time.sleep(_CONFLICT_PAUSE_S * random.random())
        return Grant(False, retry_after_s=_CONGESTED_RETRY_S * (1 + random.random()))

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()

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
            self._call("put_item", **params)
        except _Conflict as conflict:
            return False, conflict.item or None
        return True, None

    # --- table set-up ----------------------------------------------------------------

    def _ensure_ready(self) -> None:
        """Create the table on first use when asked to; otherwise trust it exists.

        Without ``create_tables`` no call is spent up front: a missing table surfaces as
        ResourceNotFoundException on the first GetItem and gets the same message.
        """
        if self._ready or not self._create_tables:
            return
        with self._lock:
            if self._ready:
                return
            try:
                table = self._client.describe_table(TableName=self.table)["Table"]
            except ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise self._error(exc, "DescribeTable") from exc
                table = self._create_table()
            except BotoCoreError as exc:
                raise self._error(exc, "DescribeTable") from exc
            if table.get("TableStatus") == "CREATING":
                table = self._wait_active()
            keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
            if keys != {"pk": "HASH", "sk": "RANGE"}:
                raise BackendError(
                    f"DynamoDB table {self.table!r} at {self._endpoint()} is not a huntaze "
                    "table (it needs string keys pk/sk): point [rate_limit] table at a new "
                    "name"
                )
            self._ensure_ttl()
            self._ready = True

    def _create_table(self) -> dict[str, Any]:
        try:
            self._client.create_table(
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                Tags=[{"Key": "app", "Value": "huntaze"}],
            )
        except ClientError as exc:
            # Another process is creating it at the same moment: wait for theirs.
            if _code(exc) != "ResourceInUseException":
                raise self._error(exc, "CreateTable") from exc
        except BotoCoreError as exc:
            raise self._error(exc, "CreateTable") from exc
        return self._wait_active()

    def _wait_active(self) -> dict[str, Any]:
        try:
            waiter = self._client.get_waiter("table_exists")
            waiter.wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 180})
            table: dict[str, Any] = self._client.describe_table(TableName=self.table)["Table"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "DescribeTable") from exc
        return table

    def _ensure_ttl(self) -> None:
        try:
            ttl = self._client.describe_time_to_live(TableName=self.table)
            description = ttl.get("TimeToLiveDescription", {})
            if description.get("TimeToLiveStatus", "DISABLED") in ("ENABLED", "ENABLING"):
                if description.get("AttributeName", TTL_ATTRIBUTE) != TTL_ATTRIBUTE:
                    raise BackendError(
                        f"DynamoDB table {self.table!r} expires items by "
                        f"{description.get('AttributeName')!r}, but huntaze uses "
                        f"{TTL_ATTRIBUTE!r}: change its TTL attribute or use another table"
                    )
                return
            self._client.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
        except ClientError as exc:
            # Another process enabled it between our two calls.
            if _code(exc) == "ValidationException" and "already enabled" in _message(exc):
                return
            raise self._error(exc, "UpdateTimeToLive") from exc
        except BotoCoreError as exc:
            raise self._error(exc, "UpdateTimeToLive") from exc

    # --- calls and errors ------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> Any:
        """One client call with backoff on throttling; library errors become BackendError.

        A failed condition is not an error here: it raises ``_Conflict`` with the item.
        """
        method = getattr(self._client, operation)
        retries = 0
        while True:
            try:
                return method(**params)
            except ClientError as exc:
                code = _code(exc)
                if code == "ConditionalCheckFailedException":
                    raise _Conflict(exc.response.get("Item")) from None
                if code in _THROTTLE_CODES and retries < _MAX_THROTTLE_RETRIES:
                    delay = min(1.0, 0.02 * 2**retries)
                    time.sleep(delay * (0.5 + random.random() / 2))
                    retries += 1
                    continue
                raise self._error(exc, _action_name(operation)) from exc
            except BotoCoreError as exc:
                raise self._error(exc, _action_name(operation)) from exc

    def _endpoint(self) -> str:
        client = getattr(self, "_client", None)
        if client is not None:
            return str(client.meta.endpoint_url)
        return self._endpoint_hint or "the default AWS endpoint"

    def _error(self, exc: Exception, action: str) -> BackendError:
        """A one-line BackendError for ``exc`` naming the table, endpoint and next step."""
        table, where = self.table, self._endpoint()
        if isinstance(exc, ClientError):
            code, message = _code(exc), _message(exc)
            if code == "ResourceNotFoundException":
                return BackendError(
                    f"DynamoDB rate-limit table {table!r} does not exist at {where}: set "
                    "[rate_limit] create_tables = true (or HUNTAZE_RATE_LIMIT__CREATE_TABLES="
                    f"true) to create it on first use, or create table {table!r} yourself"
                )
            if code in _AUTH_CODES:
                return BackendError(
                    f"DynamoDB refused {action} on rate-limit table {table!r} at {where} "
                    f"({code}: {message}): check the AWS credentials and that their IAM "
                    f"policy allows dynamodb:{action}"
                )
            if code == "ValidationException" and "key" in message.lower():
                return BackendError(
                    f"DynamoDB table {table!r} at {where} is not a huntaze table ({message}): "
                    "it needs string keys pk/sk; point [rate_limit] table at a new name and "
                    "set [rate_limit] create_tables = true"
                )
            if code in _THROTTLE_CODES:
                return BackendError(
                    f"DynamoDB {action} on rate-limit table {table!r} at {where} kept "
                    f"failing ({code}: {message}): retry later"
                )
            return BackendError(
                f"DynamoDB {action} on rate-limit table {table!r} at {where} failed "
                f"({code}: {message})"
            )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return BackendError(
                f"no usable AWS credentials for DynamoDB rate-limit table {table!r} "
                f"({_one_line(exc)}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or an IAM role"
            )
        if isinstance(exc, NoRegionError):
            return BackendError(
                f"no AWS region for DynamoDB rate-limit table {table!r}: set [rate_limit] "
                "region (HUNTAZE_RATE_LIMIT__REGION) or AWS_DEFAULT_REGION"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return BackendError(
                f"cannot reach DynamoDB at {where} for rate-limit table {table!r} "
                f"({_one_line(exc)}): check [rate_limit] endpoint_url / AWS_ENDPOINT_URL "
                "and the network"
            )
        return BackendError(
            f"DynamoDB {action} on rate-limit table {table!r} at {where} failed: {_one_line(exc)}"
        )


class _Conflict(Exception):
    """A conditional write lost to another writer; ``item`` is what that writer stored."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("conditional check failed")
        self.item = item


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return _one_line(exc.response.get("Error", {}).get("Message", "") or exc)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _action_name(operation: str) -> str:
    """``put_item`` -> ``PutItem``, the API and IAM action name."""
    return "".join(part.capitalize() for part in operation.split("_"))
