"""Alert claims in the DynamoDB ledger table (the ``AlertStore`` shared by every host).

Items, beside the ledger's own (see dynamodb_ledger.py):

==========================  =====================================  =====================
item                        pk                                     sk
==========================  =====================================  =====================
one claim                   ``CLAIM#<rule>#<scope>#<period>``      ``<level>#<channel>``
last alert sent             ``LASTSENT#<rule>#<scope>``            ``L``, ``C#<channel>``
held back on a channel      ``HELD#<channel>``                     ``<us>#<claim key>``
one alert of the history    ``ALERTDAY#<yyyy-mm-dd>``              ``<created us>#<id>``
where an alert id is        ``ALERTID#<alert id>``                 ``A``
a stored rule               ``ALERTRULES``                         ``<name>``
==========================  =====================================  =====================

The history is partitioned by the UTC day an alert was created, so listing the newest
first reads day partitions backwards and stops at the limit; history items expire (TTL)
``history_days`` after they were created, so ``prune`` has nothing to do.

A claim is one ``UpdateItem`` with the condition "no such item, or its last attempt
failed, or its claim went stale": DynamoDB evaluates the condition and writes the item
as one atomic step, so of several hosts claiming the same key exactly one succeeds and
the others get ``ConditionalCheckFailedException``. ``finish`` is conditional on the
owner still holding the claim. Claims expire (TTL) ``history_days`` after they were made.

IAM actions on the ledger table: ``dynamodb:UpdateItem``, ``dynamodb:PutItem``,
``dynamodb:GetItem``, ``dynamodb:Query``, ``dynamodb:DeleteItem`` (and the ledger's
table set-up actions with ``[ledger] create_tables = true``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from huntaze_cli.clock import from_micros, micros
from huntaze_cli.storage.alerts import CLAIM_LEASE_S, AlertClaim, AlertEntry, AlertKey
from huntaze_cli.storage.aws.dynamodb_ledger import TABLE
from huntaze_cli.storage.aws.dynamodb_table import DynamoDBTable

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
        # A failed condition reaches the caller as ClientError: a claim that lost.
        self._db = DynamoDBTable(
            TABLE,
            table,
            region=region,
            endpoint_url=endpoint_url,
            create=create_tables,
            connect_timeout=3,
            read_timeout=10,
            max_retries=8,
            base_s=0.02,
            max_s=1.0,
            raw_codes=_CONFLICT,
        )

    @classmethod
    def from_config(cls, config: Config) -> DynamoDBAlertStore:
        ledger = config.ledger
        return cls(
            ledger.table,
            region=ledger.region,
            endpoint_url=ledger.endpoint_url,
            create_tables=ledger.create_tables,
            history_days=config.alerts.history_days,
        )

    def claim(
        self, key: AlertKey, *, owner: str, now: datetime, lease_s: float = CLAIM_LEASE_S
    ) -> bool:
        self._db.ensure_ready()
        now_us = micros(now)
        try:
            self._db.call(
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
                    "attribute_not_exists(pk) OR #status = :failed OR #status = :held "
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
                    ":held": _s("suppressed"),
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
        self._db.ensure_ready()
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
            self._db.call(
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
        for sk in ("L", f"C#{key.channel}"):
            try:
                self._db.call(
                    "put_item",
                    TableName=self.table,
                    Item={
                        "pk": _s(f"LASTSENT#{_escape(key.rule)}#{_escape(key.scope)}"),
                        "sk": _s(sk),
                        "sent_us": _n(now_us),
                        "expires_at": _n(now_us // 1_000_000 + self.history_days * _DAY_S),
                    },
                    ConditionExpression="attribute_not_exists(pk) OR sent_us < :sent",
                    ExpressionAttributeValues={":sent": _n(now_us)},
                )
            except ClientError:
                continue

    def claims(self, rule: str, scope: str, period: str) -> list[AlertClaim]:
        self._db.ensure_ready()
        pk = f"CLAIM#{_escape(rule)}#{_escape(scope)}#{_escape(period)}"
        claims = [_claim_from_item(item) for item in self._db.query_all(pk)]
        claims.sort(key=lambda c: (c.key.level, c.key.channel))
        return claims

    def last_sent(self, rule: str, scope: str, channel: str | None = None) -> datetime | None:
        self._db.ensure_ready()
        sk = "L" if channel is None else f"C#{channel}"
        found = self._db.call(
            "get_item",
            TableName=self.table,
            Key={"pk": _s(f"LASTSENT#{_escape(rule)}#{_escape(scope)}"), "sk": _s(sk)},
            ConsistentRead=True,
        )
        item = found.get("Item")
        return from_micros(int(item["sent_us"]["N"])) if item else None

    def suppress(self, key: AlertKey, *, now: datetime) -> None:
        self._db.ensure_ready()
        now_us = micros(now)
        expires = _n(now_us // 1_000_000 + self.history_days * _DAY_S)
        try:
            self._db.call(
                "update_item",
                TableName=self.table,
                Key=_key(key),
                UpdateExpression=(
                    "SET #status = :held, #owner = if_not_exists(#owner, :none), "
                    "claimed_us = if_not_exists(claimed_us, :now), updated_us = :now, "
                    "#rule = :rule, #scope = :scope, #period = :period, #level = :level, "
                    "channel = :channel, expires_at = :expires, "
                    "attempts = if_not_exists(attempts, :zero)"
                ),
                ConditionExpression="attribute_not_exists(pk) OR #status = :failed",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#owner": "owner",
                    "#rule": "rule",
                    "#scope": "scope",
                    "#period": "period",
                    "#level": "level",
                },
                ExpressionAttributeValues={
                    ":held": _s("suppressed"),
                    ":failed": _s("failed"),
                    ":none": _s(""),
                    ":now": _n(now_us),
                    ":rule": _s(key.rule),
                    ":scope": _s(key.scope),
                    ":period": _s(key.period),
                    ":level": _n(key.level),
                    ":channel": _s(key.channel),
                    ":expires": expires,
                    ":zero": _n(0),
                },
            )
        except ClientError:  # sent or claimed already: nothing is held back
            return
        self._db.call(
            "put_item",
            TableName=self.table,
            Item={
                "pk": _s(f"HELD#{_escape(key.channel)}"),
                "sk": _s(f"{now_us:016d}#{_key(key)['pk']['S']}#{_key(key)['sk']['S']}"),
                "claim_pk": _key(key)["pk"],
                "claim_sk": _key(key)["sk"],
                "expires_at": expires,
            },
        )

    def suppressed(self, channel: str) -> list[AlertClaim]:
        self._db.ensure_ready()
        held: list[AlertClaim] = []
        for item in self._db.query_all(f"HELD#{_escape(channel)}"):
            found = self._db.call(
                "get_item",
                TableName=self.table,
                Key={"pk": item["claim_pk"], "sk": item["claim_sk"]},
                ConsistentRead=True,
            ).get("Item")
            if found is not None and found["status"]["S"] == "suppressed":
                held.append(_claim_from_item(found))
            else:  # claimed or sent since: the marker is spent
                self._db.call(
                    "delete_item", TableName=self.table, Key={"pk": item["pk"], "sk": item["sk"]}
                )
        return held

    def record_alert(self, entry: AlertEntry) -> None:
        self._db.ensure_ready()
        created_us = micros(entry.created_at)
        day = entry.created_at.astimezone(UTC).date().isoformat()
        sk = f"{created_us:016d}#{entry.alert_id}"
        expires = _n(created_us // 1_000_000 + self.history_days * _DAY_S)
        try:
            self._db.call(
                "put_item",
                TableName=self.table,
                Item={
                    "pk": _s(f"ALERTID#{entry.alert_id}"),
                    "sk": _s("A"),
                    "day": _s(day),
                    "day_sk": _s(sk),
                    "expires_at": expires,
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError:  # another evaluator recorded it first
            return
        body = {
            "alert_id": entry.alert_id,
            "rule": entry.rule,
            "kind": entry.kind,
            "scope": entry.scope,
            "scope_values": entry.scope_values,
            "period": entry.period,
            "period_label": entry.period_label,
            "period_start_us": micros(entry.period_start),
            "level": entry.level_pct,
            "limit_nano": entry.limit_nano,
            "observed_nano": entry.observed_nano,
            "created_us": created_us,
        }
        item = {
            "pk": _s(f"ALERTDAY#{day}"),
            "sk": _s(sk),
            "body": _s(json.dumps(body, sort_keys=True)),
            "rule": _s(entry.rule),
            "expires_at": expires,
        }
        if "tenant" in entry.scope_values:
            item["tenant"] = _s(entry.scope_values["tenant"])
        self._db.call("put_item", TableName=self.table, Item=item)

    def history(
        self,
        *,
        since: datetime,
        rule: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[AlertEntry]:
        self._db.ensure_ready()
        out: list[AlertEntry] = []
        day = datetime.now(UTC).date()
        first = since.astimezone(UTC).date()
        while day >= first and len(out) < limit:
            for item in reversed(self._db.query_all(f"ALERTDAY#{day.isoformat()}")):
                entry = _entry_from_item(item)
                if entry.created_at < since:
                    continue
                if rule is not None and entry.rule != rule:
                    continue
                if tenant is not None and entry.scope_values.get("tenant") != tenant:
                    continue
                out.append(entry)
                if len(out) >= limit:
                    break
            day -= timedelta(days=1)
        for entry in out:
            self._attach_channels(entry)
        return out

    def _history_key(self, alert_id: str) -> dict[str, Any] | None:
        """The key of an alert's history item, from its ``ALERTID#`` index item."""
        self._db.ensure_ready()
        index = self._db.call(
            "get_item",
            TableName=self.table,
            Key={"pk": _s(f"ALERTID#{alert_id}"), "sk": _s("A")},
            ConsistentRead=True,
        ).get("Item")
        if index is None:
            return None
        return {"pk": _s(f"ALERTDAY#{index['day']['S']}"), "sk": index["day_sk"]}

    def get_alert(self, alert_id: str) -> AlertEntry | None:
        key = self._history_key(alert_id)
        if key is None:
            return None
        found = self._db.call("get_item", TableName=self.table, Key=key, ConsistentRead=True).get(
            "Item"
        )
        if found is None:
            return None
        entry = _entry_from_item(found)
        self._attach_channels(entry)
        return entry

    def ack(self, alert_id: str, *, now: datetime) -> bool:
        key = self._history_key(alert_id)
        if key is None:
            return False
        self._db.call(
            "update_item",
            TableName=self.table,
            Key=key,
            UpdateExpression="SET acked_us = if_not_exists(acked_us, :now)",
            ExpressionAttributeValues={":now": _n(micros(now))},
        )
        return True

    def put_rule(self, name: str, body: dict[str, Any], *, now: datetime) -> None:
        self._db.ensure_ready()
        self._db.call(
            "put_item",
            TableName=self.table,
            Item={
                "pk": _s("ALERTRULES"),
                "sk": _s(name),
                "body": _s(json.dumps(body, sort_keys=True)),
                "updated_us": _n(micros(now)),
            },
        )

    def delete_rule(self, name: str) -> bool:
        self._db.ensure_ready()
        answer = self._db.call(
            "delete_item",
            TableName=self.table,
            Key={"pk": _s("ALERTRULES"), "sk": _s(name)},
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in answer

    def rules(self) -> list[dict[str, Any]]:
        self._db.ensure_ready()
        return [json.loads(item["body"]["S"]) for item in self._db.query_all("ALERTRULES")]

    def prune(self, *, now: datetime, history_days: int) -> None:
        """Nothing to do: history and claims expire by TTL (``history_days``)."""

    def _attach_channels(self, entry: AlertEntry) -> None:
        for claim in self.claims(entry.rule, entry.scope, entry.period_label):
            if claim.key.level == entry.level_pct:
                entry.channels[claim.key.channel] = claim

    def close(self) -> None:
        self._db.close()


def _key(key: AlertKey) -> dict[str, dict[str, str]]:
    return {
        "pk": _s(f"CLAIM#{_escape(key.rule)}#{_escape(key.scope)}#{_escape(key.period)}"),
        "sk": _s(f"{key.level:04d}#{key.channel}"),
    }


def _entry_from_item(item: dict[str, Any]) -> AlertEntry:
    body = json.loads(item["body"]["S"])
    acked = item.get("acked_us")
    return AlertEntry(
        alert_id=body["alert_id"],
        rule=body["rule"],
        kind=body["kind"],
        scope=body["scope"],
        scope_values=body["scope_values"],
        period=body["period"],
        period_label=body["period_label"],
        period_start=from_micros(body["period_start_us"]),
        level_pct=body["level"],
        limit_nano=body["limit_nano"],
        observed_nano=body["observed_nano"],
        created_at=from_micros(body["created_us"]),
        acked_at=from_micros(int(acked["N"])) if acked else None,
    )


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
