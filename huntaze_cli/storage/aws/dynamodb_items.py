"""How the DynamoDB ledger's items look: cost events, rollups and alerts as DynamoDB
attribute maps, and back.

The low-level client speaks attribute maps (``{"S": "..."}``, ``{"N": "12"}``); numbers
travel as strings, so nano-dollar integers are exact both ways and no float is involved.
Keys joined from user text (accounts, campaign ids) are escaped so they cannot collide,
and bounded to DynamoDB's sort-key size. The table layout itself is described in
``dynamodb_ledger``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from huntaze_cli.clock import micros
from huntaze_cli.models import CostEvent
from huntaze_cli.storage.aws.dynamodb_usage import usage_update
from huntaze_cli.storage.ledger import (
    COUNTER_FIELDS,
    DAILY_COUNTER_FIELDS,
    LATENCY_BUCKETS,
    SCOPE_RETENTION_DAYS,
    Counters,
    DailyKey,
    DailyRollup,
    ScopeKey,
    SlotRollup,
    aggregate,
    aggregate_scopes,
    aggregate_usage,
    daily_key,
    scope_key,
    slot_of,
    usage_key,
)

TTL_ATTRIBUTE = "expires_at"
DAY_SECONDS = 86_400
MAX_TRANSACT_ITEMS = 100
# Rough byte budget of one transaction, well under DynamoDB's 4 MB (see _size_estimate).
MAX_TRANSACT_BYTES = 2_000_000
# Sort keys may hold 1024 bytes; longer ones are replaced by a digest (see bounded).
MAX_SORT_KEY_BYTES = 1000

_OPTIONAL_EVENT_FIELDS = (
    "deployment", "response_model", "error_kind", "route_reason", "campaign_id", "account",
    "experiment", "arm", "budget_action",
)  # fmt: skip
_INT_EVENT_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "cost_nano")

_DAILY_SET = (
    "day",
    "provider",
    "model",
    "account",
    "campaign_id",
    "tenant",
    "response_model",
    TTL_ATTRIBUTE,
)
_DAILY_UPDATE = (
    "SET "
    + ", ".join(f"#{name} = :{name}" for name in _DAILY_SET)
    + " ADD "
    + ", ".join(f"#{name} :{name}" for name in DAILY_COUNTER_FIELDS)
)
_DAILY_NAMES = {f"#{name}": name for name in (*_DAILY_SET, *DAILY_COUNTER_FIELDS)}
_SLOT_SET = ("slot", "provider", TTL_ATTRIBUTE)
_SLOT_NAMES = {f"#{name}": name for name in (*_SLOT_SET, *COUNTER_FIELDS)}
_SCOPE_SET = ("slot", "provider", "model", "account", "campaign_id", "tenant", TTL_ATTRIBUTE)
_SCOPE_UPDATE = (
    "SET "
    + ", ".join(f"#{name} = :{name}" for name in _SCOPE_SET)
    + " ADD "
    + ", ".join(f"#{name} :{name}" for name in DAILY_COUNTER_FIELDS)
)
_SCOPE_NAMES = {f"#{name}": name for name in (*_SCOPE_SET, *DAILY_COUNTER_FIELDS)}


# --- attribute values and keys ----------------------------------------------------------


def attr_s(value: str) -> dict[str, str]:
    return {"S": value}


def attr_n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def float_value(value: float) -> dict[str, str]:
    """A float as an exact DynamoDB Number, or as a String when Numbers cannot hold it."""
    # repr() is the shortest decimal that reads back as the same float; DynamoDB Numbers
    # hold magnitudes 1e-130..1e125, which excludes inf (the model allows it) and extremes.
    if value == 0 or (math.isfinite(value) and 1e-100 < abs(value) < 1e100):
        return {"N": repr(value)}
    return {"S": repr(value)}


def float_of(attr: dict[str, str]) -> float:
    return float(attr["N"] if "N" in attr else attr["S"])


def int_of(item: dict[str, Any], name: str) -> int:
    attr = item.get(name)
    return int(attr["N"]) if attr else 0


def str_of(item: dict[str, Any], name: str) -> str | None:
    attr = item.get(name)
    return attr["S"] if attr and "S" in attr else None


def escape(part: str) -> str:
    """Make ``part`` free of the key separators so joined keys cannot collide."""
    return part.replace("%", "%25").replace("\x1e", "%1E").replace("\x1f", "%1F")


def join_key(parts: Iterable[str]) -> str:
    return bounded("\x1f".join(escape(part) for part in parts))


def bounded(key: str, *, prefix: str = "") -> str:
    """``prefix + key``, or ``prefix`` + a digest of ``key`` when too long for a sort key.

    The prefix (a timestamp, say) keeps its place in the sort order. Escaped keys never
    contain ``\\x1e``, so a digest key cannot equal a plain one. The item's attributes
    keep the full values; keys are never parsed back.
    """
    full = prefix + key
    if len(full) * 4 <= MAX_SORT_KEY_BYTES or len(full.encode()) <= MAX_SORT_KEY_BYTES:
        return full
    return prefix + "\x1e" + hashlib.sha256(key.encode()).hexdigest()


def event_from_item(item: dict[str, Any]) -> CostEvent:
    data: dict[str, Any] = {
        "attempt_id": item["attempt_id"]["S"],
        "request_id": item["request_id"]["S"],
        "ts": datetime.fromisoformat(item["ts"]["S"]),
        "provider": item["provider"]["S"],
        "model": item["model"]["S"],
        "priced": item["priced"]["BOOL"],
        "latency_ms": float_of(item["latency_ms"]),
        "status": item["status"]["S"],
        "tenant": item["tenant"]["S"],
    }
    for name in _INT_EVENT_FIELDS:
        data[name] = int_of(item, name)
    for name in _OPTIONAL_EVENT_FIELDS:
        data[name] = str_of(item, name)
    return CostEvent.model_validate(data)


def _counters_of(item: dict[str, Any]) -> Counters:
    return Counters(**{name: int_of(item, name) for name in COUNTER_FIELDS})


def daily_from_item(item: dict[str, Any]) -> DailyRollup:
    return DailyRollup(
        day=date.fromisoformat(item["day"]["S"]),
        provider=item["provider"]["S"],
        model=item["model"]["S"],
        account=str_of(item, "account") or None,
        campaign_id=str_of(item, "campaign_id") or None,
        tenant=item["tenant"]["S"],
        response_model=str_of(item, "response_model") or None,
        counters=_counters_of(item),
    )


def slot_from_item(item: dict[str, Any]) -> SlotRollup:
    return SlotRollup(
        slot=int_of(item, "slot"),
        provider=item["provider"]["S"],
        counters=_counters_of(item),
        latency=[int_of(item, f"lat_{bucket}") for bucket in range(LATENCY_BUCKETS)],
    )


def scope_slot_of(item: dict[str, Any]) -> tuple[ScopeKey, SlotRollup]:
    """A scope rollup item as its key and its counters and latency histogram."""
    return scope_key_of(item), slot_from_item(item)


def scope_key_of(item: dict[str, Any]) -> ScopeKey:
    return (
        int_of(item, "slot"),
        item["provider"]["S"],
        item["model"]["S"],
        str_of(item, "account") or "",
        str_of(item, "campaign_id") or "",
        item["tenant"]["S"],
    )


# --- items written ----------------------------------------------------------------------


def event_item(event: CostEvent, *, retention_days: int) -> dict[str, Any]:
    """The raw event's item: keyed by attempt id, indexed by UTC day and time."""
    ts_us = micros(event.ts)
    item: dict[str, Any] = {
        "pk": attr_s(f"EVENT#{event.attempt_id}"),
        "sk": attr_s("E"),
        "gpk": attr_s(f"EVDAY#{event.ts.date().isoformat()}"),
        "gsk": attr_s(bounded(event.attempt_id, prefix=f"{ts_us:016d}#")),
        "attempt_id": attr_s(event.attempt_id),
        "request_id": attr_s(event.request_id),
        "ts": attr_s(event.ts.isoformat()),
        "ts_us": attr_n(ts_us),
        "provider": attr_s(event.provider),
        "model": attr_s(event.model),
        "priced": {"BOOL": event.priced},
        "latency_ms": float_value(event.latency_ms),
        "status": attr_s(event.status),
        "tenant": attr_s(event.tenant),
        TTL_ATTRIBUTE: attr_n(epoch_seconds(event.ts) + retention_days * DAY_SECONDS),
    }
    for name in _INT_EVENT_FIELDS:
        item[name] = attr_n(getattr(event, name))
    for name in _OPTIONAL_EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            item[name] = attr_s(value)
    return item


def daily_update(
    table: str, key: DailyKey, counters: Counters, *, retention_days: int
) -> dict[str, Any]:
    """The transaction Update adding ``counters`` to one daily rollup item."""
    day, provider, model, account, campaign_id, tenant, response_model = key
    values = {
        ":day": attr_s(day),
        ":provider": attr_s(provider),
        ":model": attr_s(model),
        ":account": attr_s(account),
        ":campaign_id": attr_s(campaign_id),
        ":tenant": attr_s(tenant),
        ":response_model": attr_s(response_model),
        f":{TTL_ATTRIBUTE}": attr_n(day_epoch(day) + (retention_days + 1) * DAY_SECONDS),
    }
    for name in DAILY_COUNTER_FIELDS:
        values[f":{name}"] = attr_n(getattr(counters, name))
    return {
        "Update": {
            "TableName": table,
            # Without a response model the sort key is what it was before the response
            # model became a key, so older rollups keep adding up.
            "Key": {
                "pk": attr_s(f"DAY#{day}"),
                "sk": attr_s(join_key(key[1:] if response_model else key[1:6])),
            },
            "UpdateExpression": _DAILY_UPDATE,
            "ExpressionAttributeNames": _DAILY_NAMES,
            "ExpressionAttributeValues": values,
        }
    }


def slot_update(table: str, slot: SlotRollup, *, retention_days: int) -> dict[str, Any]:
    """The transaction Update adding one quarter-hour rollup to its item."""
    day = datetime.fromtimestamp(slot.slot, UTC).date().isoformat()
    values = {
        ":slot": attr_n(slot.slot),
        ":provider": attr_s(slot.provider),
        f":{TTL_ATTRIBUTE}": attr_n(day_epoch(day) + (retention_days + 1) * DAY_SECONDS),
    }
    for name in COUNTER_FIELDS:
        values[f":{name}"] = attr_n(getattr(slot.counters, name))
    adds = [f"#{name} :{name}" for name in COUNTER_FIELDS]
    names = dict(_SLOT_NAMES)
    _add_latency(slot.latency, adds, names, values)
    expression = (
        "SET " + ", ".join(f"#{name} = :{name}" for name in _SLOT_SET) + " ADD " + ", ".join(adds)
    )
    return {
        "Update": {
            "TableName": table,
            "Key": {
                "pk": attr_s(f"SLOTDAY#{day}"),
                "sk": attr_s(f"{slot.slot:010d}#{slot.provider}"),
            },
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def _add_latency(
    latency: list[int], adds: list[str], names: dict[str, str], values: dict[str, Any]
) -> None:
    """ADD clauses for the latency buckets a batch touched: most of the 23 stay zero."""
    for bucket, count in enumerate(latency):
        if count:
            adds.append(f"#lat_{bucket} :lat_{bucket}")
            names[f"#lat_{bucket}"] = f"lat_{bucket}"
            values[f":lat_{bucket}"] = attr_n(count)


def scope_update(
    table: str, key: ScopeKey, rollup: SlotRollup, *, retention_days: int
) -> dict[str, Any]:
    """The transaction Update adding ``rollup`` (counters and latency histogram) to one
    quarter-hour scope rollup item."""
    slot, provider, model, account, campaign_id, tenant = key
    day = datetime.fromtimestamp(slot, UTC).date().isoformat()
    keep_days = max(SCOPE_RETENTION_DAYS, retention_days)
    values = {
        ":slot": attr_n(slot),
        ":provider": attr_s(provider),
        ":model": attr_s(model),
        ":account": attr_s(account),
        ":campaign_id": attr_s(campaign_id),
        ":tenant": attr_s(tenant),
        f":{TTL_ATTRIBUTE}": attr_n(day_epoch(day) + (keep_days + 1) * DAY_SECONDS),
    }
    for name in DAILY_COUNTER_FIELDS:
        values[f":{name}"] = attr_n(getattr(rollup.counters, name))
    adds: list[str] = []
    names = dict(_SCOPE_NAMES)
    _add_latency(rollup.latency, adds, names, values)
    return {
        "Update": {
            "TableName": table,
            "Key": {
                "pk": attr_s(f"SCOPEDAY#{day}"),
                "sk": attr_s(bounded(join_key(key[1:]), prefix=f"{slot:010d}#")),
            },
            "UpdateExpression": ", ".join([_SCOPE_UPDATE, *adds]),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


# --- transactions and time --------------------------------------------------------------


def transaction_items(
    table: str, events: list[CostEvent], *, retention_days: int, rollup_retention_days: int
) -> list[dict[str, Any]]:
    """One transaction's items: a conditional Put per event, an ADD per rollup it touches."""
    daily, slots = aggregate(events)
    items: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": table,
                "Item": event_item(event, retention_days=retention_days),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        for event in events
    ]
    items.extend(
        daily_update(table, key, counters, retention_days=rollup_retention_days)
        for key, counters in daily.items()
    )
    items.extend(
        slot_update(table, slot, retention_days=rollup_retention_days) for slot in slots.values()
    )
    items.extend(
        usage_update(
            table,
            rollup,
            sort_key=join_key(key[1:]),
            expires_at=day_epoch(key[0]) + (rollup_retention_days + 1) * DAY_SECONDS,
            ttl_attribute=TTL_ATTRIBUTE,
        )
        for key, rollup in aggregate_usage(events).items()
    )
    items.extend(
        scope_update(table, key, rollup, retention_days=retention_days)
        for key, rollup in aggregate_scopes(events).items()
    )
    return items


def transaction_chunks(events: list[CostEvent]) -> Iterator[list[CostEvent]]:
    """Split events so that each chunk's Puts plus rollup updates fit one transaction."""
    chunk: list[CostEvent] = []
    keys: list[set[Any]] = [set(), set(), set(), set()]  # daily, slot, usage, scope
    size = 0
    for event in events:
        new: tuple[Any, ...] = (
            daily_key(event),
            (slot_of(event.ts), event.provider),
            usage_key(event),
            scope_key(event),
        )
        added = 1 + sum(key not in seen for key, seen in zip(new, keys, strict=True))
        event_size = _size_estimate(event)
        if chunk and (
            len(chunk) + sum(map(len, keys)) + added > MAX_TRANSACT_ITEMS
            or size + event_size > MAX_TRANSACT_BYTES
        ):
            yield chunk
            chunk, keys, size = [], [set(), set(), set(), set()], 0
        chunk.append(event)
        for key, seen in zip(new, keys, strict=True):
            seen.add(key)
        size += event_size
    if chunk:
        yield chunk


def _size_estimate(event: CostEvent) -> int:
    """An upper bound of the bytes an event adds to a transaction (Put + four updates)."""
    text = sum(
        len(value)
        for value in (
            event.attempt_id,
            event.request_id,
            event.provider,
            event.deployment,
            event.model,
            event.response_model,
            event.error_kind,
            event.route_reason,
            event.campaign_id,
            event.account,
            event.tenant,
            event.experiment,
            event.arm,
            event.budget_action,
        )
        if value
    )
    # 4 bytes per character at most, in up to five items (the usage rollup's histograms
    # and sums add about 1 KB).
    return 3072 + 20 * text


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def epoch_seconds(moment: datetime) -> int:
    return micros(moment) // 1_000_000


def ceil_seconds(moment: datetime) -> int:
    return -(-micros(moment) // 1_000_000)


def ceil_to(value: int, step: int) -> int:
    return -(-value // step) * step


def day_epoch(day: str) -> int:
    return epoch_seconds(datetime.fromisoformat(day).replace(tzinfo=UTC))


def days_between(first: int, last: int) -> list[date]:
    """The UTC days from the one holding epoch ``first`` to the one holding ``last``."""
    start = datetime.fromtimestamp(first, UTC).date()
    end = datetime.fromtimestamp(last, UTC).date()
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]
