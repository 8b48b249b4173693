"""`config show` output pastes back as a config file, with every secret masked."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run

HOOK = "https://user:pa55word@hooks.example.com/in?token=tok-s3cret&channel=ops"


def test_config_show_pastes_back_to_the_same_config(tmp_path: Path) -> None:
    env = {
        "OPENAI_API_KEY": "sk-not-shown",
        "HUNTAZE_THRESHOLDS__DAILY_USD": "12.5",
        "HUNTAZE_PRICING__OVERRIDES": '{"openai/gpt-4o-mini": {"input": 0.15, "output": 0.6}}',
        "HUNTAZE_DELIVERY__WEBHOOK_SECRET_ENV": "HOOK_SECRET",
    }
    shown = run("config", "show", env={**env, "COLUMNS": "40"})
    assert shown.exit_code == 0, shown.stderr
    assert "# OPENAI_API_KEY: set" in shown.stdout and "# HOOK_SECRET: NOT SET" in shown.stdout
    pasted = tmp_path / "pasted.toml"
    pasted.write_text(shown.stdout)
    first = run("config", "show", "--json", env=env).json()
    again = run("--config", str(pasted), "config", "show", "--json", env={"OPENAI_API_KEY": "x"})
    assert again.exit_code == 0, again.stderr
    assert again.json() == first
    assert first["thresholds"]["daily_usd"] == 12.5  # a number, not "12.5"
    assert first["pricing"]["overrides"]["openai/gpt-4o-mini"]["input"] == 0.15
    assert first["rate_limit"]["path"].endswith("ratelimit.db")


def test_config_show_masks_url_passwords_and_query_secrets() -> None:
    result = run("config", "show", "--json", env={"HUNTAZE_DELIVERY__WEBHOOK_URL": HOOK})
    assert result.exit_code == 0, result.stderr
    url = result.json()["delivery"]["webhook_url"]
    assert "pa55word" not in url and "tok-s3cret" not in url
    assert "channel=ops" in url and "hooks.example.com/in" in url
    people = run("config", "show", env={"HUNTAZE_DELIVERY__WEBHOOK_URL": HOOK})
    assert "tok-s3cret" not in people.stdout and "pa55word" not in people.stdout
