"""Config layers, validation errors, the starter file and secret masking."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from huntaze_cli.config import Config, load_config, masked_dump
from huntaze_cli.config.template import render_example
from huntaze_cli.errors import ConfigError
from tests.helpers import run

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file() -> None:
    config = load_config()
    assert config.source is None
    assert config.ledger.backend == "sqlite"
    assert config.rate_limit.messages == 10
    assert config.rate_limit.per_seconds == 60
    assert config.thresholds.daily_usd == 50
    assert config.server.host == "127.0.0.1" and config.server.port == 8787
    assert config.ledger_path.name == "ledger.db"
    assert "xdg-data" in str(config.ledger_path)


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[routing]\nstrategy = "cost"\nconcurrency = 8\n')
    env = {"HUNTAZE_ROUTING__CONCURRENCY": "16", "HUNTAZE_ROUTING__ORDER": '["azure","openai"]'}
    config = load_config(path, environ=env)
    assert config.routing.strategy == "cost"  # file beats default
    assert config.routing.concurrency == 16  # env beats file
    assert config.routing.order == ["azure", "openai"]  # JSON list from env
    flagged = load_config(path, environ=env, overrides={"routing.concurrency": 4})
    assert flagged.routing.concurrency == 4  # flag beats env


def test_config_env_var_selects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "c.toml", "[ledger]\nretention_days = 7\n")
    monkeypatch.setenv("HUNTAZE_CONFIG", str(path))
    assert load_config().ledger.retention_days == 7


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_unknown_key_names_section_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[ledger]\nbackend = 'sqlite'\nretension_days = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "ledger.retension_days: unknown key" in str(info.value)
    assert str(path) in str(info.value)


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[rate_limit]\nmessages = 'ten'\n")
    with pytest.raises(ConfigError, match=r"rate_limit\.messages: .*integer.*c\.toml"):
        load_config(path)


def test_wrong_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="ledger.backend: .*HUNTAZE_LEDGER__BACKEND"):
        load_config(environ={"HUNTAZE_LEDGER__BACKEND": "postgres"})
    with pytest.raises(ConfigError, match="HUNTAZE_ROUTING__ORDER: invalid JSON"):
        load_config(environ={"HUNTAZE_ROUTING__ORDER": "[azure"})


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[ledger]\nbackend = 'sqlite'\nretention_days = \n")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 3"):
        load_config(path)


def test_bad_timezone_and_override_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="thresholds.timezone: .*unknown time zone"):
        load_config(environ={"HUNTAZE_THRESHOLDS__TIMEZONE": "Mars/Olympus"})
    path = write(tmp_path / "c.toml", '[pricing.overrides."gpt-4o"]\ninput = 1\noutput = 2\n')
    with pytest.raises(ConfigError, match="provider/model"):
        load_config(path)


def test_alert_channels_need_recipients() -> None:
    with pytest.raises(ConfigError, match="alerts: .*email_to"):
        load_config(environ={"HUNTAZE_ALERTS__CHANNELS": '["email"]'})


def test_sdk_variables_define_providers() -> None:
    env = {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "AZURE_OPENAI_API_KEY": "az-test",
        "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
        "OPENAI_API_VERSION": "2024-06-01",
    }
    config = load_config(environ=env)
    assert config.providers["openai"].kind == "openai"
    assert config.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    assert config.providers["openai"].api_key_env == "OPENAI_API_KEY"
    azure = config.providers["azure"]
    assert (azure.kind, azure.endpoint, azure.api_version) == (
        "azure",
        "https://r.openai.azure.com",
        "2024-06-01",
    )
    # Azure needs both the key and the endpoint.
    assert "azure" not in load_config(environ={"AZURE_OPENAI_API_KEY": "x"}).providers


def test_file_provider_wins_over_sdk_variables(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        '[providers.openai]\nkind = "openai"\nbase_url = "http://127.0.0.1:1/v1"\n'
        'api_key_env = "MY_KEY"\n',
    )
    config = load_config(path, environ={"OPENAI_API_KEY": "sk"})
    assert config.providers["openai"].api_key_env == "MY_KEY"


def test_masked_dump_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SECRET_KEY", "sk-very-secret-value")
    config = load_config(
        environ={
            "HUNTAZE_PROVIDERS__OPENAI__KIND": "openai",
            "HUNTAZE_PROVIDERS__OPENAI__API_KEY_ENV": "MY_SECRET_KEY",
            "HUNTAZE_LEDGER__ENDPOINT_URL": "http://user:hunter2@127.0.0.1:5000",
        }
    )
    dumped = str(masked_dump(config))
    assert "sk-very-secret-value" not in dumped
    assert "hunter2" not in dumped
    assert "MY_SECRET_KEY" in dumped


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys |= _model_keys(sub, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_example_config_is_current_valid_and_complete() -> None:
    example = REPO / "config.example.toml"
    text = example.read_text(encoding="utf-8")
    assert text == render_example(), "regenerate: huntaze config init writes the same text"
    config = load_config(example, environ={})
    assert config.model_dump() == Config().model_dump()
    documented: set[str] = set()
    section = ""
    for line in text.splitlines():
        header = re.match(r"^#? ?\[\[?([^\]]+)\]", line)
        if header:
            section = header.group(1)
            section = re.sub(r"^providers\.\w+$", "providers", section)
            section = re.sub(r"^pricing\.overrides\..*$", "pricing.overrides", section)
            section = re.sub(r"^experiments\.[\w-]+", "experiments", section)
            section = re.sub(r"^tenants\.[\w-]+$", "tenants", section)
            continue
        key = re.match(r"^#? ?([a-z0-9_]+) = ", line)
        if key:
            documented.add(f"{section}.{key.group(1)}")
    expected = _model_keys(Config) - {"providers", "pricing.overrides", "experiments", "tenants"}
    from huntaze_cli.config import (
        AlertRule,
        Budget,
        ExperimentConfig,
        PriceOverride,
        ProviderConfig,
        TenantConfig,
    )

    expected |= {f"tenants.{k}" for k in TenantConfig.model_fields}
    expected |= {f"experiments.{k}" for k in _model_keys(ExperimentConfig)}
    expected.discard("thresholds.rules")
    expected |= {f"thresholds.rules.{k}" for k in AlertRule.model_fields}
    expected.discard("budgets.rules")
    expected |= {f"budgets.rules.{k}" for k in Budget.model_fields}
    expected |= {f"providers.{k}" for k in _model_keys(ProviderConfig)}
    expected |= {f"pricing.overrides.{k}" for k in _model_keys(PriceOverride)}
    assert expected - documented == set()
    # Commented-out examples parse too once uncommented.
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and ("=" in line or line.startswith("# [")) else line
        for line in text.splitlines()
    )
    tomllib.loads(uncommented)


def test_config_init_writes_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "huntaze.toml"
    first = run("--config", str(target), "config", "init", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json() == {"path": str(target), "written": True}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    again = run("--config", str(target), "config", "init")
    assert again.exit_code == 2
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert run("--config", str(target), "config", "init", "--force").exit_code == 0
    assert run("--config", str(target), "config", "validate").exit_code == 0


def test_config_path_uses_xdg(isolated_dirs: Path) -> None:
    result = run("config", "path", "--json")
    assert result.exit_code == 0
    data = result.json()
    assert data["path"] == str(isolated_dirs / "xdg-config" / "huntaze" / "config.toml")
    assert data["exists"] is False


def test_config_validate_bad_file_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[alerts]\nsmtp_port = 'abc'\n")
    result = run("--config", str(path), "config", "validate")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "alerts.smtp_port" in lines[0] and str(path) in lines[0]


def test_config_show_json_is_one_document(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-print")
    result = run("config", "show", "--json")
    assert result.exit_code == 0
    data = result.json()
    assert data["providers"]["openai"]["api_key_env"] == "OPENAI_API_KEY"
    assert "sk-should-not-print" not in result.stdout + result.stderr
    people = run("config", "show")
    assert people.exit_code == 0 and "sk-should-not-print" not in people.stdout
    assert "# OPENAI_API_KEY: set" in people.stdout
