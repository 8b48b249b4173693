"""Values from users and the ledger print as written: no markup, no emoji codes, no cuts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run

HOSTILE_NAME = "Promo [/] sale [red]x[/red] [link=http://evil.example]click[/link] :smile:"
HOSTILE_ACCOUNT = "acct[/b]"
FAST = {"HUNTAZE_RATE_LIMIT__PER_SECONDS": "1", "HUNTAZE_RATE_LIMIT__MESSAGES": "100"}


def _campaign(tmp_path: Path, *, name: str, account: str, count: int = 3) -> Path:
    path = tmp_path / "campaign.json"
    recipients = ",".join(f'{{"id": "fan_{n}", "name": "N{n}"}}' for n in range(count))
    import json

    path.write_text(
        json.dumps(
            {
                "name": name,
                "account": account,
                "prompt": "Hello {name}",
                "recipients": json.loads(f"[{recipients}]"),
            }
        )
    )
    return path


@pytest.fixture
def hostile_campaign(tmp_path: Path) -> str:
    result = run(
        "send-campaign",
        str(_campaign(tmp_path, name=HOSTILE_NAME, account=HOSTILE_ACCOUNT)),
        env=FAST,
    )
    assert result.exit_code == 0, result.stderr
    assert HOSTILE_NAME in result.stdout
    assert HOSTILE_ACCOUNT in result.stdout
    found = re.search(r"cmp_[0-9a-f]+", result.stdout)
    assert found
    return found.group(0)


def test_markup_in_user_data_prints_literally_everywhere(hostile_campaign: str) -> None:
    detail = run("status", hostile_campaign, env={"COLUMNS": "200"})
    assert detail.exit_code == 0, detail.stderr
    assert HOSTILE_NAME in detail.stdout and HOSTILE_ACCOUNT in detail.stdout
    overview = run("status", env={"COLUMNS": "200"})
    assert overview.exit_code == 0, overview.stderr
    assert HOSTILE_ACCOUNT in overview.stdout
    for by in ("account", "campaign"):
        report = run("costs", "breakdown", "--by", by, env={"COLUMNS": "200"})
        assert report.exit_code == 0, report.stderr
    assert HOSTILE_ACCOUNT in run("costs", "breakdown", "--by", "account").stdout


def test_a_forced_terminal_gets_no_hyperlink_or_style_from_user_data(
    hostile_campaign: str,
) -> None:
    result = run("status", hostile_campaign, env={"FORCE_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "\x1b]8;" not in result.stdout  # OSC 8 hyperlink
    assert "[link=http://evil.example]" in result.stdout
    assert "\x1b[1m" in result.stdout  # our own bold still works on a terminal


def test_no_color_drops_every_escape_code(hostile_campaign: str) -> None:
    result = run(
        "status", hostile_campaign, env={"FORCE_COLOR": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.stderr
    assert "\x1b[" not in result.stdout


def test_status_at_80_columns_keeps_money_and_headers_whole(hostile_campaign: str) -> None:
    for args in (["status"], ["status", hostile_campaign]):
        result = run(*args, env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), result.stdout
        assert "…" not in result.stdout, result.stdout
        assert re.search(r"\$\d+\.\d{6}", result.stdout), result.stdout
        for header in ("sent", "queued", "dead", "cost"):
            assert re.search(rf"\b{header}\b", result.stdout), (header, result.stdout)


def test_unpriced_campaign_cost_is_marked_unpriced(tmp_path: Path) -> None:
    path = _campaign(tmp_path, name="unpriced", account="acct", count=2)
    import json

    data = json.loads(path.read_text())
    data["model"] = "no-such-model-xyz"
    path.write_text(json.dumps(data))
    sent = run("send-campaign", str(path), "--json", env=FAST)
    assert sent.exit_code == 0, sent.stderr
    report = sent.json()
    assert report["unpriced_requests"] == 2
    assert report["providers"]["simulated"]["unpriced_requests"] == 2
    shown = run("status", report["campaign_id"], env={"COLUMNS": "200"})
    assert re.search(r"^\s*cost\s+unpriced\s*$", shown.stdout, re.M), shown.stdout
    assert re.search(r"^\s*estimated\s+unpriced\s*$", shown.stdout, re.M), shown.stdout
    overview = run("status", env={"COLUMNS": "200"})
    assert "unpriced" in overview.stdout
