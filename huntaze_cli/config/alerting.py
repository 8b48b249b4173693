"""Spend thresholds and alert rules ([thresholds], [[thresholds.rules]]) and where alerts
go ([alerts])."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from huntaze_cli.config.section import MAX_USD, _Section

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
