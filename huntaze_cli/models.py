"""Pydantic models shared by the CLI, the HTTP daemon and the core.

Money is held as integer nano-dollars (``*_nano``) and shown as ``*_usd`` numbers
rounded to 6 decimals (9 for a single cost event, which round-trips exactly).
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from huntaze_cli.money import nano_to_decimal, usd_text, usd_to_nano

MAX_INT64 = 2**63 - 1  # SQLite's INTEGER and DynamoDB-safe bound for counters

EVENT_FIELDS = (
    "attempt_id",
    "request_id",
    "ts",
    "provider",
    "deployment",
    "model",
    "response_model",
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
    "budget_action",
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
    # What the provider said served the call (``response.model``); None when unknown.
    response_model: str | None = Field(None, max_length=256)
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
    # Set when a budget changed the call: "downgrade:<from>-><to>" or "throttle".
    budget_action: str | None = Field(None, max_length=600)

    @field_validator(
        "campaign_id",
        "account",
        "deployment",
        "error_kind",
        "route_reason",
        "experiment",
        "arm",
        "response_model",
        "budget_action",
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

    @property
    def model_mismatch(self) -> bool:
        """The provider served another model than the one mapped (see ``served_as``)."""
        return self.response_model is not None and not served_as(self.model, self.response_model)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> tuple[CostEvent, int | None]:
        """Validate an exported JSON object; also return the cost it gave, if any.

        ``cost_usd`` is read exactly (up to 9 decimals). A missing or null cost is
        returned as None and the event holds 0 until it is priced. Raises ValueError
        naming the field when the record contradicts itself (``priced: false`` with a
        cost) or has a field no event has.
        """
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        data = dict(data)
        if "cost_nano" in data:
            raise ValueError("cost_nano: unknown field (use cost_usd)")
        raw = data.pop("cost_usd", None)
        given: int | None = None
        if raw is not None:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
                raise ValueError("cost_usd: must be a number")
            given = usd_to_nano(raw)
        if data.get("priced") is False and given:
            raise ValueError(
                "cost_usd: an event with priced false cannot have a cost; "
                "drop the cost or set priced true"
            )
        data["cost_nano"] = given or 0
        return cls.model_validate(data), given

    def to_record(self) -> dict[str, Any]:
        """The exported JSON object, in CONTRACT.md's field order; cost_usd exact."""
        return {
            "attempt_id": self.attempt_id,
            "request_id": self.request_id,
            "ts": self.ts.isoformat(),
            "provider": self.provider,
            "deployment": self.deployment,
            "model": self.model,
            "response_model": self.response_model,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": nano_to_decimal(self.cost_nano),
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
            "budget_action": self.budget_action,
        }

    def to_json(self) -> str:
        """The exported JSON line (no newline), ``cost_usd`` an exact decimal literal."""
        record = self.to_record()
        record["cost_usd"] = _COST_SLOT
        text = json.dumps(record, ensure_ascii=False)
        return text.replace(_COST_SLOT_JSON, usd_text(self.cost_nano), 1)


# json.dumps cannot write a Decimal as a number: a placeholder (no event field can hold
# it by chance) is swapped for the literal.
_COST_SLOT = f"\x00cost-{os.urandom(8).hex()}\x00"
_COST_SLOT_JSON = json.dumps(_COST_SLOT)
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4}|\d{8})$")


def served_as(model: str, response_model: str) -> bool:
    """Whether ``response_model`` is ``model`` itself or one of its dated snapshots.

    OpenAI and Azure answer ``gpt-4o`` with ``gpt-4o-2024-08-06``: the same model, a
    pinned version. Anything else (``gpt-4o-mini-2024-07-18`` for ``gpt-4o``) means the
    deployment or route serves another model than the one mapped.
    """
    if response_model == model:
        return True
    return _SNAPSHOT_SUFFIX.sub("", response_model) == _SNAPSHOT_SUFFIX.sub("", model)


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
    cost_nano: int = 0
    unpriced_requests: int = 0


class BreakdownRow(BaseModel):
    """One group of a cost breakdown; group keys (provider, model, ...) are extra fields."""

    model_config = ConfigDict(extra="allow")

    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cost_nano: int
    share_pct: float
    unpriced_requests: int


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
    cost_nano: int = 0


class LastHourFigures(PeriodFigures):
    since: datetime


class ProviderStats(_Report):
    requests: int
    errors: int
    cost_usd: float
    cost_nano: int
    share_pct: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class ThresholdUse(_Report):
    # Which limit: the global ``[thresholds]`` (``global-daily``/``global-monthly``) for the
    # whole ledger; for a tenant, its lowest budget of that period (``quota:<tenant>``).
    name: str | None
    source: str  # global | budget | none
    limit_usd: float
    limit_nano: int
    spent_usd: float
    spent_nano: int
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
    # Attempts this month served by another model than the one mapped (a wrong
    # deployment map, say); a dated snapshot of the mapped model is not a mismatch.
    model_mismatches: int = 0
    thresholds: dict[str, ThresholdUse]


class ThresholdResult(_Report):
    """One alert rule in its current period (`check-thresholds`, `thresholds list`)."""

    name: str
    kind: str = "spend"
    source: str = "global"  # global | config | budget | stored
    scope: dict[str, str] = Field(default_factory=dict)
    period: str  # the period's label: 2026-12-03 or 2026-12
    period_unit: str = "day"  # day | month
    limit_usd: float
    limit_nano: int
    spent_usd: float
    spent_nano: int
    used_pct: float
    forecast_usd: float | None = None  # forecast rules: the month-end forecast
    levels: list[int] = Field(default_factory=lambda: [100])
    levels_reached: list[int] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    unpriced_requests: int = 0
    breached: bool
    alerted: bool
    alert_channels: list[str]
    alert_errors: list[str] = Field(default_factory=list)


class ThresholdReport(_Report):
    checked_at: datetime
    timezone: str
    breached: bool
    unpriced_requests: int = 0
    thresholds: list[ThresholdResult]
    cloudwatch_published: int | None = None


class RepricedLine(_Report):
    """An imported event whose given cost differed from the cost of its usage."""

    line: int
    attempt_id: str
    given_usd: float
    given_nano: int
    computed_usd: float
    computed_nano: int


class ImportReport(_Report):
    read: int
    imported: int
    duplicates: int
    expired: int
    skipped_bad: int
    bad_lines: list[int] = Field(default_factory=list)
    # Events stored with the cost computed from their usage instead of the one given.
    repriced: int = 0
    repriced_lines: list[RepricedLine] = Field(default_factory=list)
    # Events given without a cost, priced from their usage; and those left unpriced.
    cost_computed: int = 0
    unpriced: int = 0
    trust_cost: bool = False


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
    "estimating",
    "generating",
    "paused_budget",
    "delivering",
    "completed",
    "completed_with_errors",
    "cancelled",
]


class ProviderSpend(_Report):
    requests: int
    cost_usd: float
    unpriced_requests: int = 0
    cost_nano: int


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
    cost_nano: int
    # Cost (every attempt, failed ones too) per delivered message; None before any is sent.
    cost_per_message_usd: float | None = None
    estimated_cost_usd: float
    providers: dict[str, ProviderSpend]
    eta_seconds: float
    idempotency_key: str | None = None
    resumed: bool = False
    # Why generation stopped early (every provider's circuit open, ...); resumable.
    error: str | None = None
    # With state paused_budget: the budget in scope that has no room (or the fullest).
    paused_by: str | None = None
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


# --- alert rules and history -------------------------------------------------------------


class AlertChannelState(_Report):
    """How one channel fared with one alert."""

    status: str  # sent | failed | suppressed | claimed (being sent)
    error: str | None = None
    attempts: int = 0
    updated_at: datetime


class AlertView(_Report):
    """One alert of the history (`alerts list`, ``GET /api/v2/costs/alerts``)."""

    alert_id: str
    rule: str
    kind: str
    scope: dict[str, str]
    period: str
    period_label: str
    period_start: datetime
    level_pct: int
    limit_usd: float
    limit_nano: int
    observed_usd: float
    observed_nano: int
    channels: dict[str, AlertChannelState]
    created_at: datetime
    acked_at: datetime | None


class AlertList(_Report):
    since: datetime
    alerts: list[AlertView]


class RuleChange(_Report):
    """What `thresholds set` / `thresholds delete` did."""

    name: str
    action: str  # created | replaced | deleted
    rule: ThresholdResult | None = None


class ChannelTest(_Report):
    status: str  # sent | failed
    error: str | None = None


class AlertTestReport(_Report):
    ok: bool
    channels: dict[str, ChannelTest]


class AckReport(_Report):
    alert_id: str
    acked_at: datetime
