"""Provider circuit state on DynamoDB: what one host's breakers saw, every host's `health`.

The items live in the ``[campaigns]`` table (the provider state follows ``[campaigns]
backend``): ``pk = P``, ``sk = <provider>``, one small item per provider, written only
when a breaker changes state or records an error, read with one strongly consistent
Query. Each write replaces the item (last writer wins, as on SQLite) and pushes its TTL
to ``retention_days`` ahead, so providers no longer configured anywhere fade away.

IAM actions: ``dynamodb:PutItem`` and ``dynamodb:Query`` on the campaign table.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from huntaze_cli.storage.aws.campaign_table import CampaignTable, item_key, number, string
from huntaze_cli.storage.providers import ProviderState

if TYPE_CHECKING:
    from huntaze_cli.config import Config

PARTITION = "P"
_TIMES = ("last_error_at", "last_ok_at", "opened_at", "updated_at")
_TEXTS = ("last_error", "last_error_kind")


class DynamoDBProviderStateStore:
    """The ``ProviderStateStore`` protocol on the campaign table."""

    def __init__(self, table: CampaignTable) -> None:
        self._table = table

    @classmethod
    def from_config(cls, config: Config) -> DynamoDBProviderStateStore:
        return cls(CampaignTable.from_config(config))

    def save(self, state: ProviderState) -> None:
        item: dict[str, Any] = {
            **item_key(PARTITION, state.provider),
            "state": string(state.state),
            "consecutive_failures": number(state.consecutive_failures),
            "misconfigured": {"BOOL": state.misconfigured},
            "pid": number(state.pid),
            "expires_at": self._table.expires(),
        }
        for name in _TEXTS:
            value = getattr(state, name)
            if value is not None:
                item[name] = string(value)
        for name in _TIMES:
            value = getattr(state, name)
            if value is not None:
                item[name] = string(value.isoformat())
        self._table.ensure_ready()
        self._table.call("put_item", TableName=self._table.name, Item=item)

    def load(self) -> dict[str, ProviderState]:
        states = {}
        for item in self._table.query(PARTITION):
            times = {
                name: datetime.fromisoformat(item[name]["S"]) if name in item else None
                for name in _TIMES
            }
            states[item["sk"]["S"]] = ProviderState(
                provider=item["sk"]["S"],
                state=item["state"]["S"],
                consecutive_failures=int(item["consecutive_failures"]["N"]),
                misconfigured=item["misconfigured"]["BOOL"],
                last_error=item["last_error"]["S"] if "last_error" in item else None,
                last_error_kind=item["last_error_kind"]["S"] if "last_error_kind" in item else None,
                last_error_at=times["last_error_at"],
                last_ok_at=times["last_ok_at"],
                opened_at=times["opened_at"],
                updated_at=times["updated_at"] or self._table.clock.now(),
                pid=int(item["pid"]["N"]),
            )
        return states

    def close(self) -> None:
        self._table.close()
