"""A/B experiments ([experiments.<name>]): arms, split and scope."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from huntaze_cli.config.section import _Section

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
