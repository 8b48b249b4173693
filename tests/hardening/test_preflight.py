"""The config is checked before anything is spent; `config validate` checks cross-references."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run


@pytest.mark.parametrize(
    ("body", "env", "needle"),
    [
        ('[routing]\norder = ["nosuch"]\n', {}, "routing.order: unknown provider 'nosuch'"),
        ("[routing]\nweights = { nosuch = 1 }\n", {}, "routing.weights: unknown provider"),
        ('[flags]\nlegacy_provider = "nosuch"\n', {}, "flags.legacy_provider"),
        ('[delivery]\nsink = "webhook"\n', {}, "delivery.webhook_url: not set"),
        (
            '[delivery]\nsink = "webhook"\nwebhook_url = "http://127.0.0.1:9/x"\n'
            'webhook_secret_env = "HOOK_SECRET_UNSET"\n',
            {},
            "HOOK_SECRET_UNSET is not set",
        ),
        ('[delivery]\nsink = "sqs"\n', {}, "delivery.sqs_queue_url: not set"),
        (
            '[providers.openai]\nkind = "openai"\napi_key_env = "NO_SUCH_KEY_VAR"\n',
            {},
            "providers.openai.api_key_env: environment variable NO_SUCH_KEY_VAR",
        ),
        ('[server]\ntoken_env = "NO_SUCH_TOKEN"\n', {}, "server.token_env"),
    ],
)
def test_validate_checks_cross_references_and_secrets(
    tmp_path: Path, body: str, env: dict[str, str], needle: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    result = run("--config", str(path), "config", "validate", env=env)
    assert result.exit_code == 2, result.stdout
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ") and needle in first, first


def test_a_sound_config_validates(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[routing]\norder = ["openai"]\n[providers.openai]\nkind = "openai"\n'
        '[delivery]\nsink = "webhook"\nwebhook_url = "http://127.0.0.1:9/x"\n'
        'webhook_secret_env = "HOOK_SECRET"\n'
    )
    result = run(
        "--config", str(path), "config", "validate", "--json",
        env={"OPENAI_API_KEY": "sk-x", "HOOK_SECRET": "s"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.json()["valid"] is True


@pytest.mark.parametrize(
    "body",
    [
        '[routing]\norder = ["nosuch"]\n',
        '[delivery]\nsink = "webhook"\nwebhook_url = "http://127.0.0.1:9/x"\n'
        'webhook_secret_env = "HOOK_SECRET_UNSET"\n',
    ],
)
def test_send_campaign_checks_the_config_before_storing_or_spending(
    tmp_path: Path, body: str
) -> None:
    from huntaze_cli.config import load_config

    path = tmp_path / "config.toml"
    path.write_text(body)
    campaign = tmp_path / "c.toml"
    campaign.write_text('name = "n"\naccount = "a"\nprompt = "Hi"\n[[recipients]]\nid = "f"\n')
    result = run("--config", str(path), "send-campaign", str(campaign))
    assert result.exit_code == 2, result.stderr
    assert "nothing was stored or spent" in result.stderr
    assert not load_config(path).campaigns_path.exists()
    stats = run("--config", str(path), "costs", "stats", "--json").json()
    assert stats["today"]["requests"] == 0


def test_health_fails_a_sink_that_cannot_deliver(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[delivery]\nsink = "webhook"\nwebhook_url = "http://127.0.0.1:9/x"\n'
        'webhook_secret_env = "HOOK_SECRET_UNSET"\n'
    )
    result = run("--config", str(path), "health", "--json")
    assert result.exit_code == 1
    data = result.json()
    assert data["status"] == "unhealthy"
    assert data["checks"]["sink"]["status"] == "fail"
    assert "HOOK_SECRET_UNSET" in data["checks"]["sink"]["detail"]
    assert data["checks"]["config"]["status"] == "degraded"
    ok = run("health", "--json")
    assert ok.exit_code == 0 and ok.json()["checks"]["sink"]["status"] == "ok"
