"""What `costs optimize` answers: recommendations, each with its saving and its action.

The detectors that fill them in live in ``optimize.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal[
    "provider_price", "model_downgrade", "max_tokens", "retry_waste", "prompt_caching", "strategy"
]
Confidence = Literal["high", "medium", "low"]


class Action(BaseModel):
    """How to apply a recommendation: a config snippet, or a change to one campaign."""

    type: Literal["config", "campaign"]
    summary: str
    toml: str | None = None
    campaign_id: str | None = None
    set: dict[str, Any] = {}
    experiment_toml: str | None = None


class Recommendation(BaseModel):
    id: str
    kind: Kind
    title: str
    saving_usd_month: float
    saving_nano_month: int
    confidence: Confidence
    evidence: dict[str, Any]
    action: Action


class OptimizeReport(BaseModel):
    """`huntaze costs optimize --json` and `GET /api/v2/costs/optimize`."""

    model_config = ConfigDict(defer_build=True)

    generated_at: datetime
    window_days: int
    since: datetime
    until: datetime
    days_with_traffic: int
    spend_usd: float
    spend_nano: int
    recommendations: list[Recommendation]
