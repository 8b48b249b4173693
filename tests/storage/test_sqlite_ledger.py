"""What only the SQLite ledger promises: its file, its migrations, several processes."""

from __future__ import annotations

import multiprocessing
import os
import random
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.config import Config
from huntaze_cli.errors import BackendError
from huntaze_cli.models import CostEvent
from huntaze_cli.storage import open_ledger
from huntaze_cli.storage.ledger import Counters, RecordResult
from huntaze_cli.storage.sqlite.db import (
    _enable_wal,
    applied_migrations,
    connect,
    migrate,
    split_script,
)
from huntaze_cli.storage.sqlite.ledger import LEDGER_MIGRATIONS, SQLiteLedger


def make_event(n: int, ts: datetime, **overrides: Any) -> CostEvent:
    data: dict[str, Any] = {
        "attempt_id": f"att-{n:06d}",
        "request_id": f"req-{n}",
        "ts": ts,
        "provider": ("azure", "openai")[n % 2],
        "model": ("gpt-4o-mini", "gpt-4o")[n % 3 == 0],
        "input_tokens": 100 + n % 17,
        "output_tokens": 40 + n % 13,
        "cost_nano": 1_000_003 * n % 9_999_991,
        "latency_ms": float(n % 4_000),
        "status": "error" if n % 11 == 0 else "ok",
        "account": f"creator_{n % 5}" if n % 7 else None,
        "campaign_id": f"cmp-{n % 3}",
    }
    data.update(overrides)
    return CostEvent.model_validate(data)


def sums(ledger: SQLiteLedger) -> tuple[Counters, Counters]:
    """Totals of all daily rollups and of all slot rollups."""
    now = datetime.now(UTC)
    daily, slots = Counters(), Counters()
    for row in ledger.daily(now.date() - timedelta(days=40), now.date() + timedelta(days=2)):
        daily.add(row.counters)
    for slot in ledger.slots(now - timedelta(days=40), now + timedelta(days=2)):
        slots.add(slot.counters)
    return daily, slots


def expected(events: list[CostEvent]) -> Counters:
    total = Counters()
    for event in events:
        total.add_event(event)
    return total


# --- the file ------------------------------------------------------------------------------


def test_file_is_in_wal_mode_and_created_with_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "ledger.db"
    with SQLiteLedger(path) as ledger:
        ledger.record([make_event(1, datetime.now(UTC))])
        other = sqlite3.connect(path)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        other.close()


def test_connection_settings_allow_several_writers(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db")
    assert conn.isolation_level is None
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    conn.close()


class _LockedAtFirst:
    """A connection whose WAL switch is refused as busy twice, as when several
    processes create one file at once (SQLite skips the busy handler there)."""

    def __init__(self) -> None:
        self.calls = 0

    def execute(self, sql: str) -> Any:
        self.calls += 1
        if self.calls <= 2:
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorname = "SQLITE_BUSY"
            raise exc
        return sqlite3.connect(":memory:").execute("SELECT 'wal'")


def test_switching_to_wal_waits_out_other_processes() -> None:
    conn = _LockedAtFirst()
    assert _enable_wal(conn, 5.0) == "wal"  # type: ignore[arg-type]
    assert conn.calls == 3
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _enable_wal(_LockedAtFirst(), 0.0)  # type: ignore[arg-type]


def test_migrations_are_recorded_and_never_applied_twice(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    SQLiteLedger(path).close()
    conn = sqlite3.connect(path)
    first = applied_migrations(conn)
    assert list(first) == [name for name, _ in LEDGER_MIGRATIONS]

    SQLiteLedger(path).close()
    assert applied_migrations(conn) == first
    assert migrate(conn, LEDGER_MIGRATIONS) == []
    conn.close()


def test_migrate_applies_only_new_migrations_in_order(tmp_path: Path) -> None:
    conn = connect(tmp_path / "m.db")
    calls: list[str] = []

    def add_rows(c: sqlite3.Connection) -> None:
        calls.append("rows")
        c.execute("INSERT INTO t (x) VALUES ('a;b'), ('c')")

    migrations: list[tuple[str, Any]] = [
        ("m001_table", "CREATE TABLE t (x TEXT); -- a comment; with a semicolon\n"),
        ("m002_rows", add_rows),
    ]
    assert migrate(conn, migrations) == ["m001_table", "m002_rows"]
    assert migrate(conn, migrations) == []
    migrations.append(("m003_index", "CREATE INDEX t_x ON t (x)"))
    assert migrate(conn, migrations) == ["m003_index"]
    assert calls == ["rows"]
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == ["a;b", "c"]
    assert list(applied_migrations(conn)) == ["m001_table", "m002_rows", "m003_index"]
    conn.close()


def test_an_upgrade_that_rewrites_data_says_so_and_a_new_file_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def fill(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t (x) VALUES ('a')")

    first: list[tuple[str, Any]] = [("m001_table", "CREATE TABLE t (x TEXT)"), ("m002", fill)]
    with caplog.at_level("WARNING", logger="huntaze_cli.storage.sqlite.db"):
        fresh = connect(tmp_path / "new.db")
        migrate(fresh, [("other_001", "CREATE TABLE o (y TEXT)")])  # another store's
        migrate(fresh, first)
        assert caplog.messages == []  # these stores' first migration: nothing to wait for
        old = connect(tmp_path / "old.db")
        migrate(old, first[:1])
        migrate(old, first)
    [message] = caplog.messages
    assert "upgrading" in message and "old.db" in message and "m002" in message
    fresh.close()
    old.close()


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    conn = connect(tmp_path / "m.db")

    def boom(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (1)")
        raise sqlite3.OperationalError("boom")

    with pytest.raises(sqlite3.OperationalError, match="boom"):
        migrate(conn, [("m001", "CREATE TABLE t (x)"), ("m002", boom)])
    assert not conn.in_transaction
    assert applied_migrations(conn) == {}
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone() is None
    with pytest.raises(ValueError, match="duplicate"):
        migrate(conn, [("m001", "SELECT 1"), ("m001", "SELECT 2")])
    conn.close()


def test_split_script_splits_where_sqlite_does() -> None:
    script = """
        CREATE TABLE t (x TEXT);
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT ';'; END;
        INSERT INTO t VALUES ('--;')  -- no semicolon at the end
    """
    statements = split_script(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(ValueError, match="incomplete"):
        split_script("INSERT INTO t VALUES ('unterminated")


# --- errors are BackendError, naming the file ---------------------------------------------


def test_corrupt_file_is_a_backend_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not a database, just some bytes\n" * 200)
    with pytest.raises(BackendError) as info:
        SQLiteLedger(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert "backup" in message  # says what to do


def test_directory_in_place_of_the_file_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.mkdir()
    with pytest.raises(BackendError, match=str(path)):
        SQLiteLedger(path)


def test_unwritable_directory_is_a_backend_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    path = blocker / "ledger.db"
    with pytest.raises(BackendError, match=str(path)):
        SQLiteLedger(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_read_only_file_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    SQLiteLedger(path).close()
    path.chmod(0o444)
    try:
        with pytest.raises(BackendError, match=str(path)):
            ledger = SQLiteLedger(path)
            ledger.check()
            ledger.record([make_event(1, datetime.now(UTC))])
    finally:
        path.chmod(0o644)


def test_a_value_sqlite_cannot_hold_rolls_the_whole_batch_back(tmp_path: Path) -> None:
    with SQLiteLedger(tmp_path / "ledger.db") as ledger:
        now = datetime.now(UTC)
        # The model refuses such a value; a hand-built event must still not half-commit.
        with pytest.raises(ValueError, match="less than or equal"):
            make_event(2, now, cost_nano=2**64)
        huge = make_event(2, now).model_copy(update={"cost_nano": 2**64})
        batch = [make_event(1, now), huge]
        with pytest.raises(BackendError, match="64 bits"):
            ledger.record(batch)
        assert list(ledger.events()) == []
        assert sums(ledger) == (Counters(), Counters())
        # The connection is still usable after the failed transaction.
        assert ledger.record(batch[:1]) == RecordResult(stored=1)


def test_closed_ledger_raises_backend_error(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    ledger.close()
    ledger.close()  # twice is fine
    with pytest.raises(BackendError, match="closed"):
        ledger.record([make_event(1, datetime.now(UTC))])
    with pytest.raises(BackendError, match="closed"):
        ledger.check()


# --- behaviour specific to this backend ----------------------------------------------------


def test_events_page_through_many_equal_timestamps(tmp_path: Path) -> None:
    base = datetime.now(UTC) - timedelta(days=1)
    events = [make_event(n, base + timedelta(seconds=n % 7)) for n in range(2_500)]
    with SQLiteLedger(tmp_path / "ledger.db") as ledger:
        ledger.record(events)
        got = [(e.ts, e.attempt_id) for e in ledger.events()]
        assert got == sorted((e.ts, e.attempt_id) for e in events)
        window = list(ledger.events(base + timedelta(seconds=2), base + timedelta(seconds=5)))
        assert len(window) == sum(1 for e in events if 2 <= (e.ts - base).seconds < 5)


def test_record_prunes_past_retention_without_a_separate_job(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    now = datetime.now(UTC)
    old = make_event(1, now - timedelta(days=5))
    with SQLiteLedger(path) as ledger:
        ledger.record([old])
    # A process with a shorter retention prunes on its first write.
    with SQLiteLedger(path, retention_days=3) as ledger:
        assert ledger.record([make_event(2, now)]) == RecordResult(stored=1)
        assert [e.attempt_id for e in ledger.events()] == ["att-000002"]
        assert sums(ledger)[0] == expected([old, make_event(2, now)])


def test_from_config_uses_the_ledger_section(tmp_path: Path) -> None:
    config = Config.model_validate(
        {"ledger": {"path": str(tmp_path / "x.db"), "retention_days": 7}}
    )
    with SQLiteLedger.from_config(config) as ledger:
        assert ledger.path == tmp_path / "x.db"
        assert ledger.retention_days == 7
        assert ledger.rollup_retention_days == 400
    default = open_ledger(Config())
    assert isinstance(default, SQLiteLedger)
    assert default.path == Config().ledger_path
    assert default.path.is_relative_to(tmp_path)  # the data dir of the test
    default.close()


# --- several processes at once -----------------------------------------------------------

WORKERS = 4
IDS_PER_WORKER = 600
STRIDE = 300  # neighbours share half their ids


def _writer(path: str, base: str, worker: int, barrier: Any, results: Any) -> None:
    """One process: open the (maybe new) file as the others do, then write in batches."""
    start = datetime.fromisoformat(base)
    ids = list(range(worker * STRIDE, worker * STRIDE + IDS_PER_WORKER))
    random.Random(worker).shuffle(ids)
    barrier.wait()
    try:
        ledger = SQLiteLedger(Path(path))
        total = RecordResult()
        for i in range(0, len(ids), 50):
            batch = [_shared_event(n, start) for n in ids[i : i + 50]]
            batch.append(batch[0])  # and a repeat inside the batch
            total.add(ledger.record(batch))
        ledger.close()
    except Exception as exc:
        # The parent fails the test with this; a child's traceback would be lost.
        results.put((worker, 0, 0, 0, f"{type(exc).__name__}: {exc}"))
        raise
    results.put((worker, total.stored, total.duplicates, total.expired, None))


def _shared_event(n: int, start: datetime) -> CostEvent:
    return make_event(n, start + timedelta(seconds=37 * n))


@pytest.mark.slow
def test_several_processes_store_each_attempt_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    base = datetime.now(UTC) - timedelta(days=2)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(path), base.isoformat(), w, barrier, results))
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert [o[4] for o in outcomes if o[4]] == []
    assert [proc.exitcode for proc in procs] == [0] * WORKERS

    distinct = [_shared_event(n, base) for n in range((WORKERS - 1) * STRIDE + IDS_PER_WORKER)]
    written = WORKERS * (IDS_PER_WORKER + IDS_PER_WORKER // 50)
    assert sum(o[1] for o in outcomes) == len(distinct)
    assert sum(o[2] for o in outcomes) == written - len(distinct)
    assert sum(o[3] for o in outcomes) == 0
    with SQLiteLedger(path) as ledger:
        stored = list(ledger.events())
        assert sorted(e.attempt_id for e in stored) == sorted(e.attempt_id for e in distinct)
        assert sums(ledger) == (expected(distinct), expected(distinct))


def test_scope_rollups_are_filled_from_the_kept_events_when_the_table_arrives(
    tmp_path: Path,
) -> None:
    """A ledger written before scope rollups existed gets them from its raw events."""
    path = tmp_path / "ledger.db"
    now = datetime.now(UTC)
    events = [make_event(n, now - timedelta(hours=n), tenant=("a", "b")[n % 2]) for n in range(10)]
    with SQLiteLedger(path) as ledger:
        ledger.record(events)
    # Back to the schema before the scope rollup: drop it and forget the migration.
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE rollup_scope")
    conn.execute("DELETE FROM _migrations WHERE name = 'ledger_005_scope_rollup'")
    conn.commit()
    conn.close()
    with SQLiteLedger(path) as ledger:
        got = dict(
            ledger.scope_groups(now - timedelta(days=1), now + timedelta(hours=1), ["tenant"])
        )
    assert {key: c.requests for key, c in got.items()} == {("a",): 5, ("b",): 5}
    assert sum(c.cost_nano for c in got.values()) == sum(e.cost_nano for e in events)


def test_scope_latency_is_filled_from_the_kept_events_when_the_columns_arrive(
    tmp_path: Path,
) -> None:
    """A ledger whose scope rollups had no latency histogram gets one from its raw events,
    and its counters are left as they were."""
    from huntaze_cli.storage.ledger import latency_bucket
    from huntaze_cli.storage.sqlite.ledger_schema import LATENCY_COLUMNS

    path = tmp_path / "ledger.db"
    now = datetime.now(UTC)
    events = [
        make_event(n, now - timedelta(minutes=20 * n), tenant=("a", "b")[n % 2]).model_copy(
            update={"latency_ms": 7.0 * n * n}
        )
        for n in range(30)
    ]
    with SQLiteLedger(path) as ledger:
        ledger.record(events)
    # Back to the scope rollups before the histogram: drop its columns, forget the step.
    conn = sqlite3.connect(path)
    for column in LATENCY_COLUMNS:
        conn.execute(f"ALTER TABLE rollup_scope DROP COLUMN {column}")
    conn.execute("DELETE FROM _migrations WHERE name = 'ledger_008_scope_latency'")
    conn.commit()
    conn.close()
    ranges = [(now - timedelta(days=1), now + timedelta(hours=1))]
    with SQLiteLedger(path) as ledger:
        [got] = ledger.scope_slot_groups(ranges, {"tenant": "a"})
        [counters] = [c for _, c in ledger.scope_groups(*ranges[0], [], {"tenant": "a"})]
    mine = [e for e in events if e.tenant == "a"]
    want = [0] * len(LATENCY_COLUMNS)
    for e in mine:
        want[latency_bucket(e.latency_ms)] += 1
    assert got["azure"].latency == want
    assert counters.requests == got["azure"].counters.requests == len(mine)


def test_an_old_ledger_keeps_its_rollups_and_sent_alerts_after_the_upgrade(
    tmp_path: Path,
) -> None:
    from huntaze_cli.storage.sqlite.alerts import SQLiteAlertStore
    from huntaze_cli.storage.sqlite.db import connect

    path = tmp_path / "ledger.db"
    conn = connect(path)
    migrate(conn, LEDGER_MIGRATIONS[:1])  # the schema before response_model
    day = datetime.now(UTC).date().isoformat()
    conn.execute(
        "INSERT INTO rollup_daily VALUES (?, 'azure', 'gpt-4o', '', '', 'default', 3, 0, 0, "
        "300, 0, 60, 9000)",
        (day,),
    )
    conn.execute(
        "INSERT INTO alerts (threshold, period, channel, sent_at, ok) "
        "VALUES ('daily', ?, 'email', 1, 1)",
        (day,),
    )
    conn.close()
    with SQLiteLedger(path) as ledger:
        [row] = ledger.daily(date.fromisoformat(day), date.fromisoformat(day) + timedelta(days=1))
        assert (row.model, row.response_model, row.counters.cost_nano) == ("gpt-4o", None, 9000)
        assert row.counters.mismatches == 0
    alerts = SQLiteAlertStore(path)
    [claim] = alerts.claims("global-daily", "", day)
    assert (claim.key.channel, claim.status) == ("email", "sent")
    alerts.close()
