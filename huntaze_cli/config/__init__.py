"""Configuration: built-in defaults < TOML file < HUNTAZE_* environment < command-line flags.

The layers are merged as plain dicts and validated once by pydantic models that reject
unknown keys. pydantic-settings would do the same merge, but importing it costs about
100 ms (it pulls in asyncio and pydantic.dataclasses), which alone breaks the start-up
budget of `costs stats`; the merge below is the small part of it we need.

Environment overrides are ``HUNTAZE_<SECTION>__<KEY>[__<KEY>...]`` with lists, tables and
objects given as JSON. The OpenAI and Azure SDKs' own variables define providers with no
file at all (see ``_sdk_providers``).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from huntaze_cli.errors import ConfigError

APP_NAME = "huntaze"
ENV_PREFIX = "HUNTAZE_"
CONFIG_ENV = "HUNTAZE_CONFIG"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# Money in config stays far below what nano-dollar integers (int64) can hold.
MAX_USD = Decimal(1_000_000_000)
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY"}


class _EnvText(str):
    """A value read from a HUNTAZE_* variable: text that may stand for a number or bool."""


class _WrongType:
    """Stands in for a file value of the wrong type, so the field reports its own error."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


_STRICT_SCALARS = (bool, int, float)


def _scalar(annotation: Any) -> Any:
    """bool, int or float when a field holds just that (or that or None)."""
    if annotation in _STRICT_SCALARS or annotation is Decimal:
        return annotation
    if get_origin(annotation) not in (Union, UnionType):
        return None  # list[int] and the like are not scalars
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(args) == 1 and (args[0] in _STRICT_SCALARS or args[0] is Decimal):
        return args[0]
    return None


def _fits(kind: Any, value: Any) -> bool:
    if isinstance(value, _EnvText) or value is None:
        return True  # environment text is converted by pydantic's usual rules
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # `concurrency = true` is not 1
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        return isinstance(value, int | float)
    return True  # Decimal money may be written as a number or a string of digits


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _strict_file_types(cls, data: Any) -> Any:
        # TOML has real booleans, numbers and strings: `max_attempts = true` or
        # `timeout_s = "30"` is a mistake to report, not something to coerce.
        if not isinstance(data, dict):
            return data
        checked = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            kind = _scalar(field.annotation) if field is not None else None
            if kind is not None and not _fits(kind, value):
                checked[name] = _WrongType(value)
        return checked


class _AwsEndpoint(_Section):
    """Where a section's AWS service is reached (boto3's own defaults otherwise)."""

    region: str | None = Field(
        None, description="AWS region; default AWS_DEFAULT_REGION", examples=["eu-west-1"]
    )
    endpoint_url: str | None = Field(
        None,
        description="AWS endpoint override; default AWS_ENDPOINT_URL",
        examples=["http://127.0.0.1:5000"],
    )


class _AwsTable(_AwsEndpoint):
    create_tables: bool = Field(False, description="create the DynamoDB table on first use")


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


AlertChannel = Literal["email", "ses", "slack", "sns", "webhook"]
RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
GLOBAL_RULES = ("global-daily", "global-monthly")


class RuleScope(_Section):
    """What a rule counts: events matching every key given; ``{}`` counts everything."""

    tenant: str | None = Field(None, min_length=1, description="tenant name")
    account: str | None = Field(None, min_length=1, description="creator account")
    campaign: str | None = Field(None, min_length=1, description="campaign id")
    provider: str | None = Field(None, min_length=1, description="provider name")
    model: str | None = Field(None, min_length=1, description="model name")

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class AlertRule(_Section):
    """One alert rule: a limit on spend (or its forecast, or a spike) in a scope."""

    name: str = Field(..., pattern=RULE_NAME_PATTERN, description="unique rule name")
    kind: Literal["spend", "forecast", "anomaly"] = Field(
        "spend", description="spend | forecast (month-end upper bound) | anomaly"
    )
    scope: RuleScope = Field(default_factory=RuleScope, description="what the rule counts")
    period: Literal["day", "month"] = Field("day", description="day | month")
    limit_usd: Decimal = Field(..., gt=0, max_digits=21, decimal_places=9, description="limit")
    levels: list[int] = Field(
        default_factory=lambda: [100], min_length=1, description="% of the limit, each alerts"
    )
    channels: list[AlertChannel] | None = Field(None, description="default: [alerts] channels")

    @field_validator("levels")
    @classmethod
    def _levels_in_range(cls, value: list[int]) -> list[int]:
        for level in value:
            if not 1 <= level <= 1000:
                raise ValueError(f"level {level} is outside 1..1000 (percent of the limit)")
        return sorted(set(value))


class ThresholdsConfig(_Section):
    daily_usd: Decimal = Field(
        Decimal("50"), ge=0, le=MAX_USD, allow_inf_nan=False, description="daily spend threshold"
    )
    monthly_usd: Decimal = Field(
        Decimal("1000"),
        ge=0,
        le=MAX_USD,
        allow_inf_nan=False,
        description="monthly spend threshold",
    )
    timezone: str = Field("UTC", description="IANA zone that days and months are counted in")
    rules: list[AlertRule] = Field(
        default_factory=list, description="more alert rules ([[thresholds.rules]])"
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[AlertRule]) -> list[AlertRule]:
        seen: set[str] = set()
        for rule in value:
            if rule.name in GLOBAL_RULES:
                raise ValueError(f"rule name {rule.name!r} is reserved for daily_usd/monthly_usd")
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class AlertsConfig(_Section):
    channels: list[AlertChannel] = Field(
        default_factory=list,
        description='"email" (SMTP), "ses", "slack", "sns" and/or "webhook"',
    )
    email_to: list[str] = Field(default_factory=list, description="alert recipients")
    email_from: str = Field("huntaze@localhost", description="sender address")
    smtp_host: str = Field("localhost", description="SMTP relay host")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP relay port")
    smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS")
    smtp_username: str | None = Field(None, description="SMTP login user", examples=["alerts"])
    smtp_password_env: str | None = Field(
        None, description="env var holding the SMTP password", examples=["HUNTAZE_SMTP_PASSWORD"]
    )
    smtp_timeout_s: float = Field(10.0, gt=0, description="SMTP connection timeout")
    ses_region: str | None = Field(
        None, description="SES region; default AWS_DEFAULT_REGION", examples=["eu-west-1"]
    )
    slack_webhook_url_env: str | None = Field(
        None,
        description="env var holding the Slack incoming-webhook URL",
        examples=["HUNTAZE_SLACK_WEBHOOK_URL"],
    )
    sns_topic_arn: str | None = Field(
        None,
        description="SNS topic the sns channel publishes to",
        examples=["arn:aws:sns:eu-west-1:123456789012:huntaze-alerts"],
    )
    sns_region: str | None = Field(
        None, description="SNS region; default the topic's", examples=["eu-west-1"]
    )
    sns_endpoint_url: str | None = Field(
        None,
        description="SNS endpoint override; default AWS_ENDPOINT_URL",
        examples=["http://127.0.0.1:5000"],
    )
    alert_webhook_url: str | None = Field(
        None,
        description="URL the webhook channel POSTs each alert to",
        examples=["https://ops.example.com/hooks/huntaze"],
    )
    alert_webhook_secret_env: str | None = Field(
        None,
        description="env var holding the alert webhook's HMAC secret",
        examples=["HUNTAZE_ALERT_WEBHOOK_SECRET"],
    )
    http_timeout_s: float = Field(
        10.0, gt=0, le=120, description="timeout of Slack, SNS and webhook sends"
    )
    min_interval_minutes: int = Field(
        30,
        ge=0,
        description="per channel, least minutes between two messages of one rule and scope",
    )
    history_days: int = Field(90, ge=1, le=3650, description="days the alert history is kept")
    evaluate_interval_s: int = Field(
        60, ge=0, description="serve evaluates the rules this often; 0: only check-thresholds"
    )

    @model_validator(mode="after")
    def _channels_are_complete(self) -> AlertsConfig:
        if {"email", "ses"} & set(self.channels) and not self.email_to:
            raise ValueError("email_to: list at least one recipient when channels are set")
        if "slack" in self.channels and not self.slack_webhook_url_env:
            raise ValueError("slack_webhook_url_env: required by the slack channel")
        if "sns" in self.channels and not self.sns_topic_arn:
            raise ValueError("sns_topic_arn: required by the sns channel")
        if "webhook" in self.channels and not (
            self.alert_webhook_url and self.alert_webhook_secret_env
        ):
            raise ValueError(
                "alert_webhook_url: the webhook channel needs alert_webhook_url and "
                "alert_webhook_secret_env"
            )
        return self


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


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ArmConfig(_Section):
    """What one experiment arm changes; an empty arm keeps the campaign as it is."""

    strategy: Literal["priority", "cost", "latency", "weighted", "auto"] | None = Field(
        None, description="routing strategy for this arm's messages"
    )
    model: str | None = Field(None, min_length=1, max_length=256, description="model to use")
    provider: str | None = Field(
        None, min_length=1, max_length=128, description='provider to pin, or "auto"'
    )
    max_tokens: int | None = Field(None, ge=1, le=100_000, description="max_tokens to send")


class ExperimentScope(_Section):
    """Which campaigns an experiment covers; every key given must match."""

    tenant: str | None = Field(
        None, description="only this tenant's campaigns", examples=["agency_a"]
    )
    account: str | None = Field(
        None, description="only this creator account's campaigns", examples=["creator_123"]
    )
    campaign: str | None = Field(
        None, description="only campaigns with this name or id", examples=["November PPV"]
    )
    model: str | None = Field(
        None, description="only campaigns written with this model", examples=["gpt-4o"]
    )


class ExperimentConfig(_Section):
    """An A/B test: each fan of a campaign in scope is assigned to one arm, for good."""

    arms: dict[str, ArmConfig] = Field(
        ...,
        description="arm name = overrides (strategy, model, provider, max_tokens)",
        examples=[{"control": {}, "cheaper": {"model": "gpt-4o-mini"}}],
    )
    split: dict[str, float] = Field(
        default_factory=dict,
        description="arm name = percent of fans; default an equal split",
        examples=[{"control": 50, "cheaper": 50}],
    )
    scope: ExperimentScope = Field(default_factory=ExperimentScope)
    baseline: str | None = Field(
        None, description='arm the others are compared with; default "control" or the first'
    )
    enabled: bool = Field(True, description="false: stop assigning (reports still work)")

    @model_validator(mode="after")
    def _arms_and_split(self) -> ExperimentConfig:
        import re

        if len(self.arms) < 2:
            raise ValueError("arms: an experiment needs at least two arms")
        for name in self.arms:
            if not re.match(_NAME, name):
                raise ValueError(f"arms: {name!r} is not a valid arm name (letters, digits, _-.)")
        if self.split:
            unknown = [name for name in self.split if name not in self.arms]
            if unknown:
                raise ValueError(f"split: {unknown[0]!r} is not one of the arms")
            if any(share < 0 for share in self.split.values()):
                raise ValueError("split: a share is negative")
            if abs(sum(self.split.values()) - 100) > 1e-9:
                raise ValueError(f"split: the shares add up to {sum(self.split.values())}, not 100")
        if self.baseline is not None and self.baseline not in self.arms:
            raise ValueError(f"baseline: {self.baseline!r} is not one of the arms")
        return self

    @property
    def baseline_arm(self) -> str:
        if self.baseline:
            return self.baseline
        return "control" if "control" in self.arms else next(iter(self.arms))

    def shares(self) -> list[tuple[str, float]]:
        """(arm, percent) in arm order; arms missing from ``split`` get 0."""
        if not self.split:
            return [(name, 100 / len(self.arms)) for name in self.arms]
        return [(name, self.split.get(name, 0.0)) for name in self.arms]


class Config(_Section):
    """The whole effective configuration."""

    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    campaigns: CampaignsConfig = Field(default_factory=CampaignsConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    flags: FlagsConfig = Field(default_factory=FlagsConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    experiments: dict[str, ExperimentConfig] = Field(
        default_factory=dict, description="experiment name = arms, split, scope"
    )

    @field_validator("experiments")
    @classmethod
    def _experiment_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        import re

        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"{name!r} is not a valid experiment name (letters, digits, _-.)")
        return value

    # Where the file came from (None: defaults only). Not a config key.
    _source: Path | None = None

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def data_dir(self) -> Path:
        return data_dir()

    @property
    def ledger_path(self) -> Path:
        return self.ledger.path or self.data_dir / "ledger.db"

    @property
    def queue_path(self) -> Path:
        return self.queue.path or self.data_dir / "queue.db"

    @property
    def ratelimit_path(self) -> Path:
        return self.rate_limit.path or self.data_dir / "ratelimit.db"

    @property
    def campaigns_path(self) -> Path:
        return self.campaigns.path or self.data_dir / "campaigns.db"

    @property
    def providers_path(self) -> Path:
        """Provider circuit state on SQLite: beside the campaign store."""
        return self.campaigns_path.parent / "providers.db"

    @property
    def outcomes_path(self) -> Path:
        return self.data_dir / "outcomes.db"

    @property
    def outbox_path(self) -> Path:
        return self.delivery.outbox_path or self.data_dir / "outbox.jsonl"

    @property
    def forecast_cache_dir(self) -> Path:
        """Fitted forecast paths, one file per series and day (a cache: safe to delete)."""
        return self.data_dir / "forecast-cache"


def config_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME))


def data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME))


def default_config_path() -> Path:
    return config_dir() / "config.toml"


def resolve_config_path(explicit: Path | str | None = None) -> tuple[Path, bool]:
    """The config file to use and whether the user named it (so it must exist)."""
    if explicit:
        return Path(explicit).expanduser(), True
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env).expanduser(), True
    return default_config_path(), False


def load_config(
    path: Path | str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective config from every layer; raises ConfigError naming the culprit.

    ``overrides`` are command-line flags as dotted keys, e.g. ``{"ledger.path": p}``.
    """
    env = os.environ if environ is None else environ
    file_path, named = resolve_config_path(path)
    merged: dict[str, Any] = {}
    source: Path | None = None
    if file_path.exists():
        merged = _read_toml(file_path)
        source = file_path
    elif named:
        raise ConfigError(
            f"config file {file_path} does not exist",
            hint="create one with `huntaze config init`",
        )
    env_layer, env_names = _env_layer(env)
    _deep_merge(merged, env_layer)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _deep_merge(merged, _nest(dotted.split("."), value))
    sdk = _sdk_providers(env)
    providers = merged.setdefault("providers", {})
    if isinstance(providers, dict):
        for name, provider in sdk.items():
            providers.setdefault(name, provider)
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, env_names)) from None
    config._source = source
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    from huntaze_cli.textfile import read_text

    try:
        return tomllib.loads(read_text(path, str(path), error=ConfigError))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    layer: dict[str, Any] = {}
    names: dict[tuple[str, ...], str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if any(not key for key in keys):
            raise ConfigError(f"{name}: empty key in variable name")
        value: Any = _EnvText(raw)
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{name}: invalid JSON value: {exc.msg}") from None
        _deep_merge(layer, _nest(keys, value))
        names[tuple(keys)] = name
    return layer, names


def _sdk_providers(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Providers defined by the SDKs' own variables, as the SDKs would read them."""
    found: dict[str, dict[str, Any]] = {}
    if env.get("AZURE_OPENAI_API_KEY") and env.get("AZURE_OPENAI_ENDPOINT"):
        found["azure"] = {
            "kind": "azure",
            "endpoint": env["AZURE_OPENAI_ENDPOINT"],
            "api_version": env.get("OPENAI_API_VERSION") or DEFAULT_AZURE_API_VERSION,
            "api_key_env": "AZURE_OPENAI_API_KEY",
        }
    if env.get("OPENAI_API_KEY"):
        provider: dict[str, Any] = {"kind": "openai", "api_key_env": "OPENAI_API_KEY"}
        if env.get("OPENAI_BASE_URL"):
            provider["base_url"] = env["OPENAI_BASE_URL"]
        found["openai"] = provider
    return found


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(keys[1:]):
        value = {key: value}
    return {keys[0]: value}


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _describe(
    exc: ValidationError, source: Path | None, env_names: Mapping[tuple[str, ...], str]
) -> str:
    """One `section.key: message (source)` line per validation error."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        origin = None
        for length in range(len(loc), 0, -1):
            if loc[:length] in env_names:
                origin = env_names[loc[:length]]
                break
        if origin is None:  # `HUNTAZE_BOGUS__X`: the error is about a key it created
            origin = next(
                (name for keys, name in env_names.items() if keys[: len(loc)] == loc), None
            )
        where = origin or (str(source) if source else "defaults")
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        if isinstance(error.get("input"), _WrongType):
            message += f", not {json.dumps(error['input'].value, default=str)}"
        lines.append(f"{'.'.join(loc)}: {message} (in {where})")
    return "invalid config: " + "; ".join(lines)


SECRET_MARKERS = ("secret", "password", "token", "api_key")


def masked_dump(config: Config) -> dict[str, Any]:
    """The effective config as plain data that can be pasted back into a config file.

    Paths are resolved (the data dir defaults spelled out), money is a number, ``*_env``
    keys hold the variable *names* they always hold (``env_status`` says which are set),
    and secrets found in literal values (a password in a URL, a ``?token=`` in a query,
    a value under a secret-looking key) are masked.
    """
    data = config.model_dump(mode="python")
    data["ledger"]["path"] = config.ledger_path
    data["queue"]["path"] = config.queue_path
    data["campaigns"]["path"] = config.campaigns_path
    data["rate_limit"]["path"] = config.ratelimit_path
    data["delivery"]["outbox_path"] = config.outbox_path
    return _mask(data)


def env_status(config: Config) -> dict[str, bool]:
    """Every environment variable a ``*_env`` key names, and whether it is set."""
    found: dict[str, bool] = {}

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key.endswith("_env"):
            found[node] = bool(os.environ.get(node))

    walk(config.model_dump(mode="python"))
    return found


def _mask(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _mask(v, str(k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_mask(v, key) for v in node]
    if isinstance(node, Decimal):
        return int(node) if node == node.to_integral_value() else float(node)
    if isinstance(node, Path):
        return str(node)
    if isinstance(node, str):
        if key.endswith("_env"):
            return node
        if any(marker in key for marker in SECRET_MARKERS):
            return "********"
        return _mask_url(node)
    return node


_SECRET_QUERY = ("token", "secret", "password", "passwd", "key", "sig", "auth", "code")


def _mask_url(value: str) -> str:
    """``value`` with a URL's password and secret-looking query values masked."""
    if "://" not in value:
        return value
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    netloc = parts.netloc
    if "@" in netloc:
        creds, _, host = netloc.rpartition("@")
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":********"
        netloc = f"{creds}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [
            (k, "********" if any(m in k.lower() for m in _SECRET_QUERY) else v) for k, v in pairs
        ]
        query = urlencode(masked, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secret_from_env(var: str | None, *, what: str, key: str) -> str:
    """Read a secret from the env var named by config key ``key``; clear error if missing."""
    if not var:
        raise ConfigError(f"{key}: not set; name the env var that holds the {what}")
    value = os.environ.get(var)
    if not value:
        raise ConfigError(
            f"{what} missing: environment variable {var} is not set (named by {key})",
        )
    return value
