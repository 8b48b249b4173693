"""Experiments: which arm a fan is in, and what that arm changes about the request.

A campaign is in an experiment when the experiment is enabled and every key of its
``scope`` matches (tenant, account, campaign name or id, model). Of several, the first
by name wins, so one message is in at most one experiment. Each fan is placed by a
stable hash of the experiment name and the recipient id (``stable_percent``, the same
on every host and run), so the same fan stays in the same arm across campaigns and
re-runs for as long as the split stays the same. The arm's overrides (model, provider,
max_tokens, strategy) are applied to the request, which then carries ``experiment`` and
``arm`` into every cost event of its attempts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from huntaze_cli.config import ArmConfig, Config, ExperimentConfig
from huntaze_cli.errors import ConfigError
from huntaze_cli.llm.routing import stable_percent
from huntaze_cli.llm.types import GenerationRequest


def arm_of(name: str, experiment: ExperimentConfig, recipient_id: str) -> str:
    """The arm ``recipient_id`` belongs to in experiment ``name``."""
    point = stable_percent(f"{name}\x1f{recipient_id}")
    shares = experiment.shares()
    seen = 0.0
    for arm, share in shares:
        seen += share
        if point < seen:
            return arm
    # Rounding at the top end of the split: the last arm with a share.
    return next(arm for arm, share in reversed(shares) if share > 0)


def in_scope(
    experiment: ExperimentConfig,
    *,
    tenant: str,
    account: str | None,
    campaign: Collection[str],
    model: str,
) -> bool:
    scope = experiment.scope
    return (
        (scope.tenant is None or scope.tenant == tenant)
        and (scope.account is None or scope.account == account)
        and (scope.campaign is None or scope.campaign in campaign)
        and (scope.model is None or scope.model == model)
    )


@dataclass(frozen=True, slots=True)
class Assigner:
    """The experiment one campaign is in; ``apply`` places each of its requests."""

    name: str
    experiment: ExperimentConfig

    def arm(self, recipient_id: str) -> str:
        return arm_of(self.name, self.experiment, recipient_id)

    def apply(self, request: GenerationRequest, recipient_id: str) -> GenerationRequest:
        arm = self.arm(recipient_id)
        overrides: ArmConfig = self.experiment.arms[arm]
        return replace(
            request,
            model=overrides.model or request.model,
            provider=overrides.provider or request.provider,
            max_tokens=overrides.max_tokens or request.max_tokens,
            strategy=overrides.strategy or request.strategy,
            experiment=self.name,
            arm=arm,
        )


def assigner_for(
    config: Config,
    *,
    tenant: str,
    account: str | None,
    campaign: Collection[str],
    model: str,
    providers: Collection[str] | None = None,
) -> Assigner | None:
    """The experiment a campaign is in, or None; checks its arms name known providers."""
    for name in sorted(config.experiments):
        experiment = config.experiments[name]
        if experiment.enabled and in_scope(
            experiment, tenant=tenant, account=account, campaign=campaign, model=model
        ):
            if providers is not None:
                _check_providers(name, experiment.arms, providers)
            for arm, overrides in experiment.arms.items():
                if overrides.strategy == "weighted" and not config.routing.weights:
                    raise ConfigError(
                        f"experiments.{name}.arms.{arm}.strategy: weighted needs [routing] weights"
                    )
            return Assigner(name, experiment)
    return None


def _check_providers(name: str, arms: Mapping[str, ArmConfig], providers: Collection[str]) -> None:
    for arm, overrides in arms.items():
        if overrides.provider not in (None, "auto", *providers):
            raise ConfigError(
                f"experiments.{name}.arms.{arm}.provider: unknown provider "
                f"{overrides.provider!r}; configured: {', '.join(providers)}"
            )
