"""A `ledger` fixture for cost tests that read rollups: each runs on SQLite and on
DynamoDB (moto in process, with cheap transactions: huntaze_testing.moto_dynamodb)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from huntaze_cli.storage.ledger import Ledger


@pytest.fixture(params=["sqlite", "dynamodb"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

        with SQLiteLedger(tmp_path / "ledger.db") as sqlite_ledger:
            yield sqlite_ledger
        return
    from moto import mock_aws

    from huntaze_cli.storage.aws.dynamodb_ledger import DynamoDBLedger
    from huntaze_testing import moto_dynamodb

    undo = moto_dynamodb.install()
    try:
        with mock_aws():
            dynamo_ledger = DynamoDBLedger(
                "cost-ledger", region="us-east-1", endpoint_url=None, create_tables=True
            )
            yield dynamo_ledger
            dynamo_ledger.close()
    finally:
        undo()
