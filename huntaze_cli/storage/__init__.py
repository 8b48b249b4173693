"""Storage backends behind small protocols; implementations are imported lazily.

Only the AWS implementations import boto3, and only when the config selects them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huntaze_cli.clock import Clock
    from huntaze_cli.config import Config
    from huntaze_cli.storage.alerts import AlertStore
    from huntaze_cli.storage.budgets import ReservationStore
    from huntaze_cli.storage.campaigns import CampaignStore
    from huntaze_cli.storage.ledger import Ledger
    from huntaze_cli.storage.providers import ProviderStateStore
    from huntaze_cli.storage.queue import DeliveryQueue
    from huntaze_cli.storage.ratelimit import RateLimiter


def open_ledger(config: Config) -> Ledger:
    """The ledger the config selects, ready to use."""
    if config.ledger.backend == "dynamodb":
        from huntaze_cli.storage.aws.dynamodb_ledger import DynamoDBLedger

        return DynamoDBLedger.from_config(config)
    from huntaze_cli.storage.sqlite.ledger import SQLiteLedger

    return SQLiteLedger.from_config(config)


def open_rate_limiter(config: Config) -> RateLimiter:
    """The per-account rate limiter ``[rate_limit] backend`` selects, ready to use."""
    if config.rate_limit.backend == "dynamodb":
        from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter

        return DynamoDBRateLimiter.from_config(config)
    from huntaze_cli.storage.sqlite.ratelimit import SQLiteRateLimiter

    return SQLiteRateLimiter.from_config(config)


def open_queue(config: Config) -> DeliveryQueue:
    """The delivery queue the config selects, ready to use."""
    if config.queue.backend == "sqs":
        from huntaze_cli.storage.aws.sqs_queue import SQSQueue

        return SQSQueue.from_config(config)
    from huntaze_cli.storage.sqlite.queue import SQLiteQueue

    return SQLiteQueue.from_config(config)


def open_campaign_store(config: Config, *, clock: Clock | None = None) -> CampaignStore:
    """The campaign store ``[campaigns] backend`` selects, ready to use; its leases and
    timestamps read ``clock`` (the system's unless given)."""
    from huntaze_cli.clock import SYSTEM_CLOCK

    if config.campaigns.backend == "dynamodb":
        from huntaze_cli.storage.aws.dynamodb_campaigns import DynamoDBCampaignStore

        return DynamoDBCampaignStore.from_config(config, clock=clock or SYSTEM_CLOCK)
    from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore

    return SQLiteCampaignStore.from_config(config, clock=clock or SYSTEM_CLOCK)


def open_provider_state(config: Config) -> ProviderStateStore:
    """Where provider circuit state is shared: it follows ``[campaigns] backend``."""
    if config.campaigns.backend == "dynamodb":
        from huntaze_cli.storage.aws.dynamodb_providers import DynamoDBProviderStateStore

        return DynamoDBProviderStateStore.from_config(config)
    from huntaze_cli.storage.sqlite.providers import SQLiteProviderStateStore

    return SQLiteProviderStateStore.from_config(config)


def open_alert_store(config: Config) -> AlertStore:
    """The alert claims, kept where the ledger is (same SQLite file or DynamoDB table)."""
    if config.ledger.backend == "dynamodb":
        from huntaze_cli.storage.aws.dynamodb_alerts import DynamoDBAlertStore

        return DynamoDBAlertStore.from_config(config)
    from huntaze_cli.storage.sqlite.alerts import SQLiteAlertStore

    return SQLiteAlertStore.from_config(config)


def open_reservation_store(config: Config) -> ReservationStore:
    """Budget reservations, kept where the ledger is (a file beside it, or its table)."""
    if config.ledger.backend == "dynamodb":
        from huntaze_cli.storage.aws.dynamodb_budgets import DynamoDBReservationStore

        return DynamoDBReservationStore.from_config(config)
    from huntaze_cli.storage.sqlite.budgets import SQLiteReservationStore

    return SQLiteReservationStore.from_config(config)
