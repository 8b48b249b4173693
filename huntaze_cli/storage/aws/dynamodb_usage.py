"""Usage rollups on the DynamoDB ledger's table: how they are keyed, written and read.

==========================  ===============================  ===============================
item                        pk                               sk
==========================  ===============================  ===============================
usage rollup                ``USAGEDAY#<yyyy-mm-dd>``        provider, model, campaign,
                                                             experiment, arm, route reason
                                                             (escaped, joined by ``\\x1f``)
==========================  ===============================  ===============================

Each is updated with one ``ADD`` per transaction that touches it, like the daily and
slot rollups, and expires ``rollup_retention_days`` after its day. Integer sums are exact
Numbers; the float sums (squares for variances) are Numbers written by ``repr``.
Only the histogram buckets a batch touched are sent. Items written before the route
reason joined the key have a five-part sort key and no ``route_reason``: they stay as
they are and read back with the reason unknown (None), beside the newer items.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from huntaze_cli.storage.ledger import (
    LATENCY_BUCKETS,
    OUTPUT_BUCKETS,
    USAGE_FLOAT_FIELDS,
    USAGE_INT_FIELDS,
    UsageRollup,
)

PARTITION = "USAGEDAY#"
_SET = ("day", "provider", "model", "campaign_id", "experiment", "arm", "route_reason")


def usage_partition(day: str) -> str:
    return f"{PARTITION}{day}"


def usage_update(
    table: str, rollup: UsageRollup, *, sort_key: str, expires_at: int, ttl_attribute: str
) -> dict[str, Any]:
    """The ``Update`` of one transaction that adds ``rollup`` to its stored item."""
    key = rollup.key
    names = {f"#{name}": name for name in (*_SET, ttl_attribute)}
    values: dict[str, Any] = {
        f":{name}": {"S": value} for name, value in zip(_SET, key, strict=True)
    }
    values[f":{ttl_attribute}"] = {"N": str(expires_at)}
    adds: list[str] = []

    def add(name: str, value: int | float) -> None:
        adds.append(f"#{name} :{name}")
        names[f"#{name}"] = name
        # Floats in positional notation: "3e-06" is a valid Number, but some DynamoDB
        # emulators cannot ADD it.
        text = format(Decimal(repr(value)), "f") if isinstance(value, float) else str(value)
        values[f":{name}"] = {"N": text}

    for name in USAGE_INT_FIELDS:
        add(name, getattr(rollup, name))
    for name in USAGE_FLOAT_FIELDS:
        value = float(getattr(rollup, name))
        # Numbers hold magnitudes 1e-130..1e125; a sum outside that is noise or absurd.
        if 1e-100 < abs(value) < 1e100:
            add(name, value)
    for prefix, histogram in (("lat", rollup.latency), ("out", rollup.output)):
        for bucket, count in enumerate(histogram):
            if count:
                add(f"{prefix}_{bucket}", count)
    expression = (
        "SET "
        + ", ".join(f"#{name} = :{name}" for name in (*_SET, ttl_attribute))
        + " ADD "
        + ", ".join(adds)
    )
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": usage_partition(key[0])}, "sk": {"S": sort_key}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def usage_from_item(item: dict[str, Any]) -> UsageRollup:
    def number(name: str) -> str | None:
        attr = item.get(name)
        return attr["N"] if attr else None

    def text(name: str) -> str | None:
        attr = item.get(name)
        return (attr.get("S") or None) if attr else None

    rollup = UsageRollup(
        day=date.fromisoformat(item["day"]["S"]),
        provider=item["provider"]["S"],
        model=item["model"]["S"],
        campaign_id=text("campaign_id"),
        experiment=text("experiment"),
        arm=text("arm"),
        route_reason=text("route_reason"),
    )
    for name in USAGE_INT_FIELDS:
        setattr(rollup, name, int(number(name) or 0))
    for name in USAGE_FLOAT_FIELDS:
        setattr(rollup, name, float(number(name) or 0))
    rollup.latency = [int(number(f"lat_{i}") or 0) for i in range(LATENCY_BUCKETS)]
    rollup.output = [int(number(f"out_{i}") or 0) for i in range(OUTPUT_BUCKETS)]
    return rollup
