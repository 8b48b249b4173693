"""The starter config, generated from the config models so it can never drift from them.

`huntaze config init` writes this text and the repository's config.example.toml is this
text (a test regenerates and compares). Every key appears with its description; keys
without a default are shown commented out.
"""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel

from huntaze_cli.config import (
    AlertRule,
    ArmConfig,
    Budget,
    Config,
    ExperimentConfig,
    ExperimentScope,
    PriceOverride,
    ProviderConfig,
    TenantConfig,
)

HEADER = """\
# huntaze configuration.
#
# Precedence: built-in defaults < this file < HUNTAZE_<SECTION>__<KEY> environment
# variables (lists and tables as JSON) < command-line flags.
# Secrets never go in this file: name the environment variable that holds them
# (api_key_env, webhook_secret_env, smtp_password_env, token_env).
# OPENAI_API_KEY (+ OPENAI_BASE_URL) and AZURE_OPENAI_API_KEY + AZURE_OPENAI_ENDPOINT
# (+ OPENAI_API_VERSION) define the providers "openai" and "azure" with no file at all.
"""

PROVIDER_EXAMPLES: dict[str, dict[str, Any]] = {
    "simulated": {"kind": "simulated", "latency_ms": 0.0},
    "azure": {
        "kind": "azure",
        "endpoint": "https://my-resource.openai.azure.com",
        "api_version": "2024-10-21",
        "api_key_env": "AZURE_OPENAI_API_KEY",
        "deployments": {"gpt-4o-mini": "gpt4o-mini-prod"},
    },
    "openai": {
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OPENAI_API_KEY",
    },
}


_OVERRIDE_EXAMPLE = {"input": "0.15", "output": "0.60", "cached_input": "0.075"}
EXPERIMENT_EXAMPLE: dict[str, Any] = {
    "arms": {"control": {}, "cheaper": {"model": "gpt-4o-mini", "max_tokens": 80}},
    "split": {"control": 50, "cheaper": 50},
    "baseline": "control",
    "enabled": True,
    "scope": {"account": "creator_123"},
}

# Arrays of tables, shown as a commented example after their section.
TABLE_ARRAY_EXAMPLES: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {
    "thresholds.rules": (
        AlertRule,
        {
            "name": "agency_a-daily",
            "kind": "spend",
            "scope": {"tenant": "agency_a"},
            "period": "day",
            "limit_usd": 20,
            "levels": [50, 80, 100],
            "channels": ["slack", "email"],
        },
    ),
    "budgets.rules": (
        Budget,
        {
            "name": "agency_a-month",
            "scope": {"tenant": "agency_a"},
            "period": "month",
            "limit_usd": 300,
            "soft_pct": 80,
            "on_soft": "downgrade",
            "downgrade": {"gpt-4o": "gpt-4o-mini"},
            "throttle_concurrency": 2,
        },
    ),
}


def _value(value: Any) -> str:
    """A TOML value on one line (tables inline)."""
    import tomli_w

    if isinstance(value, BaseModel):
        value = value.model_dump()
    if hasattr(value, "__fspath__"):
        value = str(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else f'"{name}"'


def _section(
    lines: list[str],
    title: str,
    model: type[BaseModel],
    values: dict[str, Any],
    *,
    only_set: bool = False,
) -> None:
    lines.append(f"[{title}]")
    # A section's own keys first (backend, path, ...), shared AWS keys after.
    own = inspect.get_annotations(model)
    fields = sorted(model.model_fields.items(), key=lambda item: item[0] not in own)
    for name, info in fields:
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            continue  # rendered as its own [section.sub] table
        if f"{title}.{name}" in TABLE_ARRAY_EXAMPLES:
            continue  # rendered as a commented [[section.name]] example
        if only_set and name not in values:
            continue
        comment = f"  # {info.description}" if info.description else ""
        value = values.get(name)
        if value is None or value == {}:
            example = info.examples[0] if info.examples else None
            if example is None:
                raise AssertionError(f"{title}.{name} needs an example for the starter config")
            lines.append(f"# {name} = {_value(example)}{comment}")
        else:
            lines.append(f"{name} = {_value(value)}{comment}")
    lines.append("")
    for path, (item_model, example) in TABLE_ARRAY_EXAMPLES.items():
        if path.rpartition(".")[0] == title:
            _table_array_example(lines, path, item_model, example)


def _table_array_example(
    lines: list[str], path: str, model: type[BaseModel], example: dict[str, Any]
) -> None:
    """A commented ``[[path]]`` table: every key of ``model`` with an example value."""
    model.model_validate(example)  # the example itself must be valid
    lines.append(f"# More of these, one [[{path}]] table each:")
    lines.append(f"# [[{path}]]")
    for name, info in model.model_fields.items():
        comment = f"  # {info.description}" if info.description else ""
        if name not in example:
            raise AssertionError(f"{path}.{name} needs an example for the starter config")
        lines.append(f"# {name} = {_value(example[name])}{comment}")
    lines.append("")


def _experiments(lines: list[str]) -> None:
    lines.append(
        "# A/B experiments, one table each: every fan of a campaign in scope is placed in one"
        "\n# arm by a stable hash of the experiment and the recipient id. Arms override"
        f"\n# {', '.join(ArmConfig.model_fields)}.\n"
    )
    experiment = ExperimentConfig.model_validate(EXPERIMENT_EXAMPLE)
    block: list[str] = []
    values = experiment.model_dump(exclude_unset=True)
    _section(block, "experiments.gpt4o-vs-mini", ExperimentConfig, values, only_set=True)
    scope = experiment.scope.model_dump(exclude_unset=True)
    _section(block, "experiments.gpt4o-vs-mini.scope", ExperimentScope, scope)
    lines.extend(("# " + line if line and not line.startswith("#") else line) for line in block)


TENANT_EXAMPLE: dict[str, Any] = {
    "token_env": "HUNTAZE_TOKEN_AGENCY_A",
    "quota_messages_day": 5000,
    "quota_usd_month": 300,
    "markup_pct": 20,
}


def _tenants(lines: list[str]) -> None:
    lines.append(
        "# Tenants, one table each: the agency's clients. A tenant's token (for serve) sees"
        "\n# and changes only its own campaigns, costs, rules and alerts; its invoices add"
        "\n# markup_pct to the provider cost.\n"
    )
    tenant = TenantConfig.model_validate(TENANT_EXAMPLE)
    block: list[str] = []
    values = tenant.model_dump(exclude_unset=True)
    _section(block, "tenants.agency_a", TenantConfig, values, only_set=True)
    lines.extend(("# " + line if line and not line.startswith("#") else line) for line in block)


def render_example() -> str:
    """The full, valid starter config with every key documented."""
    defaults = Config()
    lines = [HEADER]
    for section, info in Config.model_fields.items():
        if section == "providers":
            lines.append(
                "# One table per provider; the table name is the provider name used in "
                "routing.order,\n# pins and the ledger. With no provider configured "
                "anywhere, the offline\n# `simulated` provider is used.\n"
            )
            for name, example in PROVIDER_EXAMPLES.items():
                provider = ProviderConfig.model_validate(example)
                values = provider.model_dump(exclude_unset=True)
                block: list[str] = []
                _section(block, f"providers.{name}", ProviderConfig, values, only_set=True)
                lines.extend(
                    ("# " + line if line and not line.startswith("#") else line) for line in block
                )
            continue
        if section == "pricing":
            lines.append("[pricing]")
            lines.append("# Negotiated prices override the public price table, per provider/model,")
            lines.append("# in US dollars per million tokens:")
            lines.append('# [pricing.overrides."azure/gpt-4o-mini"]')
            for name, field in PriceOverride.model_fields.items():
                lines.append(f"# {name} = {_OVERRIDE_EXAMPLE[name]}  # {field.description}")
            lines.append("")
            continue
        if section == "experiments":
            _experiments(lines)
            continue
        if section == "tenants":
            _tenants(lines)
            continue
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        values = getattr(defaults, section).model_dump()
        _section(lines, section, model, values)
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                _section(lines, f"{section}.{name}", sub, values[name])
    return "\n".join(lines).rstrip() + "\n"
