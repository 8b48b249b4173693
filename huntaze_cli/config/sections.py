"""The sections of the runtime: ledger, routing, providers, pricing, rate limit, queue,
campaign store, delivery, metrics, flags and server."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from huntaze_cli.config.section import (
    DEFAULT_KEY_ENV,
    MAX_USD,
    _AwsEndpoint,
    _AwsTable,
    _Section,
)


class LedgerConfig(_AwsTable):
    """Where the cost ledger lives."""

    backend: Literal["sqlite", "dynamodb"] = Field("sqlite", description="sqlite | dynamodb")
    path: Path | None = Field(
        None,
        description="SQLite file; default ledger.db in the data dir",
        examples=["/var/lib/huntaze/ledger.db"],
    )
    table: str = Field("huntaze-ledger", description="DynamoDB table name")
    retention_days: int = Field(30, ge=1, description="days raw cost events are kept")
    rollup_retention_days: int = Field(400, ge=1, description="days rollups are kept")


class AutoRoutingConfig(_Section):
    """Service levels of strategy auto: the cheapest provider that meets them wins."""

    max_error_pct: float = Field(
        5.0, ge=0, le=100, description="highest recent error rate (% of attempts) allowed"
    )
    max_p95_ms: float = Field(5000.0, gt=0, description="highest recent p95 latency allowed")
    window: int = Field(
        200, ge=10, le=100_000, description="recent attempts per provider the figures cover"
    )


class RoutingConfig(_Section):
    """How each LLM call picks a provider."""

    strategy: Literal["priority", "cost", "latency", "weighted", "auto"] = Field(
        "priority", description="priority | cost | latency | weighted | auto"
    )
    order: list[str] = Field(
        default_factory=list, description="provider names, most preferred first"
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="provider name = weight, for strategy weighted",
        examples=[{"azure": 3, "openai": 1}],
    )
    default_model: str = Field("gpt-4o-mini", description="model when a campaign names none")
    concurrency: int = Field(32, ge=1, le=1024, description="provider calls in flight/process")
    timeout_s: float = Field(30.0, gt=0, description="timeout of one provider attempt")
    deadline_s: float = Field(120.0, gt=0, description="overall deadline of one generation")
    max_attempts: int = Field(4, ge=1, le=20, description="attempts across all providers")
    fallback_on_content_filter: bool = Field(
        True, description="retry on another provider after Azure's content_filter"
    )
    backoff_base_s: float = Field(
        0.25, gt=0, description="first delay before retrying the same provider"
    )
    backoff_max_s: float = Field(8.0, gt=0, description="largest delay between retries")
    circuit_failure_threshold: int = Field(
        5, ge=1, description="consecutive failures that open a provider's circuit"
    )
    circuit_cooldown_s: float = Field(30.0, gt=0, description="open time before one probe")
    auto: AutoRoutingConfig = Field(default_factory=AutoRoutingConfig)


class ProviderConfig(_Section):
    """One LLM provider; the table name is the provider name."""

    kind: Literal["azure", "openai", "simulated"] = Field(
        ..., description="azure | openai | simulated"
    )
    endpoint: str | None = Field(None, description="Azure resource endpoint (azure)")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL (openai)")
    api_version: str | None = Field(None, description="Azure API version (azure)")
    api_key_env: str | None = Field(
        None,
        description="env var holding the key; default OPENAI_API_KEY / AZURE_OPENAI_API_KEY",
    )
    deployments: dict[str, str] = Field(
        default_factory=dict, description="model = Azure deployment name"
    )
    latency_ms: float = Field(0.0, ge=0, description="simulated latency (simulated)")

    @model_validator(mode="after")
    def _default_key_env(self) -> ProviderConfig:
        # The SDKs' own variable names, so a provider table needs no key setting at all.
        if self.api_key_env is None and self.kind in DEFAULT_KEY_ENV:
            self.api_key_env = DEFAULT_KEY_ENV[self.kind]
        return self


class PriceOverride(_Section):
    """A negotiated price, US dollars per million tokens."""

    input: Decimal = Field(
        ..., ge=0, le=MAX_USD, allow_inf_nan=False, description="USD per million input tokens"
    )
    output: Decimal = Field(
        ..., ge=0, le=MAX_USD, allow_inf_nan=False, description="USD per million output tokens"
    )
    cached_input: Decimal | None = Field(
        None,
        ge=0,
        le=MAX_USD,
        allow_inf_nan=False,
        description="USD per million cached input tokens",
    )


class PricingConfig(_Section):
    overrides: dict[str, PriceOverride] = Field(
        default_factory=dict, description='"provider/model" = prices'
    )

    @field_validator("overrides")
    @classmethod
    def _keys_are_provider_model(cls, value: dict[str, PriceOverride]) -> dict[str, Any]:
        for key in value:
            provider, _, model = key.partition("/")
            if not provider or not model:
                raise ValueError(f'override key "{key}" must be "provider/model"')
        return value


class RateLimitConfig(_AwsTable):
    messages: int = Field(10, ge=1, description="deliveries allowed per account per window")
    per_seconds: float = Field(60.0, gt=0, description="window length in seconds")
    backend: Literal["sqlite", "dynamodb"] = Field(
        "sqlite", description="sqlite (one host) | dynamodb (shared across hosts)"
    )
    path: Path | None = Field(
        None,
        description="SQLite file; default ratelimit.db in the data dir",
        examples=["/var/lib/huntaze/ratelimit.db"],
    )
    table: str = Field("huntaze-ratelimit", description="DynamoDB table name")


class BackoffConfig(_Section):
    base_s: float = Field(2.0, gt=0, description="first retry delay")
    max_s: float = Field(300.0, gt=0, description="largest retry delay")
    jitter: float = Field(0.2, ge=0, le=1, description="random share added to each delay")


class QueueConfig(_AwsEndpoint):
    backend: Literal["sqlite", "sqs"] = Field("sqlite", description="sqlite | sqs")
    path: Path | None = Field(
        None,
        description="SQLite file; default queue.db in the data dir",
        examples=["/var/lib/huntaze/queue.db"],
    )
    queue_url: str | None = Field(
        None,
        description="SQS queue URL (sqs)",
        examples=["https://sqs.eu-west-1.amazonaws.com/123456789012/huntaze-queue.fifo"],
    )
    max_attempts: int = Field(5, ge=1, description="delivery attempts before dead letter")
    lease_s: float = Field(60.0, gt=0, description="how long a worker holds a message")
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)


class CampaignsConfig(_AwsTable):
    """Where campaigns, message states and provider health live; shared by every host
    on DynamoDB."""

    backend: Literal["sqlite", "dynamodb"] = Field(
        "sqlite", description="sqlite (one host) | dynamodb (shared across hosts)"
    )
    path: Path | None = Field(
        None,
        description="SQLite file; default campaigns.db in the data dir",
        examples=["/var/lib/huntaze/campaigns.db"],
    )
    table: str = Field("huntaze-campaigns", description="DynamoDB table name")
    retention_days: int = Field(
        90, ge=1, description="days a campaign is kept after its last change (DynamoDB TTL)"
    )
    generation_lease_s: float = Field(
        60.0, gt=0, description="a generating process renews this; lapsed: another resumes"
    )


class DeliveryConfig(_Section):
    sink: Literal["outbox", "webhook", "sqs"] = Field("outbox", description="outbox|webhook|sqs")
    outbox_path: Path | None = Field(
        None,
        description="default outbox.jsonl in the data dir",
        examples=["/var/lib/huntaze/outbox.jsonl"],
    )
    webhook_url: str | None = Field(
        None,
        description="URL the webhook sink POSTs to",
        examples=["https://hooks.example.com/huntaze"],
    )
    webhook_secret_env: str | None = Field(
        None, description="env var holding the HMAC secret", examples=["HUNTAZE_WEBHOOK_SECRET"]
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="webhook request timeout")
    sqs_queue_url: str | None = Field(
        None,
        description="SQS queue URL of the sqs sink",
        examples=["https://sqs.eu-west-1.amazonaws.com/123456789012/huntaze-out.fifo"],
    )


class MetricsConfig(_Section):
    cloudwatch: bool = Field(False, description="publish cost metrics to CloudWatch")
    namespace: str = Field("Huntaze", min_length=1, description="CloudWatch namespace")
    region: str | None = Field(None, description="CloudWatch region", examples=["eu-west-1"])


class FlagsConfig(_Section):
    hybrid_routing: bool = Field(True, description="false: everything to legacy_provider")
    rollout_percent: int = Field(100, ge=0, le=100, description="share of accounts on hybrid")
    cost_tracking: bool = Field(True, description="false: no ledger writes")
    legacy_provider: str | None = Field(
        None,
        description="provider of the pre-hybrid path; default first of routing.order",
        examples=["openai"],
    )


class ServerConfig(_Section):
    host: str = Field("127.0.0.1", description="address serve binds")
    port: int = Field(8787, ge=0, le=65535, description="port serve binds")
    token_env: str | None = Field(
        None, description="env var holding the bearer token", examples=["HUNTAZE_API_TOKEN"]
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    public_url: str | None = Field(
        None,
        description="URL people reach serve at; alerts link to its dashboard",
        examples=["https://huntaze.example.com"],
    )
