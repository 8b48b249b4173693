"""Alert claims in the DynamoDB ledger table (the ``AlertStore`` shared by every host).

Items, beside the ledger's own (see dynamodb_ledger.py):

==========================  =====================================  =====================
item                        pk                                     sk
==========================  =====================================  =====================
one claim                   ``CLAIM#<rule>#<scope>#<period>``      ``<level>#<channel>``
last alert sent             ``LASTSENT#<rule>#<scope>``            ``L``
==========================  =====================================  =====================

A claim is one ``UpdateItem`` with the condition "no such item, or its last attempt
failed, or its claim went stale": DynamoDB evaluates the condition and writes the item
as one atomic step, so of several hosts claiming the same key exactly one succeeds and
the others get ``ConditionalCheckFailedException``. ``finish`` is conditional on the
owner still holding the claim. Claims expire (TTL) ``history_days`` after they were made.

IAM actions on the ledger table: ``dynamodb:UpdateItem``, ``dynamodb:PutItem``,
``dynamodb:GetItem``, ``dynamodb:Query`` (and the ledger's table set-up actions with
``[ledger] create_tables = true``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from huntaze_cli.errors import BackendError
from huntaze_cli.storage.alerts import CLAIM_LEASE_S, AlertClaim, AlertKey
from huntaze_cli.storage.aws.client import (
    THROTTLE_CODES,
    TableSetup,
    call_with_backoff,
    endpoint_of,
    make_client,
)
from huntaze_cli.storage.aws.dynamodb_ledger import TABLE
from huntaze_cli.storage.ratelimit import from_micros, micros

if TYPE_CHECKING:
    from huntaze_cli.config import Config

_CONFLICT = frozenset({"ConditionalCheckFailedException"})
_DAY_S = 86_400


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _escape(part: str) -> str:
    # "#" separates key parts; "%" escapes itself, so distinct keys never collide.
    return part.replace("%", "%25").replace("#", "%23")


class DynamoDBAlertStore:
    """The ``AlertStore`` protocol on the ledger's DynamoDB table."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None,
        endpoint_url: str | None,
        create_tables: bool = False,
        history_days: int = 400,
    ) -> None:
        self.table = table
        self.history_days = history_days
        self._endpoint_hint = endpoint_url
        self._setup = TableSetup(TABLE, create=create_tables)
        try:
            self._client: Any = make_client(
                "dynamodb",
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=3,
                read_timeout=10,
            )
        except (BotoCoreError, ValueError) as exc:
            raise self._error(exc, "connect") from exc

    @classmethod
    def from_config(cls, config: Config) -> DynamoDBAlertStore:
        ledger = config.ledger
        return cls(
            ledger.table,
            region=ledger.region,
            endpoint_url=ledger.endpoint_url,
            create_tables=ledger.create_tables,
            history_days=ledger.rollup_retention_days,
        )

    def claim(
        self, key: AlertKey, *, owner: str, now: datetime, lease_s: float = CLAIM_LEASE_S
    ) -> bool:
        self._setup.ensure(self._client, self.table, self._error)
        now_us = micros(now)
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key=_key(key),
                UpdateExpression=(
                    "SET #status = :claimed, #owner = :owner, claimed_us = :now, "
                    "updated_us = :now, #rule = :rule, #scope = :scope, #period = :period, "
                    "#level = :level, channel = :channel, expires_at = :expires "
                    "REMOVE #error ADD attempts :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(pk) OR #status = :failed "
                    "OR (#status = :claimed AND claimed_us <= :stale)"
                ),
                ExpressionAttributeNames={
                    "#status": "status",
                    "#owner": "owner",
                    "#rule": "rule",
                    "#scope": "scope",
                    "#period": "period",
                    "#level": "level",
                    "#error": "error",
                },
                ExpressionAttributeValues={
                    ":claimed": _s("claimed"),
                    ":failed": _s("failed"),
                    ":owner": _s(owner),
                    ":now": _n(now_us),
                    ":stale": _n(now_us - round(lease_s * 1_000_000)),
                    ":rule": _s(key.rule),
                    ":scope": _s(key.scope),
                    ":period": _s(key.period),
                    ":level": _n(key.level),
                    ":channel": _s(key.channel),
                    ":expires": _n(now_us // 1_000_000 + self.history_days * _DAY_S),
                    ":one": _n(1),
                },
            )
        except ClientError:  # only the failed condition is raised as it is
            return False
        return True

    def finish(self, key: AlertKey, *, owner: str, now: datetime, error: str | None) -> None:
        self._setup.ensure(self._client, self.table, self._error)
        now_us = micros(now)
        values: dict[str, Any] = {
            ":status": _s("sent" if error is None else "failed"),
            ":now": _n(now_us),
            ":owner": _s(owner),
            ":claimed": _s("claimed"),
        }
        update = "SET #status = :status, updated_us = :now"
        if error is not None:
            update += ", #error = :error"
            values[":error"] = _s(error)
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key=_key(key),
                UpdateExpression=update,
                ConditionExpression="#owner = :owner AND #status = :claimed",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#owner": "owner",
                    **({"#error": "error"} if error is not None else {}),
                },
                ExpressionAttributeValues=values,
            )
        except ClientError:  # the claim went stale and is someone else's now
            return
        if error is not None:
            return
        # Only move the latest forward: sends from several hosts may land out of order.
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item={
                    "pk": _s(f"LASTSENT#{_escape(key.rule)}#{_escape(key.scope)}"),
                    "sk": _s("L"),
                    "sent_us": _n(now_us),
                    "expires_at": _n(now_us // 1_000_000 + self.history_days * _DAY_S),
                },
                ConditionExpression="attribute_not_exists(pk) OR sent_us < :sent",
                ExpressionAttributeValues={":sent": _n(now_us)},
            )
        except ClientError:
            return

    def claims(self, rule: str, scope: str, period: str) -> list[AlertClaim]:
        self._setup.ensure(self._client, self.table, self._error)
        pk = f"CLAIM#{_escape(rule)}#{_escape(scope)}#{_escape(period)}"
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(pk)},
            "ConsistentRead": True,
        }
        while True:
            page = self._call("query", **params)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        claims = [_claim_from_item(item) for item in items]
        claims.sort(key=lambda c: (c.key.level, c.key.channel))
        return claims

    def last_sent(self, rule: str, scope: str) -> datetime | None:
        self._setup.ensure(self._client, self.table, self._error)
        found = self._call(
            "get_item",
            TableName=self.table,
            Key={"pk": _s(f"LASTSENT#{_escape(rule)}#{_escape(scope)}"), "sk": _s("L")},
            ConsistentRead=True,
        )
        item = found.get("Item")
        return from_micros(int(item["sent_us"]["N"])) if item else None

    def close(self) -> None:
        self._client.close()

    def _call(self, operation: str, **params: Any) -> Any:
        return call_with_backoff(
            self._client,
            operation,
            params,
            error=self._error,
            retry_codes=THROTTLE_CODES,
            max_retries=8,
            base_s=0.02,
            max_s=1.0,
            raw_codes=_CONFLICT,
        )

    def _error(self, exc: Exception, action: str) -> BackendError:
        where = endpoint_of(getattr(self, "_client", None), self._endpoint_hint)
        return TABLE.resource(self.table, where).error(exc, action)


def _key(key: AlertKey) -> dict[str, dict[str, str]]:
    return {
        "pk": _s(f"CLAIM#{_escape(key.rule)}#{_escape(key.scope)}#{_escape(key.period)}"),
        "sk": _s(f"{key.level:04d}#{key.channel}"),
    }


def _claim_from_item(item: dict[str, Any]) -> AlertClaim:
    error = item.get("error")
    return AlertClaim(
        key=AlertKey(
            rule=item["rule"]["S"],
            scope=item["scope"]["S"],
            period=item["period"]["S"],
            level=int(item["level"]["N"]),
            channel=item["channel"]["S"],
        ),
        status=item["status"]["S"],
        owner=item["owner"]["S"],
        claimed_at=from_micros(int(item["claimed_us"]["N"])),
        updated_at=from_micros(int(item["updated_us"]["N"])),
        attempts=int(item["attempts"]["N"]),
        error=error["S"] if error else None,
    )
