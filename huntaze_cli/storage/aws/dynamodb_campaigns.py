"""The campaign store on DynamoDB, shared by every host that runs huntaze.

One table (``[campaigns] table``) with string keys ``pk``/``sk``, on-demand billing, TTL
on ``expires_at`` and one sparse global secondary index, ``lists`` (``lk``/``ls``):

The items and their keys are listed in dynamodb_campaign_items.py.

**No hot partition.** Every message is its own partition key, so a 100k-recipient
campaign spreads its writes over the whole table. Lists the generator and `requeue`
page through (``pending``, ``generated``, ``dead`` with text, ``gendead``: generation
gave up) are index partitions of at most 1,000 messages each (by ``seq``); a message in
any other state has no ``lk`` and costs the index nothing. Counts are eight counter
shards per campaign (one picked at random per write), read with one Query: O(1) in the
campaign's size, and no single item takes every write of a large campaign.

**Conditional transitions.** Every state change is an ``UpdateItem`` conditional on the
state it leaves, committed in one ``TransactWriteItems`` with the counter shard's
``ADD`` (up to 99 messages per transaction), so counts never drift from the messages,
and two hosts cannot move one message twice or backwards (``sent`` is final). When a
condition fails, the cancellation reasons name the messages that moved elsewhere; they
are dropped and the rest committed. A transaction conflict (two writers on one shard)
is retried with jittered backoff. An idempotency key is a conditional Put
(``attribute_not_exists``), so one key names one campaign across hosts. The generation
lease is a conditional update of the campaign item.

**Retention.** Campaign, key, message and counter items expire ``retention_days`` after
their last write (DynamoDB TTL, deleted within days of expiry); heartbeats after 7 days.

**Consistency.** Items and counts are read strongly consistent; the lists (``recent``,
``pending``, ``generated``) come from the index, which lags writes by a fraction of a
second: a message missed by one pass of the generator stays ``pending`` in the counts,
and the generator goes round again (``generation.generate_campaign``).

IAM actions on ``arn:aws:dynamodb:<region>:<account>:table/<table>`` and
``.../table/<table>/index/*``: ``dynamodb:GetItem``, ``dynamodb:PutItem``,
``dynamodb:UpdateItem``, ``dynamodb:DeleteItem``, ``dynamodb:Query`` (TransactWriteItems
is authorised as its Puts and Updates); with ``create_tables = true`` also
``dynamodb:DescribeTable``, ``dynamodb:CreateTable``, ``dynamodb:DescribeTimeToLive``,
``dynamodb:UpdateTimeToLive``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from huntaze_cli.clock import SYSTEM_CLOCK, Clock
from huntaze_cli.errors import BackendError
from huntaze_cli.storage.aws.campaign_table import MAX_RETRIES, TTL_ATTRIBUTE, CampaignTable
from huntaze_cli.storage.aws.campaign_table import item_key as _key
from huntaze_cli.storage.aws.campaign_table import number as _n
from huntaze_cli.storage.aws.campaign_table import string as _s
from huntaze_cli.storage.aws.dynamodb_campaign_items import (
    BUCKET,
    GENDEAD,
    campaign_from_item,
    campaign_item,
    campaign_key,
    heartbeat_from_item,
    lease_until_of,
    list_key,
    message_item,
    message_move,
    message_pk,
    pending_from_item,
    recipient_of,
)
from huntaze_cli.storage.campaigns import (
    MESSAGE_STATES,
    CampaignRow,
    DeadLetter,
    Heartbeat,
    PendingMessage,
    finished_state,
    split_key,
)

if TYPE_CHECKING:
    from huntaze_cli.config import Config

HEARTBEAT_TTL_S = 7 * 86_400
_PER_TRANSACTION = 99  # + the counter shard = DynamoDB's 100 items


class DynamoDBCampaignStore:
    """The ``CampaignStore`` protocol on one DynamoDB table, shared across hosts."""

    def __init__(self, table: CampaignTable) -> None:
        self._t = table
        self._lock = threading.Lock()
        self._seqs: dict[tuple[str, str], int] = {}  # (campaign, recipient) -> seq, from pending
        self._recipients: dict[str, int] = {}  # campaign -> recipients, fixed once generating

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock = SYSTEM_CLOCK) -> DynamoDBCampaignStore:
        """The store ``[campaigns]`` describes (``backend = "dynamodb"``)."""
        return cls(CampaignTable.from_config(config, clock=clock))

    def close(self) -> None:
        self._t.close()

    # --- campaigns ---------------------------------------------------------------------

    def create(
        self,
        *,
        campaign_id: str,
        idempotency_key: str | None,
        spec: dict[str, Any],
        recipients: Iterable[tuple[str, dict[str, str]]],
        estimated_cost_nano: int,
        generation_owner: str | None = None,
        lease_s: float = 60.0,
    ) -> int:
        """Claim the key, store the campaign (``estimating``) and its recipients 99 per
        transaction, then make it ``generating``. A failure removes the campaign and
        frees the key (messages already written expire with the TTL)."""
        self._t.ensure_ready()
        now = self._t.clock.now()
        if idempotency_key:
            try:
                self._t.call(
                    "put_item",
                    TableName=self._t.name,
                    Item={
                        **_key("K#" + idempotency_key, "K"),
                        "campaign_id": _s(campaign_id),
                        TTL_ATTRIBUTE: self._t.expires(),
                    },
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except ClientError as exc:
                raise BackendError(
                    f"idempotency key {idempotency_key!r} already names a campaign"
                ) from exc
        item = campaign_item(
            campaign_id,
            spec,
            now=now,
            estimated_cost_nano=estimated_cost_nano,
            lease_until=self._t.clock.time() + lease_s if generation_owner else 0,
            idempotency_key=idempotency_key,
            generation_owner=generation_owner,
            expires=self._t.expires(),
        )
        try:
            self._t.call("put_item", TableName=self._t.name, Item=item)
            count = 0
            chunk: list[tuple[str, dict[str, str]]] = []
            for recipient in recipients:
                chunk.append(recipient)
                if len(chunk) == _PER_TRANSACTION:
                    self._put_messages(campaign_id, chunk, count)
                    count += len(chunk)
                    chunk = []
            if chunk:
                self._put_messages(campaign_id, chunk, count)
                count += len(chunk)
            self._update_campaign(campaign_id, {"recipients": _n(count), "state": _s("generating")})
        except BaseException:
            self._t.call(
                "delete_item", TableName=self._t.name, Key=_key(*campaign_key(campaign_id))
            )
            if idempotency_key:
                self._t.call(
                    "delete_item", TableName=self._t.name, Key=_key("K#" + idempotency_key, "K")
                )
            raise
        return count

    def _put_messages(
        self, campaign_id: str, chunk: list[tuple[str, dict[str, str]]], first_seq: int
    ) -> None:
        if len({rid for rid, _ in chunk}) != len(chunk):
            raise BackendError(f"campaign {campaign_id}: a recipient id appears twice")
        now = self._t.clock.now().isoformat()
        expires = self._t.expires()
        puts = [
            {
                "Put": {
                    "TableName": self._t.name,
                    "Item": message_item(
                        campaign_id, rid, first_seq + offset, fields, now=now, expires=expires
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for offset, (rid, fields) in enumerate(chunk)
        ]
        moved = self._t.transact_counted(campaign_id, puts, {"pending": 1})
        if moved != len(puts):
            raise BackendError(f"campaign {campaign_id}: a recipient id appears twice")

    def find_by_key(self, idempotency_key: str) -> str | None:
        item = self._t.item("K#" + idempotency_key, "K")
        return item["campaign_id"]["S"] if item else None

    def get(self, campaign_id: str) -> CampaignRow | None:
        item = self._t.item(*campaign_key(campaign_id))
        return campaign_from_item(item) if item else None

    def recent(self, limit: int = 20) -> list[CampaignRow]:
        rows: list[CampaignRow] = []
        month = self._t.clock.now().replace(day=1)
        for _ in range(13):  # at most a year back: campaigns expire before that
            for item in self._t.query(
                "R#" + month.strftime("%Y-%m"), index=True, forward=False, limit=limit - len(rows)
            ):
                rows.append(campaign_from_item(item))
            if len(rows) >= limit:
                break
            month = (month - timedelta(days=1)).replace(day=1)
        return rows[:limit]

    def set_state(self, campaign_id: str, state: str) -> None:
        self._update_campaign(campaign_id, {"state": _s(state)})

    def counts(self, campaign_id: str) -> dict[str, int]:
        totals = self._counters(campaign_id)
        return {state: totals.get(state, 0) for state in MESSAGE_STATES}

    def _counters(self, campaign_id: str) -> dict[str, int]:
        totals: dict[str, int] = {}
        for shard in self._t.query("N#" + campaign_id):
            for name, value in shard.items():
                if "N" in value and name != TTL_ATTRIBUTE:
                    totals[name] = totals.get(name, 0) + int(value["N"])
        return totals

    def refresh_state(self, campaign_id: str) -> str:
        campaign = self.get(campaign_id)
        if campaign is None:
            return "unknown"
        state = finished_state(self.counts(campaign_id))
        if campaign.state != "delivering" or state is None:
            return campaign.state
        self._update_campaign(campaign_id, {"state": _s(state)}, only_if_state="delivering")
        return state

    # --- generation ------------------------------------------------------------------

    def claim_generation(self, campaign_id: str, owner: str, *, lease_s: float) -> bool:
        now = self._t.clock.time()
        try:
            self._t.call(
                "update_item",
                TableName=self._t.name,
                Key=_key(*campaign_key(campaign_id)),
                UpdateExpression="SET gen_owner = :o, gen_lease_until = :u",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(gen_owner)"
                " OR gen_owner = :o OR gen_lease_until < :now)",
                ExpressionAttributeValues={
                    ":o": _s(owner),
                    ":u": {"N": repr(now + lease_s)},
                    ":now": {"N": repr(now)},
                },
            )
        except ClientError:  # a failed condition: someone else holds it, or no campaign
            return False
        return True

    def release_generation(self, campaign_id: str, owner: str) -> None:
        with contextlib.suppress(ClientError):  # not ours any more: nothing to give up
            self._t.call(
                "update_item",
                TableName=self._t.name,
                Key=_key(*campaign_key(campaign_id)),
                UpdateExpression="REMOVE gen_owner SET gen_lease_until = :zero",
                ConditionExpression="gen_owner = :o",
                ExpressionAttributeValues={":o": _s(owner), ":zero": _n(0)},
            )

    def generation_owner(self, campaign_id: str) -> str | None:
        item = self._t.item(*campaign_key(campaign_id))
        if not item or "gen_owner" not in item:
            return None
        live = lease_until_of(item) >= self._t.clock.time()
        return item["gen_owner"]["S"] if live else None

    def orphaned(self, *, limit: int = 10) -> list[str]:
        """Among the 100 newest campaigns (the ``lists`` index), those generating (or paused
        by a budget) with no live lease, oldest first. An ``estimating`` campaign is one
        whose creator died while storing its recipients: it is not generated from half
        its list."""
        now = self._t.clock.time()
        found = []
        for campaign in reversed(self.recent(100)):
            if campaign.state not in ("generating", "paused_budget"):
                continue
            item = self._t.item(*campaign_key(campaign.id))  # the index may lag the lease
            lease_until = lease_until_of(item) if item else now
            state = item["state"]["S"] if item else None
            if state in ("generating", "paused_budget") and lease_until < now:
                found.append(campaign.id)
                if len(found) == limit:
                    break
        return found

    # --- messages --------------------------------------------------------------------

    def pending(self, campaign_id: str, *, after_seq: int, limit: int) -> list[PendingMessage]:
        found = [
            pending_from_item(item)
            for item in self._listed(campaign_id, "pending", after_seq=after_seq, limit=limit)
        ]
        with self._lock:
            for message in found:
                self._seqs[(campaign_id, message.recipient_id)] = message.seq
        return found

    def generated(self, campaign_id: str) -> Iterator[tuple[str, str]]:
        for item in self._listed(campaign_id, "generated"):
            yield recipient_of(item), item["text"]["S"]

    def save_generated(self, campaign_id: str, rows: Sequence[tuple[str, str, str]]) -> None:
        moves: list[tuple[str, str, dict[str, Any]]] = []
        for rid, text, provider in rows:
            seq = self._seq(campaign_id, rid)
            if seq is None:
                continue
            moves.append(
                (
                    rid,
                    "SET #s = :new, #t = :text, provider = :p, lk = :lk, updated_at = :now,"
                    " expires_at = :exp REMOVE #e",
                    {
                        ":text": _s(text),
                        ":p": _s(provider),
                        ":lk": _s(list_key(campaign_id, "generated", seq)),
                    },
                )
            )
        self._move(campaign_id, "pending", "generated", moves)

    def generation_failed(
        self, campaign_id: str, rows: Sequence[tuple[str, str]], *, final: bool
    ) -> None:
        moves: list[tuple[str, str, dict[str, Any]]] = []
        for rid, error in rows:
            seq = self._seq(campaign_id, rid)
            if seq is None:
                continue
            label = GENDEAD if final else "pending"
            moves.append(
                (
                    rid,
                    "SET #s = :new, #e = :error, lk = :lk, updated_at = :now, expires_at = :exp",
                    {":error": _s(error), ":lk": _s(list_key(campaign_id, label, seq))},
                )
            )
        self._move(campaign_id, "pending", "dead" if final else "pending", moves, gendead=final)

    def mark_queued(self, campaign_id: str, recipient_ids: Sequence[str]) -> None:
        moves: list[tuple[str, str, dict[str, Any]]] = [
            (rid, "SET #s = :new, updated_at = :now, expires_at = :exp REMOVE lk", {})
            for rid in recipient_ids
        ]
        self._move(campaign_id, "generated", "queued", moves)

    def delivery_outcome(
        self, key: str, state: str, *, sent_at: str | None, error: str | None
    ) -> None:
        campaign_id, rid = split_key(key)
        for _ in range(MAX_RETRIES):
            item = self._t.item(*message_pk(campaign_id, rid))
            if item is None:
                return
            old = item["state"]["S"]
            if old == "sent":
                return  # sent is final
            update = "SET #s = :new, updated_at = :now, expires_at = :exp"
            values: dict[str, Any] = {}
            update += ", #e = :error" if error is not None else ""
            if error is not None:
                values[":error"] = _s(error)
            if sent_at is not None:
                update += ", sent_at = :sent"
                values[":sent"] = _s(sent_at)
            if state == "dead":
                label = "dead" if "text" in item else GENDEAD
                update += ", lk = :lk"
                values[":lk"] = _s(list_key(campaign_id, label, int(item["seq"]["N"])))
                gendead = "text" not in item
            else:
                gendead = False
            removes = ["lk"] if state != "dead" else []
            if error is None:
                removes.append("#e")
            if removes:
                update += " REMOVE " + ", ".join(removes)
            if self._move(campaign_id, old, state, [(rid, update, values)], gendead=gendead):
                return
        raise BackendError(f"campaign store: message {key} kept changing; retry later")

    def requeued(self, campaign_id: str) -> int:
        rids = [recipient_of(item) for item in self._listed(campaign_id, "dead")]
        moves: list[tuple[str, str, dict[str, Any]]] = [
            (rid, "SET #s = :new, updated_at = :now, expires_at = :exp REMOVE lk, #e", {})
            for rid in rids
        ]
        moved = self._move(campaign_id, "dead", "queued", moves)
        if moved:
            campaign = self.get(campaign_id)
            if campaign is not None and campaign.state.startswith("completed"):
                self._update_campaign(
                    campaign_id, {"state": _s("delivering")}, only_if_state=campaign.state
                )
        return moved

    def retry_failed_generation(self, campaign_id: str) -> int:
        moves: list[tuple[str, str, dict[str, Any]]] = []
        for item in self._listed(campaign_id, GENDEAD):
            seq = int(item["seq"]["N"])
            moves.append(
                (
                    recipient_of(item),
                    "SET #s = :new, lk = :lk, updated_at = :now, expires_at = :exp",
                    {":lk": _s(list_key(campaign_id, "pending", seq))},
                )
            )
        return self._move(campaign_id, "dead", "pending", moves, gendead=True)

    def dead_letters(self, campaign_id: str, *, limit: int) -> list[DeadLetter]:
        found = [
            DeadLetter(
                item["pk"]["S"].split("#", 2)[2],
                int(item["seq"]["N"]),
                stage,
                item["error"]["S"] if "error" in item else None,
                datetime.fromisoformat(item["updated_at"]["S"]),
            )
            for label, stage in (("dead", "delivery"), (GENDEAD, "generation"))
            for item in self._listed(campaign_id, label, limit=limit)
        ]
        return sorted(found, key=lambda letter: letter.seq)[:limit]

    def needs_generation(self, campaign_id: str) -> bool:
        totals = self._counters(campaign_id)
        return totals.get("pending", 0) > 0 or totals.get(GENDEAD, 0) > 0

    # --- workers ---------------------------------------------------------------------

    def heartbeat(
        self, worker_id: str, *, started_at: datetime, delivered: int, stopped: bool = False
    ) -> None:
        self._t.ensure_ready()
        self._t.call(
            "put_item",
            TableName=self._t.name,
            Item={
                **_key("W", worker_id),
                "host": _s(socket.gethostname()),
                "pid": _n(os.getpid()),
                "started_at": _s(started_at.isoformat()),
                "beat_at": _s(self._t.clock.now().isoformat()),
                "delivered": _n(delivered),
                "stopped": {"BOOL": stopped},
                TTL_ATTRIBUTE: self._t.expires(HEARTBEAT_TTL_S),
            },
        )

    def heartbeats(self) -> list[Heartbeat]:
        beats = [heartbeat_from_item(item) for item in self._t.query("W")]
        beats.sort(key=lambda beat: beat.beat_at, reverse=True)
        return beats[:50]

    # --- transitions -----------------------------------------------------------------

    def _move(
        self,
        campaign_id: str,
        old: str,
        new: str,
        moves: Sequence[tuple[str, str, dict[str, Any]]],
        *,
        gendead: bool = False,
    ) -> int:
        """Apply ``(recipient, update, values)`` to messages still in ``old``; returns how
        many moved. Counter shards follow in the same transactions."""
        self._t.ensure_ready()
        common = {":now": _s(self._t.clock.now().isoformat()), ":exp": self._t.expires()}
        moved = 0
        for start in range(0, len(moves), _PER_TRANSACTION):
            updates = [
                message_move(
                    self._t.name, campaign_id, rid, update, {**common, **values}, old=old, new=new
                )
                for rid, update, values in moves[start : start + _PER_TRANSACTION]
            ]
            deltas: dict[str, int] = {}
            if old != new:
                deltas = {old: -1, new: 1}
                if gendead:
                    deltas[GENDEAD] = 1 if new == "dead" else -1
            moved += self._t.transact_counted(campaign_id, updates, deltas)
        with self._lock:
            for rid, _, _ in moves:
                self._seqs.pop((campaign_id, rid), None)
        return moved

    # --- reads -----------------------------------------------------------------------

    def _seq(self, campaign_id: str, rid: str) -> int | None:
        with self._lock:
            seq = self._seqs.get((campaign_id, rid))
        if seq is not None:
            return seq
        item = self._t.item(*message_pk(campaign_id, rid))
        return int(item["seq"]["N"]) if item else None

    def _listed(
        self, campaign_id: str, label: str, *, after_seq: int = -1, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Messages on one list, in seq order, bucket by bucket of the index."""
        recipients = self._recipient_count(campaign_id)
        left = limit
        for bucket in range(max(after_seq + 1, 0) // BUCKET, (recipients - 1) // BUCKET + 1):
            for item in self._t.query(
                f"L#{campaign_id}#{label}#{bucket}",
                index=True,
                after=f"{after_seq:010d}" if after_seq >= bucket * BUCKET else None,
                limit=left,
            ):
                yield item
                if left is not None:
                    left -= 1
                    if left == 0:
                        return

    def _recipient_count(self, campaign_id: str) -> int:
        with self._lock:
            known = self._recipients.get(campaign_id)
        if known is not None:
            return known
        item = self._t.item(*campaign_key(campaign_id))
        if item is None:
            return 0
        count = int(item["recipients"]["N"])
        if item["state"]["S"] != "estimating":
            with self._lock:
                self._recipients[campaign_id] = count
        return count

    # --- campaign item ---------------------------------------------------------------

    def _update_campaign(
        self, campaign_id: str, values: dict[str, Any], *, only_if_state: str | None = None
    ) -> None:
        sets = [f"#a{i} = :a{i}" for i in range(len(values))]
        names = {f"#a{i}": name for i, name in enumerate(values)}
        attrs = {f":a{i}": value for i, value in enumerate(values.values())}
        condition = "attribute_exists(pk)"
        if only_if_state is not None:
            condition += " AND #st = :only"
            names["#st"] = "state"
            attrs[":only"] = _s(only_if_state)
        with contextlib.suppress(ClientError):  # gone, or another host moved it first
            self._t.call(
                "update_item",
                TableName=self._t.name,
                Key=_key(*campaign_key(campaign_id)),
                UpdateExpression="SET updated_at = :now, expires_at = :exp, " + ", ".join(sets),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    **attrs,
                    ":now": _s(self._t.clock.now().isoformat()),
                    ":exp": self._t.expires(),
                },
            )
