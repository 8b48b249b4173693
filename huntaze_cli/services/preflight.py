"""Checks that run before anything is spent: cross-references and secrets of the config.

A campaign used to pay for its LLM calls and only then find that `[routing] order`
named no provider or that the webhook sink's secret variable was unset. ``problems``
lists everything that would stop a command later, and `config validate` prints it all;
``check_before_sending`` raises on what would stop a campaign, before it is stored.
"""

from __future__ import annotations

import os

from huntaze_cli.config import Config
from huntaze_cli.errors import ConfigError


def _routing(config: Config) -> list[str]:
    from huntaze_cli.llm.providers import effective_provider_configs
    from huntaze_cli.llm.routing import Router

    try:
        Router(config, list(effective_provider_configs(config)))
    except ConfigError as exc:
        return [exc.message]
    return []


def _unset(var: str | None) -> bool:
    return bool(var) and not os.environ.get(var or "")


def _provider_keys(config: Config) -> list[str]:
    from huntaze_cli.llm.providers import effective_provider_configs

    return [
        f"providers.{name}.api_key_env: environment variable {cfg.api_key_env} is not set"
        for name, cfg in effective_provider_configs(config).items()
        if cfg.kind != "simulated" and _unset(cfg.api_key_env)
    ]


def _delivery(config: Config) -> list[str]:
    delivery = config.delivery
    found = []
    if delivery.sink == "webhook":
        if not delivery.webhook_url:
            found.append("delivery.webhook_url: not set; the webhook sink needs the URL to POST to")
        if not delivery.webhook_secret_env:
            found.append("delivery.webhook_secret_env: not set; name the env var of the secret")
        elif _unset(delivery.webhook_secret_env):
            found.append(
                f"delivery.webhook_secret_env: environment variable "
                f"{delivery.webhook_secret_env} is not set"
            )
    if delivery.sink == "sqs" and not delivery.sqs_queue_url:
        found.append("delivery.sqs_queue_url: not set; the sqs sink needs the queue URL")
    return found


def _other_secrets(config: Config) -> list[str]:
    found = []
    if _unset(config.server.token_env):
        found.append(f"server.token_env: environment variable {config.server.token_env} is not set")
    alerts = config.alerts
    if "email" in alerts.channels and _unset(alerts.smtp_password_env):
        found.append(
            f"alerts.smtp_password_env: environment variable {alerts.smtp_password_env} is not set"
        )
    return found


def problems(config: Config) -> list[str]:
    """Everything in ``config`` that some command would fail on, one line each."""
    return _routing(config) + _provider_keys(config) + _delivery(config) + _other_secrets(config)


def check_before_sending(config: Config) -> None:
    """Raise ConfigError on what would stop a campaign after its LLM calls were paid for.

    One provider without its key is not fatal (another serves); all of them is.
    """
    from huntaze_cli.llm.providers import effective_provider_configs

    found = _routing(config) + _delivery(config)
    keys = _provider_keys(config)
    if keys and len(keys) == len(effective_provider_configs(config)):
        found += keys
    if found:
        raise ConfigError(
            "; ".join(found) + "; nothing was stored or spent",
            hint="`huntaze config validate` lists every problem of the config",
        )
