"""send-campaign, status, worker and requeue end to end on the embedded defaults."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.config import load_config
from huntaze_testing.fake_llm import FakeLLM
from tests.helpers import run

REPO = Path(__file__).resolve().parents[2]
FAST = {"HUNTAZE_RATE_LIMIT__PER_SECONDS": "1", "HUNTAZE_QUEUE__BACKOFF__BASE_S": "0.05"}


def write_campaign(tmp_path: Path, count: int, *, extra: str = "") -> Path:
    fans = tmp_path / "fans.csv"
    with fans.open("w") as fh:
        fh.write("id,name,interest\n")
        for n in range(count):
            fh.write(f"fan_{n},Name {n},topic {n % 7}\n")
    path = tmp_path / "campaign.toml"
    path.write_text(
        'name = "Test campaign"\naccount = "creator_t"\ntenant = "agency_t"\n'
        'prompt = "Write a thank-you to {name}, who loves {interest}."\n'
        'recipients_file = "fans.csv"\nmax_tokens = 40\n' + extra
    )
    return path


def outbox() -> list[dict[str, Any]]:
    path = load_config().outbox_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_window(times: list[datetime], messages: int, per_seconds: float) -> None:
    times = sorted(times)
    for i in range(len(times) - messages):
        gap = (times[i + messages] - times[i]).total_seconds()
        assert gap >= per_seconds - 1e-6, f"{messages + 1} deliveries within {gap:.3f} s"


def test_quickstart_example_runs_offline() -> None:
    result = run("send-campaign", str(REPO / "examples" / "quickstart.toml"), "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    expected = {
        "campaign_id", "name", "account", "tenant", "state", "recipients", "counts",
        "cost_usd", "estimated_cost_usd", "providers", "eta_seconds", "created_at",
        "updated_at",
    }  # fmt: skip
    assert expected <= set(report)
    assert report["state"] == "completed" and report["recipients"] == 8
    assert report["counts"] == {
        "pending": 0, "generated": 0, "queued": 0, "sent": 8, "failed": 0, "dead": 0
    }  # fmt: skip
    assert report["providers"]["simulated"]["requests"] == 8
    assert report["cost_usd"] == report["providers"]["simulated"]["cost_usd"] > 0
    lines = outbox()
    assert len(lines) == 8
    assert set(lines[0]) == {
        "idempotency_key", "campaign_id", "account", "recipient_id", "text", "sent_at"
    }  # fmt: skip
    assert lines[0]["idempotency_key"] == f"{report['campaign_id']}:fan_1"
    status = run("status", report["campaign_id"], "--json")
    assert status.exit_code == 0 and status.json()["counts"]["sent"] == 8
    costs = run("costs", "stats", "--json").json()
    assert costs["today"]["requests"] == 8


def test_rate_limit_holds_for_a_foreground_campaign(tmp_path: Path) -> None:
    env = {**FAST, "HUNTAZE_RATE_LIMIT__MESSAGES": "5"}
    result = run("send-campaign", str(write_campaign(tmp_path, 17)), "--json", env=env)
    assert result.exit_code == 0, result.stderr
    times = [datetime.fromisoformat(line["sent_at"]) for line in outbox()]
    assert len(times) == 17
    assert_window(times, 5, 1.0)
    # Waited, never dropped: 17 messages at 5 per second need at least 3 s.
    assert (max(times) - min(times)).total_seconds() >= 3.0 - 1e-6


def test_dry_run_calls_stores_and_sends_nothing(tmp_path: Path) -> None:
    result = run("send-campaign", str(write_campaign(tmp_path, 30)), "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["dry_run"] is True and report["recipients"] == 30
    assert report["routing"]["order"] == ["simulated"]
    sim = report["providers"]["simulated"]
    assert sim["input_tokens"] > 0 and sim["output_tokens_max"] == 30 * 40
    assert 0 < sim["cost_low_usd"] < sim["cost_high_usd"]
    assert report["eta_seconds"] == 120.0  # 30 messages at 10 per 60 s: two more windows
    config = load_config()
    assert not config.campaigns_path.exists() or _campaign_rows() == 0
    assert not config.outbox_path.exists()
    assert run("costs", "stats", "--json").json()["today"]["requests"] == 0


def _campaign_rows() -> int:
    with sqlite3.connect(load_config().campaigns_path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0])


@pytest.mark.parametrize(
    ("csv_tail", "needle"),
    [
        ("fan_x,Dup,a\nfan_x,Dup,b\n", "duplicate recipient id 'fan_x'"),
        ("fan_y,Only name\n", "expected 3 columns"),
    ],
)
def test_bad_recipient_line_stores_nothing(tmp_path: Path, csv_tail: str, needle: str) -> None:
    path = write_campaign(tmp_path, 5)
    with (tmp_path / "fans.csv").open("a") as fh:
        fh.write(csv_tail)
    result = run("send-campaign", str(path), "--json")
    assert result.exit_code == 2
    assert needle in result.stderr and "fans.csv line" in result.stderr
    assert result.stdout == ""
    assert not load_config().campaigns_path.exists() or _campaign_rows() == 0
    assert outbox() == []


def test_unknown_key_and_unknown_provider_are_exit_2(tmp_path: Path) -> None:
    bad_key = run("send-campaign", str(write_campaign(tmp_path, 2, extra='colour = "x"\n')))
    assert bad_key.exit_code == 2 and "colour: unknown key" in bad_key.stderr
    pinned = write_campaign(tmp_path, 2, extra='provider = "nope"\n')
    result = run("send-campaign", str(pinned))
    assert result.exit_code == 2 and "provider: unknown provider 'nope'" in result.stderr


def test_no_wait_then_worker_once_delivers(tmp_path: Path) -> None:
    queued = run("send-campaign", str(write_campaign(tmp_path, 6)), "--no-wait", "--json")
    assert queued.exit_code == 0, queued.stderr
    report = queued.json()
    assert report["state"] == "delivering" and report["counts"]["queued"] == 6
    assert outbox() == []
    worker = run("worker", "--once", "--json")
    assert worker.exit_code == 0, worker.stderr
    assert worker.json()["delivered"] == 6
    final = run("status", report["campaign_id"], "--json").json()
    assert final["state"] == "completed" and final["counts"]["sent"] == 6
    assert len(outbox()) == 6
    overview = run("status", "--json").json()
    assert overview["campaigns"][0]["campaign_id"] == report["campaign_id"]
    assert overview["workers"] and overview["workers"][0]["delivered"] == 6


def test_idempotency_key_resumes_instead_of_duplicating(tmp_path: Path) -> None:
    path = str(write_campaign(tmp_path, 4))
    first = run("send-campaign", path, "--idempotency-key", "nov-1", "--no-wait", "--json")
    again = run("send-campaign", path, "--idempotency-key", "nov-1", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["campaign_id"] == first.json()["campaign_id"]
    assert again.json()["resumed"] is True and "resuming campaign" in again.stderr
    third = run("send-campaign", path, "--idempotency-key", "nov-1", "--json")
    assert third.json()["counts"]["sent"] == 4
    assert _campaign_rows() == 1
    keys = [line["idempotency_key"] for line in outbox()]
    assert len(keys) == len(set(keys)) == 4
    events = run("costs", "breakdown", "--by", "campaign", "--json").json()
    assert events["total"]["requests"] == 4  # generated once, not per run


def test_unknown_campaign_status_is_exit_1() -> None:
    result = run("status", "cmp_nope", "--json")
    assert result.exit_code == 1 and "not found" in result.stderr and result.stdout == ""


class _Hook(BaseHTTPRequestHandler):
    statuses: list[int] = []
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.received.append(json.loads(body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"statuses": [], "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


def test_failed_deliveries_retry_then_dead_letter_then_requeue(
    tmp_path: Path, hook: tuple[str, type[_Hook]]
) -> None:
    url, handler = hook
    env = {
        **FAST,
        "HUNTAZE_DELIVERY__SINK": "webhook",
        "HUNTAZE_DELIVERY__WEBHOOK_URL": url,
        "HUNTAZE_DELIVERY__WEBHOOK_SECRET_ENV": "HOOK_SECRET",
        "HOOK_SECRET": "s3cret-value",
        "HUNTAZE_QUEUE__MAX_ATTEMPTS": "2",
    }
    # Three first attempts fail, then two of the retries: two messages use up max_attempts.
    handler.statuses = [500, 503, 500, 500, 503]
    path = write_campaign(tmp_path, 3)
    result = run("send-campaign", str(path), "--json", env=env)
    report = result.json()
    assert result.exit_code == 1  # some messages failed for good
    assert report["state"] == "completed_with_errors"
    assert report["counts"]["dead"] == 2 and report["counts"]["sent"] == 1
    overview = run("status", "--json", env=env).json()
    assert overview["queue"]["creator_t"]["dead"] == 2
    requeued = run("requeue", report["campaign_id"], "--json", env=env)
    assert requeued.json() == {
        "campaign_id": report["campaign_id"], "requeued": 2, "regenerate": 0
    }  # fmt: skip
    handler.statuses = []
    worker = run("worker", "--once", "--json", env=env)
    assert worker.json()["delivered"] == 2
    final = run("status", report["campaign_id"], "--json", env=env).json()
    assert final["state"] == "completed" and final["counts"]["sent"] == 3
    assert len({m["idempotency_key"] for m in handler.received}) == 3
    assert "s3cret-value" not in result.stdout + result.stderr


def test_generation_failures_are_recorded_and_resume_regenerates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeLLM(openai_keys=["sk-camp"]) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-camp")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
        fake.set_mix("*", {"400": 1.0})
        path = str(write_campaign(tmp_path, 3))
        first = run("send-campaign", path, "--idempotency-key", "k1", "--json", env=FAST)
        assert first.exit_code == 1
        report = first.json()
        assert report["counts"]["dead"] == 3 and report["state"] == "completed_with_errors"
        assert report["providers"]["openai"]["requests"] == 3  # failed attempts are in the ledger
        fake.clear_faults()
        second = run("send-campaign", path, "--idempotency-key", "k1", "--json", env=FAST)
        assert second.exit_code == 0, second.stderr
        assert second.json()["counts"]["sent"] == 3 and second.json()["state"] == "completed"
        assert second.json()["providers"]["openai"]["requests"] == 6
