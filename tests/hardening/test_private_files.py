"""Data files are the owner's alone; cron runs leave bounded state; docs say what works."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from huntaze_cli.config import load_config
from tests.helpers import run

REPO = Path(__file__).resolve().parents[2]
FAST = {"HUNTAZE_RATE_LIMIT__PER_SECONDS": "1", "HUNTAZE_RATE_LIMIT__MESSAGES": "100"}


def test_data_dir_is_0700_and_every_data_file_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        result = run("send-campaign", str(REPO / "examples" / "quickstart.toml"), env=FAST)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    data = load_config().data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [p for p in data.iterdir() if p.is_file()]
    assert any(p.name == "outbox.jsonl" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_worker_once_from_cron_leaves_a_bounded_number_of_rows() -> None:
    for _ in range(14):
        assert run("worker", "--once").exit_code == 0
    path = load_config().campaigns_path
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM workers").fetchone()[0] == 14  # all recent
        old = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        conn.execute("UPDATE workers SET beat_at = ?", (old,))
    assert run("worker", "--once").exit_code == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM workers").fetchone()[0] == 10


def test_readme_cron_lines_keep_stderr_out_of_json_logs() -> None:
    readme = (REPO / "README.md").read_text()
    for line in readme.splitlines():
        if "--json" in line and ">>" in line:
            assert "2>&1" not in line, line
        if line.startswith("EnvironmentFile="):
            assert "#" not in line, line


def test_readme_says_reload_keeps_server_settings() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    assert re.search(r"SIGHUP reloads.*`\[server\]` settings apply after a restart", readme)
