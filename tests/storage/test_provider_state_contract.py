"""The contract every ProviderStateStore keeps, on SQLite and on DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from huntaze_cli.storage.providers import ProviderState, ProviderStateStore


@pytest.fixture(params=["sqlite", "dynamodb"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ProviderStateStore, ProviderStateStore]]:
    """Two stores on one backend: what one process saves, another loads."""
    if request.param == "sqlite":
        from huntaze_cli.storage.sqlite.providers import SQLiteProviderStateStore

        pair = (
            SQLiteProviderStateStore(tmp_path / "providers.db"),
            SQLiteProviderStateStore(tmp_path / "providers.db"),
        )
        yield pair
        for store in pair:
            store.close()
        return
    from moto import mock_aws

    from huntaze_cli.storage.aws.campaign_table import CampaignTable
    from huntaze_cli.storage.aws.dynamodb_providers import DynamoDBProviderStateStore

    with mock_aws():
        pair = tuple(
            DynamoDBProviderStateStore(
                CampaignTable("test-campaigns", region="us-east-1", create_tables=True)
            )
            for _ in range(2)
        )
        yield pair  # type: ignore[misc]
        for store in pair:
            store.close()


def state(provider: str, **changes: object) -> ProviderState:
    now = datetime.now(UTC)
    base = ProviderState(
        provider=provider,
        state="closed",
        consecutive_failures=0,
        misconfigured=False,
        last_error=None,
        last_error_kind=None,
        last_error_at=None,
        last_ok_at=now - timedelta(seconds=5),
        opened_at=None,
        updated_at=now,
        pid=4242,
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_saved_state_is_what_another_process_loads(
    stores: tuple[ProviderStateStore, ProviderStateStore],
) -> None:
    writer, reader = stores
    assert reader.load() == {}
    ok = state("openai")
    now = datetime.now(UTC)
    failing = state(
        "azure",
        state="open",
        consecutive_failures=3,
        misconfigured=True,
        last_error="401 invalid key",
        last_error_kind="auth",
        last_error_at=now,
        last_ok_at=None,
        opened_at=now,
    )
    writer.save(ok)
    writer.save(failing)
    assert reader.load() == {"openai": ok, "azure": failing}
    closed_again = state("azure", consecutive_failures=0)
    reader.save(closed_again)  # last writer wins, whichever process it is
    assert writer.load()["azure"] == closed_again
