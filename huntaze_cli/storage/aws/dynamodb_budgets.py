"""Budget reservations in the DynamoDB ledger table: exact across hosts.

Implements ``storage.budgets.ReservationStore``. Items, beside the ledger's own:

==========================  ===================================  ==========================
item                        pk                                   sk
==========================  ===================================  ==========================
a budget period's counters  ``BUDGET#<budget>#<period>``         ``P``
one reservation             ``BUDGET#<budget>#<period>``         ``R#<reservation id>``
==========================  ===================================  ==========================

The counters item holds ``spent_nano``, ``reserved_nano`` and their sum ``used_nano``:
DynamoDB conditions compare an attribute with a value, not a sum of two attributes, so
the sum is kept as an attribute of its own and every write moves it with its parts.

``reserve`` is one ``TransactWriteItems``: per budget, an ``UpdateItem`` adding the amount
under the condition ``used_nano <= limit - amount`` and a ``Put`` of the reservation
item; DynamoDB applies all of them or none. When a condition fails, one ``UpdateItem``
notes the refusal and returns the budget's counters: if settled spend alone leaves room
and calls in flight hold some, the expired reservations of that budget are released
(one Query of its partition) and, if any was, the reservation is tried once more.
``settle`` is one transaction per call: delete the reservation (condition: it still
exists) and move the counters; if it had expired and was released already, only the
cost is added. A batch handed back after a failed write skips the calls this store
settled already. Releasing an expired reservation is the same pair, conditional on the
reservation still being there, so two hosts never release one twice. Transactions go
through ``DynamoDBTable.commit``, which retries conflicts and throttling with backoff.

IAM actions on the ledger table: ``dynamodb:UpdateItem``, ``dynamodb:PutItem`` and
``dynamodb:DeleteItem`` (``TransactWriteItems`` is authorised as these),
``dynamodb:GetItem`` and ``dynamodb:Query``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from huntaze_cli.clock import SYSTEM_CLOCK, US_PER_S, Clock, seconds_to_micros
from huntaze_cli.errors import BackendError
from huntaze_cli.storage.aws.dynamodb_ledger import TABLE
from huntaze_cli.storage.aws.dynamodb_table import (
    TRANSACTION_RETRY_CODES,
    DynamoDBTable,
    kept_failing,
)
from huntaze_cli.storage.budgets import BudgetUsage, Claim, Reservation, Settlement

if TYPE_CHECKING:
    from huntaze_cli.config import Config

# Conflicting writers (every process moves the same counters item) are retried this
# many times, with backoff from 20 ms to 1 s, before an error.
_MAX_RETRIES = 12
_SETTLED_KEPT = 4096  # far more than one batch of settlements (budgets/gate.py)
# Counters outlive any month; a reservation item outlives its expiry by a day (TTL is
# only the clean-up: expiry itself is decided by ``expires_us``).
_COUNTER_KEEP_S = 400 * 86_400
_RESERVATION_KEEP_S = 86_400


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _pk(budget: str, period: str) -> dict[str, str]:
    # "#" separates key parts; "%" escapes itself, so distinct names never collide.
    return _s(f"BUDGET#{budget.replace('%', '%25').replace('#', '%23')}#{period}")


class DynamoDBReservationStore:
    """The ``ReservationStore`` protocol on the ledger's DynamoDB table, shared by every host."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None,
        endpoint_url: str | None,
        create_tables: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.table = table
        self._clock = clock
        # Reservations this store settled, oldest first: a batch whose write failed half
        # way is handed back whole (llm/batching.py), and its settled part must not count
        # twice (the reservation is gone, which otherwise means "expired, add the cost").
        self._settled: dict[str, None] = {}
        self._db = DynamoDBTable(
            TABLE,
            table,
            region=region,
            endpoint_url=endpoint_url,
            create=create_tables,
            connect_timeout=2,
            read_timeout=5,
            max_retries=_MAX_RETRIES,
            base_s=0.02,
            max_s=1.0,
            retry_codes=TRANSACTION_RETRY_CODES,
            explain=_explain,
        )

    @classmethod
    def from_config(cls, config: Config) -> DynamoDBReservationStore:
        ledger = config.ledger
        return cls(
            ledger.table,
            region=ledger.region,
            endpoint_url=ledger.endpoint_url,
            create_tables=ledger.create_tables,
        )

    # --- ReservationStore protocol ---------------------------------------------------

    def reserve(self, reservation_id: str, claims: Sequence[Claim], *, ttl_s: float) -> Reservation:
        self._db.ensure_ready()
        for claim in claims:
            if claim.amount_nano > claim.limit_nano:
                return self._refuse(claim)
        released = False
        while True:
            now_us = seconds_to_micros(self._clock.time())
            expires_us = now_us + seconds_to_micros(ttl_s)
            items: list[dict[str, Any]] = []
            for claim in claims:
                items.append(self._hold(claim))
                items.append(self._note(reservation_id, claim, expires_us))
            reasons = self._db.commit(items)
            if reasons is None:
                return Reservation(None, self._after(claims))
            failed = [
                claims[i // 2]
                for i, reason in enumerate(reasons)
                if i % 2 == 0 and reason == "ConditionalCheckFailed"
            ]
            if not failed:  # a reservation item of that id exists already
                raise BackendError(
                    f"DynamoDB table {self.table!r} at {self._db.endpoint()}: reservation "
                    f"{reservation_id!r} was made already ({', '.join(reasons)})"
                )
            refusal = self._refuse(failed[0])
            claim = failed[0]
            reserved = refusal.reserved_nano[claim.budget]
            spent = refusal.used_nano[claim.budget] - reserved
            # Expired reservations matter only when they, not settled spend, fill it.
            if released or not reserved or spent + claim.amount_nano > claim.limit_nano:
                return refusal
            released = True
            need = spent + reserved + claim.amount_nano - claim.limit_nano
            if not self._release_expired(claim.budget, claim.period, now_us, need=need):
                return refusal

    def settle(self, settlements: Sequence[Settlement]) -> None:
        if not settlements:
            return
        self._db.ensure_ready()
        for settlement in settlements:
            if settlement.reservation_id in self._settled:
                continue  # settled before a later one of its batch failed: not twice
            items: list[dict[str, Any]] = []
            for claim in settlement.claims:
                items.append(
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": self._reservation_key(settlement.reservation_id, claim),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    }
                )
                items.append(self._move(claim, settlement.cost_nano, -claim.amount_nano))
            if self._db.commit(items) is not None:
                # A reservation expired and was released: the money was spent all the same.
                self._db.commit([self._move(c, settlement.cost_nano, 0) for c in settlement.claims])
            self._settled[settlement.reservation_id] = None
            if len(self._settled) > _SETTLED_KEPT:
                del self._settled[next(iter(self._settled))]

    def usage(self, budget: str, period: str) -> BudgetUsage:
        self._db.ensure_ready()
        item = self._counters(budget, period)
        if _num(item, "reserved_nano"):
            # Expired or not, released here or by another writer meanwhile: read again.
            self._release_expired(budget, period, seconds_to_micros(self._clock.time()))
            item = self._counters(budget, period)
        return BudgetUsage(
            _num(item, "spent_nano"), _num(item, "reserved_nano"), _num(item, "refused_nano")
        )

    def close(self) -> None:
        self._db.close()

    # --- items -----------------------------------------------------------------------

    def _counters_key(self, budget: str, period: str) -> dict[str, Any]:
        return {"pk": _pk(budget, period), "sk": _s("P")}

    def _reservation_key(self, reservation_id: str, claim: Claim) -> dict[str, Any]:
        return {"pk": _pk(claim.budget, claim.period), "sk": _s(f"R#{reservation_id}")}

    def _counter_ttl(self) -> int:
        return int(self._clock.time()) + _COUNTER_KEEP_S

    def _hold(self, claim: Claim) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": self._counters_key(claim.budget, claim.period),
                "UpdateExpression": "ADD used_nano :a, reserved_nano :a, spent_nano :zero "
                "SET expires_at = :ttl, refused_nano = :zero",
                "ConditionExpression": "attribute_not_exists(used_nano) OR used_nano <= :room",
                "ExpressionAttributeValues": {
                    ":a": _n(claim.amount_nano),
                    ":zero": _n(0),
                    ":room": _n(claim.limit_nano - claim.amount_nano),
                    ":ttl": _n(self._counter_ttl()),
                },
            }
        }

    def _note(self, reservation_id: str, claim: Claim, expires_us: int) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table,
                "Item": {
                    **self._reservation_key(reservation_id, claim),
                    "amount_nano": _n(claim.amount_nano),
                    "expires_us": _n(expires_us),
                    "expires_at": _n(expires_us // US_PER_S + _RESERVATION_KEEP_S),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _move(self, claim: Claim, spent: int, reserved: int) -> dict[str, Any]:
        """Add ``spent`` to spent and ``reserved`` (negative: a release) to reserved."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": self._counters_key(claim.budget, claim.period),
                "UpdateExpression": "ADD used_nano :u, spent_nano :s, reserved_nano :r "
                "SET expires_at = :ttl",
                "ExpressionAttributeValues": {
                    ":u": _n(spent + reserved),
                    ":s": _n(spent),
                    ":r": _n(reserved),
                    ":ttl": _n(self._counter_ttl()),
                },
            }
        }

    # --- calls -----------------------------------------------------------------------

    def _counters(self, budget: str, period: str) -> dict[str, Any]:
        return self._db.get(self._counters_key(budget, period)) or {}

    def _refuse(self, claim: Claim) -> Reservation:
        """Note the refused amount; the refusal, with the counters read in the same write."""
        counters = self._db.call(
            "update_item",
            TableName=self.table,
            Key=self._counters_key(claim.budget, claim.period),
            UpdateExpression="SET refused_nano = :r, expires_at = :ttl",
            ExpressionAttributeValues={
                ":r": _n(claim.amount_nano),
                ":ttl": _n(self._counter_ttl()),
            },
            ReturnValues="ALL_NEW",
        ).get("Attributes", {})
        return Reservation(
            claim.budget,
            {claim.budget: _num(counters, "used_nano")},
            {claim.budget: _num(counters, "reserved_nano")},
        )

    def _after(self, claims: Sequence[Claim]) -> dict[str, int]:
        """spent + reserved per budget after a reservation (read back, one call each)."""
        return {
            claim.budget: _num(self._counters(claim.budget, claim.period), "used_nano")
            for claim in claims
        }

    def _release_expired(
        self, budget: str, period: str, now_us: int, *, need: int | None = None
    ) -> int:
        """Release the reservations expired before ``now_us`` (or, given ``need``, enough
        of them to free that much: other writers release the rest as they need to); the
        amount this call released."""
        released = 0
        for item in self._db.query_iter(
            _pk(budget, period)["S"],
            between=("R#", "R#\uffff"),
            where=("expires_us < :now", {":now": _n(now_us)}),
        ):
            expires_us = int(item["expires_us"]["N"])
            amount = int(item["amount_nano"]["N"])
            claim = Claim(budget, period, 0, amount)
            reasons = self._db.commit(
                [
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": {"pk": item["pk"], "sk": item["sk"]},
                            "ConditionExpression": "expires_us = :e",
                            "ExpressionAttributeValues": {":e": _n(expires_us)},
                        }
                    },
                    self._move(claim, 0, -amount),
                ]
            )
            # Another host releasing it at the same moment makes the condition fail: fine.
            if reasons is None:
                released += amount
                if need is not None and released >= need:
                    break
        return released


def _num(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0


def _explain(exc: ClientError, action: str, table: DynamoDBTable) -> BackendError | None:
    """A budget write that kept conflicting or throttling: nothing was held or settled."""
    return kept_failing(exc, action, table, note="; that write of the budget did not happen")
