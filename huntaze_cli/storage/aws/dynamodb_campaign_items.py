"""The campaign table's items: their keys, and conversions to and from our rows.

=====================  =========================  ======  =================================
item                   pk                         sk      lk / ls (index, when listed)
=====================  =========================  ======  =================================
campaign               ``C#<campaign>``           ``C``   ``R#<yyyy-mm>`` / created#id
idempotency key        ``K#<key>``                ``K``   -
message                ``M#<campaign>#<rcpt>``    ``M``   ``L#<campaign>#<list>#<seq//1000>``
                                                          / seq (10 digits)
counter shard          ``N#<campaign>``           ``0-7``  -
worker heartbeat       ``W``                      worker  -
provider state         ``P``                      name    (see dynamodb_providers.py)
=====================  =========================  ======  =================================

Only pure functions here (no calls): dynamodb_campaigns.py makes the calls and holds the
rules (which state a change leaves, what a transaction carries).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from huntaze_cli.storage.aws.campaign_table import TTL_ATTRIBUTE, item_key, number, string
from huntaze_cli.storage.campaigns import CampaignRow, Heartbeat, PendingMessage

BUCKET = 1000  # messages per list partition of the index
GENDEAD = "gendead"  # the list of dead messages without text (generation gave up)
CAMPAIGN_FIELDS = ("name", "account", "tenant", "model", "provider", "system", "prompt")


def campaign_key(campaign_id: str) -> tuple[str, str]:
    return "C#" + campaign_id, "C"


def message_pk(campaign_id: str, rid: str) -> tuple[str, str]:
    return f"M#{campaign_id}#{rid}", "M"


def message_key(campaign_id: str, rid: str) -> dict[str, Any]:
    return item_key(*message_pk(campaign_id, rid))


def list_key(campaign_id: str, label: str, seq: int) -> str:
    return f"L#{campaign_id}#{label}#{seq // BUCKET}"


def recipient_of(item: dict[str, Any]) -> str:
    """The recipient id of a message item (its pk is ``M#<campaign>#<recipient>``)."""
    return str(item["pk"]["S"].split("#", 2)[2])


def lease_until_of(item: dict[str, Any]) -> float:
    """When a campaign item's generation lease lapses (0: nobody holds it)."""
    return float(item.get("gen_lease_until", {"N": "0"})["N"])


def campaign_item(
    campaign_id: str,
    spec: dict[str, Any],
    *,
    now: datetime,
    estimated_cost_nano: int,
    lease_until: float,
    idempotency_key: str | None,
    generation_owner: str | None,
    expires: dict[str, str],
) -> dict[str, Any]:
    """A new campaign's item, ``estimating`` with no recipients yet."""
    item: dict[str, Any] = {
        **item_key(*campaign_key(campaign_id)),
        "state": string("estimating"),
        "recipients": number(0),
        "estimated_cost_nano": number(estimated_cost_nano),
        "created_at": string(now.isoformat()),
        "updated_at": string(now.isoformat()),
        "gen_lease_until": number(lease_until),
        "lk": string("R#" + now.strftime("%Y-%m")),
        "ls": string(f"{now.isoformat()}#{campaign_id}"),
        TTL_ATTRIBUTE: expires,
    }
    for name in CAMPAIGN_FIELDS:
        if spec.get(name) is not None:
            item[name] = string(str(spec[name]))
    if spec.get("max_tokens") is not None:
        item["max_tokens"] = number(spec["max_tokens"])
    if spec.get("temperature") is not None:
        item["temperature"] = {"N": repr(float(spec["temperature"]))}
    if idempotency_key:
        item["idempotency_key"] = string(idempotency_key)
    if generation_owner:
        item["gen_owner"] = string(generation_owner)
    return item


def campaign_from_item(item: dict[str, Any]) -> CampaignRow:
    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    return CampaignRow(
        id=item["pk"]["S"][2:],
        idempotency_key=text("idempotency_key"),
        name=text("name") or "",
        account=text("account") or "",
        tenant=text("tenant") or "",
        model=text("model") or "",
        provider=text("provider") or "",
        system=text("system"),
        prompt=text("prompt") or "",
        max_tokens=int(item["max_tokens"]["N"]) if "max_tokens" in item else None,
        temperature=float(item["temperature"]["N"]) if "temperature" in item else None,
        state=item["state"]["S"],
        recipients=int(item["recipients"]["N"]),
        estimated_cost_nano=int(item["estimated_cost_nano"]["N"]),
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
    )


def message_item(
    campaign_id: str,
    rid: str,
    seq: int,
    fields: dict[str, str],
    *,
    now: str,
    expires: dict[str, str],
) -> dict[str, Any]:
    """A recipient's message item, ``pending`` on its list of the index."""
    return {
        **message_key(campaign_id, rid),
        "seq": number(seq),
        "fields": string(json.dumps(fields)),
        "state": string("pending"),
        "updated_at": string(now),
        "lk": string(list_key(campaign_id, "pending", seq)),
        "ls": string(f"{seq:010d}"),
        TTL_ATTRIBUTE: expires,
    }


def message_move(
    table: str,
    campaign_id: str,
    rid: str,
    update: str,
    values: dict[str, Any],
    *,
    old: str,
    new: str,
) -> dict[str, Any]:
    """The transaction Update moving one message from state ``old`` to ``new`` (only if
    it is still in ``old``); ``update`` may name ``#s`` (state), ``#e`` (error), ``#t``
    (text) and use ``:old``, ``:new`` and ``values``."""
    names = {"#s": "state"}
    for name, attr in (("#e", "error"), ("#t", "text")):
        if name in update:
            names[name] = attr
    return {
        "Update": {
            "TableName": table,
            "Key": message_key(campaign_id, rid),
            "UpdateExpression": update,
            "ConditionExpression": "#s = :old",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":old": string(old), ":new": string(new), **values},
        }
    }


def pending_from_item(item: dict[str, Any]) -> PendingMessage:
    return PendingMessage(
        recipient_of(item), int(item["seq"]["N"]), json.loads(item["fields"]["S"])
    )


def heartbeat_from_item(item: dict[str, Any]) -> Heartbeat:
    return Heartbeat(
        item["sk"]["S"],
        item["host"]["S"],
        int(item["pid"]["N"]),
        datetime.fromisoformat(item["started_at"]["S"]),
        datetime.fromisoformat(item["beat_at"]["S"]),
        int(item["delivered"]["N"]),
        item["stopped"]["BOOL"],
    )
