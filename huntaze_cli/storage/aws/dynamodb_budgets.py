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
item; DynamoDB applies all of them or none. When a condition fails the expired
reservations of that budget are released and the reservation is tried once more.
``settle`` is one transaction per call: delete the reservation (condition: it still
exists) and move the counters; if it had expired and was released already, only the
cost is added. Releasing an expired reservation is the same pair, conditional on the
reservation still being there, so two hosts never release one twice.

IAM actions on the ledger table: ``dynamodb:TransactWriteItems`` (with ``UpdateItem``,
``PutItem``, ``DeleteItem`` and ``ConditionCheck`` on it), ``dynamodb:GetItem`` and
``dynamodb:Query``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from huntaze_cli.clock import SYSTEM_CLOCK, US_PER_S, Clock, seconds_to_micros
from huntaze_cli.errors import BackendError
from huntaze_cli.storage.aws.client import THROTTLE_CODES, error_code
from huntaze_cli.storage.aws.dynamodb_ledger import TABLE
from huntaze_cli.storage.aws.dynamodb_table import DynamoDBTable
from huntaze_cli.storage.budgets import BudgetUsage, Claim, Reservation, Settlement

if TYPE_CHECKING:
    from huntaze_cli.config import Config

_RAW = frozenset({"TransactionCanceledException", "ConditionalCheckFailedException"})
_RETRY_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
_RETRY_CODES = THROTTLE_CODES | {"TransactionInProgressException", "TransactionConflictException"}
_MAX_CONFLICTS = 50
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
        self._db = DynamoDBTable(
            TABLE,
            table,
            region=region,
            endpoint_url=endpoint_url,
            create=create_tables,
            connect_timeout=2,
            read_timeout=5,
            max_retries=8,
            base_s=0.02,
            max_s=1.0,
            raw_codes=_RAW,
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
                self._note_refusal(claim)
                return Reservation(claim.budget, {claim.budget: self._used(claim)})
        released: set[str] = set()
        for conflicts in range(_MAX_CONFLICTS):
            now_us = seconds_to_micros(self._clock.time())
            expires_us = now_us + seconds_to_micros(ttl_s)
            items: list[dict[str, Any]] = []
            for claim in claims:
                items.append(self._hold(claim))
                items.append(self._note(reservation_id, claim, expires_us))
            reasons = self._transact(items)
            if reasons is None:
                return Reservation(None, self._after(claims))
            failed = [
                claims[i // 2]
                for i, reason in enumerate(reasons)
                if i % 2 == 0 and reason.get("Code") == "ConditionalCheckFailed"
            ]
            if failed:
                claim = failed[0]
                if claim.budget in released:
                    self._note_refusal(claim)
                    return Reservation(claim.budget, {claim.budget: self._used(claim)})
                released.add(claim.budget)
                self._release_expired(claim.budget, claim.period, now_us)
                continue
            if not any(reason.get("Code") in _RETRY_REASONS for reason in reasons):
                raise BackendError(
                    f"DynamoDB table {self.table!r} at {self._db.endpoint()}: reserving "
                    f"budget failed: {reasons}"
                )
            self._db.backoff(min(conflicts, 6))
        raise BackendError(
            f"DynamoDB table {self.table!r} at {self._db.endpoint()}: reserving budget kept "
            "conflicting with other writers; retry later"
        )

    def settle(self, settlements: Sequence[Settlement]) -> None:
        if not settlements:
            return
        self._db.ensure_ready()
        for settlement in settlements:
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
            if self._transact_retrying(items) is None:
                continue
            # A reservation expired and was released: the money was spent all the same.
            for claim in settlement.claims:
                self._transact_retrying([self._move(claim, settlement.cost_nano, 0)])

    def usage(self, budget: str, period: str) -> BudgetUsage:
        self._db.ensure_ready()
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

    def _transact(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Run one transaction: None when it committed, else its cancellation reasons."""
        try:
            self._db.call("transact_write_items", TransactItems=items)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise self._db.error(exc, "TransactWriteItems") from exc
            reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons") or []
            return reasons or [{"Code": "TransactionConflict"}]
        return None

    def _transact_retrying(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """``_transact``, retried while it conflicts with other writers; None: committed,
        else the reasons of a failed condition."""
        for conflicts in range(_MAX_CONFLICTS):
            reasons = self._transact(items)
            if reasons is None or not any(r.get("Code") in _RETRY_REASONS for r in reasons):
                return reasons
            self._db.backoff(min(conflicts, 6))
        raise BackendError(
            f"DynamoDB table {self.table!r} at {self._db.endpoint()}: a budget write kept "
            "conflicting with other writers; retry later"
        )

    def _counters(self, budget: str, period: str) -> dict[str, Any]:
        return self._db.get(self._counters_key(budget, period)) or {}

    def _note_refusal(self, claim: Claim) -> None:
        self._db.call(
            "update_item",
            TableName=self.table,
            Key=self._counters_key(claim.budget, claim.period),
            UpdateExpression="SET refused_nano = :r, expires_at = :ttl",
            ExpressionAttributeValues={
                ":r": _n(claim.amount_nano),
                ":ttl": _n(self._counter_ttl()),
            },
        )

    def _used(self, claim: Claim) -> int:
        return _num(self._counters(claim.budget, claim.period), "used_nano")

    def _after(self, claims: Sequence[Claim]) -> dict[str, int]:
        """spent + reserved per budget after a reservation (read back, one call each)."""
        return {claim.budget: self._used(claim) for claim in claims}

    def _release_expired(self, budget: str, period: str, now_us: int) -> None:
        for item in self._db.query_iter(_pk(budget, period)["S"], between=("R#", "R#\uffff")):
            expires_us = int(item["expires_us"]["N"])
            if expires_us >= now_us:
                continue
            amount = int(item["amount_nano"]["N"])
            claim = Claim(budget, period, 0, amount)
            self._transact_retrying(
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


def _num(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0
