"""Pydantic models shared by the CLI, the HTTP daemon and the core.

Money is held as integer nano-dollars (``*_nano``) and shown as ``*_usd`` numbers
rounded to 6 decimals (9 for a single cost event, which round-trips exactly).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from huntaze_cli.money import nano_to_usd, usd_to_nano

MAX_INT64 = 2**63 - 1  # SQLite's INTEGER and DynamoDB-safe bound for counters

EVENT_FIELDS = (
    "attempt_id",
    "request_id",
    "ts",
    "provider",
    "deployment",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_usd",
    "priced",
    "latency_ms",
    "status",
    "error_kind",
    "route_reason",
    "campaign_id",
    "account",
    "tenant",
    "experiment",
    "arm",
)


class CostEvent(BaseModel):
    """One provider attempt, success or failure: the unit of the ledger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt_id: str = Field(..., min_length=1, max_length=256)
    request_id: str = Field(..., min_length=1, max_length=256)
    ts: datetime
    provider: str = Field(..., min_length=1, max_length=128)
    deployment: str | None = Field(None, max_length=256)
    model: str = Field(..., min_length=1, max_length=256)
    input_tokens: int = Field(0, ge=0, le=MAX_INT64)
    cached_input_tokens: int = Field(0, ge=0, le=MAX_INT64)
    output_tokens: int = Field(0, ge=0, le=MAX_INT64)
    cost_nano: int = Field(0, ge=0, le=MAX_INT64)
    priced: bool = True
    latency_ms: float = Field(0.0, ge=0, allow_inf_nan=False)
    status: Literal["ok", "error"] = "ok"
    error_kind: str | None = Field(None, max_length=128)
    route_reason: str | None = Field(None, max_length=128)
    campaign_id: str | None = Field(None, max_length=256)
    account: str | None = Field(None, max_length=256)
    tenant: str = Field("default", min_length=1, max_length=256)
    # Set when an experiment assigned the request to one of its arms.
    experiment: str | None = Field(None, max_length=128)
    arm: str | None = Field(None, max_length=128)

    @field_validator(
        "campaign_id", "account", "deployment", "error_kind", "route_reason", "experiment", "arm"
    )
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        # Rollups store an absent key as "", so "" and None must mean the same thing.
        return value or None

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp needs a UTC offset, e.g. 2026-11-25T10:00:00+00:00")
        return value.astimezone(UTC)

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_nano).scaleb(-9)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> CostEvent:
        """Validate an exported JSON object (``cost_usd`` exact to 9 decimals)."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        data = dict(data)
        if "cost_nano" in data:
            raise ValueError("cost_nano: unknown field (use cost_usd)")
        raw = data.pop("cost_usd", 0)
        if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
            raise ValueError("cost_usd: must be a number")
        data["cost_nano"] = usd_to_nano(raw)
        return cls.model_validate(data)

    def to_record(self) -> dict[str, Any]:
        """The exported JSON object, in CONTRACT.md's field order."""
        return {
            "attempt_id": self.attempt_id,
            "request_id": self.request_id,
            "ts": self.ts.isoformat(),
            "provider": self.provider,
            "deployment": self.deployment,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": nano_to_usd(self.cost_nano, 9),
            "priced": self.priced,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "error_kind": self.error_kind,
            "route_reason": self.route_reason,
            "campaign_id": self.campaign_id,
            "account": self.account,
            "tenant": self.tenant,
            "experiment": self.experiment,
            "arm": self.arm,
        }


# --- reports -------------------------------------------------------------------------


class _Report(BaseModel):
    """Base of output models: their schema is built on first use, not at import."""

    model_config = ConfigDict(defer_build=True)


class Totals(_Report):
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class BreakdownRow(BaseModel):
    """One group of a cost breakdown; group keys (provider, model, ...) are extra fields."""

    model_config = ConfigDict(extra="allow")

    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    share_pct: float


class BreakdownReport(_Report):
    since: datetime
    until: datetime
    group_by: list[str]
    rows: list[BreakdownRow]
    total: Totals
    unpriced_requests: int


class PeriodFigures(_Report):
    requests: int = 0
    errors: int = 0
    cost_usd: float = 0.0


class LastHourFigures(PeriodFigures):
    since: datetime


class ProviderStats(_Report):
    requests: int
    errors: int
    cost_usd: float
    share_pct: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class ThresholdUse(_Report):
    limit_usd: float
    spent_usd: float
    used_pct: float


class StatsReport(_Report):
    generated_at: datetime
    timezone: str
    last_hour: LastHourFigures
    today: PeriodFigures
    yesterday: PeriodFigures
    month_to_date: PeriodFigures
    providers: dict[str, ProviderStats]
    unpriced_requests: int
    thresholds: dict[str, ThresholdUse]


class ThresholdResult(_Report):
    name: str
    period: str
    limit_usd: float
    spent_usd: float
    used_pct: float
    breached: bool
    alerted: bool
    alert_channels: list[str]
    alert_errors: list[str] = Field(default_factory=list)


class ThresholdReport(_Report):
    checked_at: datetime
    timezone: str
    breached: bool
    thresholds: list[ThresholdResult]
    cloudwatch_published: int | None = None


class ImportReport(_Report):
    read: int
    imported: int
    duplicates: int
    expired: int
    skipped_bad: int
    bad_lines: list[int] = Field(default_factory=list)


# --- health ----------------------------------------------------------------------------

HealthStatus = Literal["ok", "degraded", "fail"]


class CheckResult(_Report):
    status: HealthStatus
    detail: str


class ProviderHealth(_Report):
    kind: str
    status: HealthStatus
    configured: bool
    detail: str
    circuit: str | None = None
    misconfigured: bool = False
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: datetime | None = None
    state_updated_at: datetime | None = None
    probe_ms: float | None = None


class HealthReport(_Report):
    status: Literal["healthy", "degraded", "unhealthy"]
    checked_at: datetime
    checks: dict[str, CheckResult]
    providers: dict[str, ProviderHealth]


# --- campaigns -------------------------------------------------------------------------

CampaignState = Literal[
    "estimating", "generating", "delivering", "completed", "completed_with_errors", "cancelled"
]


class ProviderSpend(_Report):
    requests: int
    cost_usd: float
    unpriced_requests: int = 0


class CampaignReport(_Report):
    """A campaign as `send-campaign`, `status CAMPAIGN_ID` and the HTTP API show it."""

    campaign_id: str
    name: str
    account: str
    tenant: str
    model: str
    state: CampaignState
    recipients: int
    counts: dict[str, int]
    cost_usd: float
    # Requests with no known price: their cost is not in cost_usd (shown, never a silent $0).
    unpriced_requests: int = 0
    estimated_cost_usd: float
    providers: dict[str, ProviderSpend]
    eta_seconds: float
    idempotency_key: str | None = None
    resumed: bool = False
    # Why generation stopped early (every provider's circuit open, ...); resumable.
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class DryRunProvider(_Report):
    kind: str
    priced: bool
    input_tokens: int  # a high estimate for any script (llm/tokens.py)
    input_tokens_max: int = 0  # a hard bound: one token per UTF-8 byte
    output_tokens_max: int
    cost_low_usd: float | None
    cost_high_usd: float | None


class DryRunReport(_Report):
    """What `send-campaign --dry-run` prints: nothing was called, stored or sent."""

    dry_run: Literal[True] = True
    name: str
    account: str
    tenant: str
    model: str
    recipients: int
    routing: dict[str, Any]
    providers: dict[str, DryRunProvider]
    estimated_cost_usd: float | None
    eta_seconds: float
    rate_limit: dict[str, float]


class QueueDepth(_Report):
    queued: int
    in_flight: int
    dead: int


class WorkerBeat(_Report):
    worker_id: str
    host: str
    pid: int
    beat_at: datetime
    age_seconds: float
    delivered: int
    stopped: bool


class StatusOverview(_Report):
    """`huntaze status` without an id: recent campaigns and the queue per account."""

    campaigns: list[CampaignReport]
    queue: dict[str, QueueDepth]
    workers: list[WorkerBeat]


class RequeueReport(_Report):
    campaign_id: str
    requeued: int  # delivery dead letters back in the queue
    regenerate: int = 0  # messages whose generation failed, pending again
