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
from typing import Any

from pydantic import Field, ValidationError, field_validator

from huntaze_cli.config.alerting import (
    GLOBAL_RULES,
    RULE_NAME_PATTERN,
    AlertChannel,
    AlertRule,
    AlertsConfig,
    RuleScope,
    ThresholdsConfig,
)
from huntaze_cli.config.budgets import Budget, BudgetsConfig, BudgetScope
from huntaze_cli.config.experiments import _NAME, ArmConfig, ExperimentConfig, ExperimentScope
from huntaze_cli.config.section import (
    APP_NAME,
    CONFIG_ENV,
    DEFAULT_AZURE_API_VERSION,
    DEFAULT_KEY_ENV,
    ENV_PREFIX,
    MAX_USD,
    _EnvText,
    _Section,
    _WrongType,
)
from huntaze_cli.config.sections import (
    AutoRoutingConfig,
    BackoffConfig,
    CampaignsConfig,
    DeliveryConfig,
    FlagsConfig,
    LedgerConfig,
    MetricsConfig,
    PriceOverride,
    PricingConfig,
    ProviderConfig,
    QueueConfig,
    RateLimitConfig,
    RoutingConfig,
    ServerConfig,
)
from huntaze_cli.config.tenants import InvoicesConfig, TenantConfig, check_tenant_names
from huntaze_cli.errors import ConfigError

__all__ = [
    "APP_NAME",
    "CONFIG_ENV",
    "DEFAULT_AZURE_API_VERSION",
    "DEFAULT_KEY_ENV",
    "ENV_PREFIX",
    "GLOBAL_RULES",
    "MAX_USD",
    "RULE_NAME_PATTERN",
    "AlertChannel",
    "AlertRule",
    "AlertsConfig",
    "ArmConfig",
    "AutoRoutingConfig",
    "BackoffConfig",
    "Budget",
    "BudgetScope",
    "BudgetsConfig",
    "CampaignsConfig",
    "Config",
    "DeliveryConfig",
    "ExperimentConfig",
    "ExperimentScope",
    "FlagsConfig",
    "InvoicesConfig",
    "LedgerConfig",
    "MetricsConfig",
    "PriceOverride",
    "PricingConfig",
    "ProviderConfig",
    "QueueConfig",
    "RateLimitConfig",
    "RoutingConfig",
    "RuleScope",
    "ServerConfig",
    "TenantConfig",
    "ThresholdsConfig",
    "config_dir",
    "data_dir",
    "default_config_path",
    "env_status",
    "load_config",
    "masked_dump",
    "resolve_config_path",
    "secret_from_env",
]


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
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    tenants: dict[str, TenantConfig] = Field(
        default_factory=dict, description="tenant name = token_env, quotas, markup_pct"
    )
    invoices: InvoicesConfig = Field(default_factory=InvoicesConfig)

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, value: dict[str, TenantConfig]) -> dict[str, TenantConfig]:
        return check_tenant_names(value)

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
