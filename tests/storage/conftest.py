"""The `ledger` fixture runs each shared ledger test on every implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from huntaze_cli.storage.ledger import Ledger


@pytest.fixture(params=["sqlite", "dynamodb"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

        sqlite_ledger = SQLiteLedger(tmp_path / "ledger.db")
        yield sqlite_ledger
        sqlite_ledger.close()
        return
    from moto import mock_aws

    from huntaze_cli.storage.aws.dynamodb_ledger import DynamoDBLedger

    with mock_aws():
        dynamo_ledger = DynamoDBLedger(
            "test-ledger", region="us-east-1", endpoint_url=None, create_tables=True
        )
        yield dynamo_ledger
        dynamo_ledger.close()
