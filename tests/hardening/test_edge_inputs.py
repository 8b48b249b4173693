"""Bad bytes, odd types, far dates and hostile cells end in one-line errors, not tracebacks."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.errors import BackendError
from tests.helpers import make_event, run

FAST = {"HUNTAZE_RATE_LIMIT__PER_SECONDS": "1", "HUNTAZE_RATE_LIMIT__MESSAGES": "100"}
CAMPAIGN = 'name = "n"\naccount = "a"\nprompt = "Hi {name}"\n'


def _one_line_error(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ")
    for needle in needles:
        assert needle in first, first


def _jsonl(events: list[Any]) -> str:
    return "".join(e.to_json() + "\n" for e in events)


# --- bytes that are not UTF-8, and byte-order marks ---------------------------------


def test_latin1_byte_in_campaign_toml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(CAMPAIGN.encode() + b'system = "caf\xe9"\n[[recipients]]\nid = "f"\n')
    _one_line_error(run("send-campaign", str(path), "--dry-run"), str(path), "line 4")


def test_latin1_byte_in_recipients_csv_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "fans.csv").write_bytes(b"id,name\nf1,Ann\nf2,Ren\xe9e\n")
    path = tmp_path / "c.toml"
    path.write_text(CAMPAIGN + 'recipients_file = "fans.csv"\n')
    _one_line_error(run("send-campaign", str(path), "--dry-run"), "fans.csv line 3")


def test_latin1_byte_in_config_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[routing]\ndefault_model = "gpt-4o-mini"\n# caf\xe9\n')
    _one_line_error(run("--config", str(path), "config", "validate"), str(path), "line 3")


def test_latin1_byte_in_costs_import_names_the_line_and_stores_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    good = _jsonl([make_event(1), make_event(2)])
    path.write_bytes(good.encode() + b'{"attempt_id": "caf\xe9"}\n')
    _one_line_error(run("costs", "import", str(path)), "line 3")
    assert run("costs", "stats", "--json").json()["today"]["requests"] == 0
    stdin = run("costs", "import", "-", input=good.encode() + b"\xff\n")  # type: ignore[arg-type]
    _one_line_error(stdin, "<stdin> line 3")


@pytest.mark.parametrize("suffix", ["toml", "json"])
def test_a_bom_is_accepted_in_toml_and_json_campaigns(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c.{suffix}"
    if suffix == "toml":
        text = CAMPAIGN + '[[recipients]]\nid = "f"\nname = "x"\n'
    else:
        text = json.dumps(
            {"name": "n", "account": "a", "prompt": "Hi", "recipients": [{"id": "f"}]}
        )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = run("send-campaign", str(path), "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["recipients"] == 1


# --- export ---------------------------------------------------------------------------


def test_export_to_an_unwritable_path_is_a_usage_error() -> None:
    run("costs", "import", "-", input=_jsonl([make_event(1)]))
    _one_line_error(run("costs", "export", "-o", "/proc/nope/x.jsonl"), "--output")


def test_export_until_the_last_representable_day_exports_everything() -> None:
    run("costs", "import", "-", input=_jsonl([make_event(1), make_event(2)]))
    result = run("costs", "export", "--until", "9999-12-31")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    swapped = run("costs", "export", "--since", "2026-02-01", "--until", "2026-01-01")
    _one_line_error(swapped, "--since")


def test_export_file_is_private(tmp_path: Path) -> None:
    run("costs", "import", "-", input=_jsonl([make_event(1)]))
    out = tmp_path / "out.jsonl"
    assert run("costs", "export", "-o", str(out)).exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600


def test_csv_export_neutralises_formulas_and_round_trips_exactly(tmp_path: Path) -> None:
    hostile = ['=HYPERLINK("http://evil.example","x")', "+1", "-2", "@sum", "'quoted"]
    events = [make_event(n, account=value) for n, value in enumerate(hostile)]
    run("costs", "import", "-", input=_jsonl(events))
    exported = run("costs", "export", "--format", "csv")
    assert exported.exit_code == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert all(row["account"].startswith("'") for row in rows)
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())
    out = tmp_path / "events.csv"
    out.write_text(exported.stdout)
    other = tmp_path / "other.toml"
    other.write_text(f'[ledger]\npath = "{tmp_path / "other.db"}"\n')
    assert run("--config", str(other), "costs", "import", str(out)).exit_code == 0
    back = run("--config", str(other), "costs", "export").stdout.splitlines()
    assert sorted(json.loads(line)["account"] for line in back) == sorted(hostile)
    breakdown = run("costs", "breakdown", "--by", "account", "--csv")
    assert "=HYPERLINK" not in breakdown.stdout.replace("'=HYPERLINK", "")


# --- import ---------------------------------------------------------------------------


def test_import_refuses_a_timestamp_in_the_future() -> None:
    far = make_event(1, ts=datetime(9999, 12, 31, tzinfo=UTC))
    _one_line_error(run("costs", "import", "-", input=_jsonl([far])), "line 1", "ts:")
    near = make_event(2, ts=datetime.now(UTC) + timedelta(minutes=1))  # clock skew
    assert run("costs", "import", "-", input=_jsonl([near])).exit_code == 0


@pytest.mark.parametrize("cost", ["1e30", "1e999999999", 1e30])
def test_import_error_names_cost_usd_never_cost_nano(cost: Any) -> None:
    record = json.loads(make_event(1).to_json())
    record["cost_usd"] = cost
    result = run("costs", "import", "-", input=json.dumps(record) + "\n")
    _one_line_error(result, "cost_usd")
    assert "cost_nano" not in result.stderr


# --- campaign fields ------------------------------------------------------------------


def test_id_placeholder_works(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'name = "n"\naccount = "a"\nprompt = "Hello fan #{id}"\n[[recipients]]\nid = "f7"\n'
    )
    result = run("send-campaign", str(path), "--json", env=FAST)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    ("line", "field"),
    [("max_tokens = true", "max_tokens"), ('temperature = "0.5"', "temperature")],
)
def test_campaign_values_of_the_wrong_type_are_refused(
    tmp_path: Path, line: str, field: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CAMPAIGN + line + '\n[[recipients]]\nid = "f"\nname = "x"\n')
    _one_line_error(run("send-campaign", str(path), "--dry-run"), field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("[routing]\nconcurrency = true\n", "routing.concurrency"),
        ('[routing]\ntimeout_s = "0.5"\n', "routing.timeout_s"),
        ('[metrics]\ncloudwatch = "yes"\n', "metrics.cloudwatch"),
        ("[thresholds]\ndaily_usd = true\n", "thresholds.daily_usd"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused(tmp_path: Path, body: str, field: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    _one_line_error(run("--config", str(path), "config", "validate"), field)


def test_environment_text_still_sets_numbers_and_booleans() -> None:
    env = {"HUNTAZE_ROUTING__CONCURRENCY": "8", "HUNTAZE_METRICS__CLOUDWATCH": "false"}
    result = run("config", "show", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    assert result.json()["routing"]["concurrency"] == 8


@pytest.mark.parametrize("value", ["1e28", "NaN", "Infinity"])
def test_huge_threshold_is_refused_by_validate_naming_the_variable(value: str) -> None:
    env = {"HUNTAZE_THRESHOLDS__DAILY_USD": value}
    for args in (["config", "validate"], ["costs", "stats"], ["check-thresholds"]):
        _one_line_error(run(*args, env=env), "HUNTAZE_THRESHOLDS__DAILY_USD")


def test_unknown_environment_key_names_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[routing]\n")
    result = run("--config", str(path), "config", "validate", env={"HUNTAZE_BOGUS__X": "1"})
    _one_line_error(result, "HUNTAZE_BOGUS__X")
    assert str(path) not in result.stderr


def test_empty_idempotency_key_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CAMPAIGN + '[[recipients]]\nid = "f"\nname = "x"\n')
    _one_line_error(run("send-campaign", str(path), "--idempotency-key", ""), "idempotency")
    _one_line_error(run("send-campaign", str(path), "--idempotency-key", "  "), "idempotency")


# --- a failed COMMIT (disk full) ------------------------------------------------------


class _DiskFullOnCommit:
    """A real connection whose COMMIT fails the way SQLite's does when the disk is full:
    SQLite rolls the transaction back itself, then reports SQLITE_FULL."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            self.conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)


def test_a_failed_commit_reports_the_real_error(tmp_path: Path) -> None:
    from huntaze_cli.storage.sqlite.db import sqlite_errors, transaction

    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    txn = transaction(_DiskFullOnCommit(conn))  # type: ignore[arg-type]
    with (
        pytest.raises(BackendError, match="disk is full"),
        sqlite_errors(tmp_path / "x.db", "storing"),
        txn as inside,
    ):
        inside.execute("INSERT INTO t VALUES (1)")
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
