"""The contract every RateLimiter keeps; each shared test runs on SQLite and on DynamoDB.

Tests pass explicit ``now`` datetimes, so they are exact to the microsecond and never
sleep. The rule under test (see ``sqlite_ratelimit``): with an account's grants sorted,
``g[i + messages] - g[i] >= per_seconds`` for every i, a refusal only when the window
``(now - per_seconds, now]`` already holds ``messages`` grants, and ``retry_after_s``
pointing exactly at the instant the next slot frees. DynamoDB-only and SQLite-only
behaviour follows the shared tests.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huntaze_cli.clock import ManualClock, from_micros, micros
from huntaze_cli.config import load_config
from huntaze_cli.errors import BackendError
from huntaze_cli.storage import open_rate_limiter
from huntaze_cli.storage.ratelimit import Grant, RateLimiter
from huntaze_cli.storage.sqlite.ratelimit import SQLiteRateLimiter
from tests.helpers import assert_gives_up_quickly

REGION = "us-east-1"
TABLE = "test-ratelimit"
MESSAGES = 5
PER = 60.0
PER_US = 60_000_000
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture(params=["sqlite", "dynamodb"])
def make_limiter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLimiter]:
    """Builds limiters sharing one store (a file, or a table in emulated DynamoDB)."""
    made: list[RateLimiter] = []
    if request.param == "sqlite":

        def make_sqlite(**options: Any) -> RateLimiter:
            options.setdefault("messages", MESSAGES)
            options.setdefault("per_seconds", PER)
            made.append(SQLiteRateLimiter(tmp_path / "ratelimit.db", **options))
            return made[-1]

        yield make_sqlite
    else:
        from moto import mock_aws

        from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter
        from huntaze_testing import moto_dynamodb

        # Conditional writes atomic, as DynamoDB makes them (racing-writer tests).
        undo = moto_dynamodb.install()
        try:
            with mock_aws():

                def make_dynamodb(**options: Any) -> RateLimiter:
                    options.setdefault("messages", MESSAGES)
                    options.setdefault("per_seconds", PER)
                    made.append(
                        DynamoDBRateLimiter(TABLE, region=REGION, create_tables=True, **options)
                    )
                    return made[-1]

                yield make_dynamodb
        finally:
            undo()
    for limiter in made:
        limiter.close()


@pytest.fixture
def limiter(make_limiter: MakeLimiter) -> RateLimiter:
    return make_limiter()


def at(seconds: float = 0.0, micro: int = 0) -> datetime:
    return T0 + timedelta(seconds=seconds, microseconds=micro)


def granted(grant: Grant) -> datetime:
    assert grant.granted, grant
    assert grant.at is not None and grant.at.tzinfo is not None
    assert grant.retry_after_s == 0
    return grant.at


def refused(grant: Grant) -> float:
    assert not grant.granted, grant
    assert grant.at is None
    assert grant.retry_after_s > 0
    return grant.retry_after_s


def assert_window_property(stamps: list[int], messages: int, per_us: int) -> None:
    """Any half-open window of per_us holds at most `messages` of the sorted stamps."""
    assert stamps == sorted(stamps)
    for i in range(len(stamps) - messages):
        assert stamps[i + messages] - stamps[i] >= per_us, (i, stamps)


# --- the shared contract --------------------------------------------------------------


def test_a_full_window_refuses_with_the_exact_wait(limiter: RateLimiter) -> None:
    assert (limiter.messages, limiter.per_seconds) == (MESSAGES, PER)
    stamps = [granted(limiter.acquire("creator", now=at(i))) for i in range(MESSAGES)]
    assert stamps == [at(i) for i in range(MESSAGES)]
    # The oldest grant (at 0 s) frees its slot at exactly 60 s.
    assert refused(limiter.acquire("creator", now=at(10))) == 50.0
    assert refused(limiter.acquire("creator", now=at(59.5))) == 0.5
    wait = refused(limiter.acquire("creator", now=at(10, 250)))
    assert wait == pytest.approx(49.99975, abs=1e-9)
    # Waiting exactly retry_after_s is enough; it lands on the freed slot.
    later = at(10, 250) + timedelta(seconds=wait)
    assert granted(limiter.acquire("creator", now=later)) == at(60)
    # The next slot is the grant at 1 s turning 60 s old.
    assert refused(limiter.acquire("creator", now=at(60))) == 1.0


def test_accounts_are_independent(limiter: RateLimiter) -> None:
    for i in range(MESSAGES):
        granted(limiter.acquire("busy", now=at(0, i)))
    refused(limiter.acquire("busy", now=at(1)))
    # A full window of one account never delays another, at the same instant.
    for _ in range(MESSAGES):
        assert granted(limiter.acquire("quiet", now=at(1))) == at(1)
    refused(limiter.acquire("quiet", now=at(1)))
    refused(limiter.acquire("busy", now=at(2)))
    assert granted(limiter.acquire("third", now=at(2))) == at(2)


def test_boundary_a_slot_frees_exactly_per_seconds_after_its_grant(
    limiter: RateLimiter,
) -> None:
    # A burst at one instant is allowed: the rule counts grants, not spacing.
    for _ in range(MESSAGES):
        assert granted(limiter.acquire("edge", now=at(0))) == at(0)
    # One microsecond before the boundary the window (now - 60 s, now] still holds all.
    assert refused(limiter.acquire("edge", now=at(60) - US)) == pytest.approx(1e-6, abs=1e-12)
    # At the boundary every grant of the burst has left (t > now - per is false for t = 0).
    for _ in range(MESSAGES):
        assert granted(limiter.acquire("edge", now=at(60))) == at(60)
    assert refused(limiter.acquire("edge", now=at(60))) == PER
    # So a closed interval [0, 60] holds 2 x messages grants, while every half-open
    # [t, t + 60) holds at most `messages`, which is the rule.


def test_a_simulated_worker_delivers_everything_as_early_as_allowed(
    limiter: RateLimiter,
) -> None:
    """Never drop: on a refusal the worker waits retry_after_s and tries again."""
    total, clock, refusals = 23, at(0), 0
    stamps: list[int] = []
    while len(stamps) < total:
        grant = limiter.acquire("worker", now=clock)
        if grant.granted:
            stamps.append(micros(granted(grant)))
            clock += timedelta(milliseconds=250)  # the delivery itself takes a while
        else:
            refusals += 1
            clock += timedelta(seconds=refused(grant))
    assert_window_property(stamps, MESSAGES, PER_US)
    # Each window's first grant is exactly the previous window's first plus 60 s, and
    # no refusal was wasted: one per window.
    firsts = stamps[::MESSAGES]
    assert [from_micros(s) for s in firsts] == [at(PER * k) for k in range(len(firsts))]
    assert refusals == (total - 1) // MESSAGES


def test_a_clock_behind_the_latest_grant_never_stamps_out_of_order(
    limiter: RateLimiter,
) -> None:
    assert granted(limiter.acquire("skew", now=at(30))) == at(30)
    # Another worker's clock is 20 s behind: its grant is stamped at the latest one.
    assert granted(limiter.acquire("skew", now=at(10))) == at(30)
    for _ in range(MESSAGES - 2):
        granted(limiter.acquire("skew", now=at(31)))
    # Full: the wait is counted on the caller's own clock, to the first grant + 60 s.
    assert refused(limiter.acquire("skew", now=at(20))) == 70.0
    assert refused(limiter.acquire("skew", now=at(89))) == 1.0
    assert granted(limiter.acquire("skew", now=at(90))) == at(90)


def test_without_now_the_limiter_reads_its_clock(make_limiter: MakeLimiter) -> None:
    clock = ManualClock(T0)
    limiter = make_limiter(messages=2, per_seconds=1.5, clock=clock)
    assert granted(limiter.acquire("clocked")) == at(0)
    clock.advance(0.25)
    assert granted(limiter.acquire("clocked")) == at(0.25)
    clock.advance(0.25)
    assert refused(limiter.acquire("clocked")) == 1.0
    clock.advance(1.0)
    assert granted(limiter.acquire("clocked")) == at(1.5)
    # Wall-clock stamps are the real time, in UTC.
    real = make_limiter(messages=1, per_seconds=1.0)
    before = datetime.now(UTC)
    stamp = granted(real.acquire("real"))
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC) + timedelta(seconds=1)


def test_lowering_messages_applies_to_grants_already_made(make_limiter: MakeLimiter) -> None:
    wide = make_limiter(messages=5, per_seconds=PER)
    for i in range(5):
        granted(wide.acquire("shrink", now=at(i)))
    # Another process (or a restart) now runs with 3 per minute: 5 are in the window,
    # so a slot frees only once 3 of them are left behind, when the one at 2 s has.
    narrow = make_limiter(messages=3, per_seconds=PER)
    assert refused(narrow.acquire("shrink", now=at(10))) == 52.0
    assert granted(narrow.acquire("shrink", now=at(62))) == at(62)
    assert refused(narrow.acquire("shrink", now=at(62))) == 1.0


def test_property_grants_keep_the_window_and_no_refusal_is_needless(
    make_limiter: MakeLimiter,
) -> None:
    limiters: dict[tuple[int, float], RateLimiter] = {}
    step = st.one_of(
        st.just(0),
        st.integers(1, 3_000_000),  # microseconds: sub-second and multi-second steps
        st.sampled_from(["retry", "just-before"]),  # land on (or next to) the boundary
    )

    @settings(max_examples=40, deadline=None)
    @given(
        messages=st.integers(1, 4),
        per_seconds=st.sampled_from([0.5, 1.0, 2.75]),
        steps=st.lists(st.tuples(st.integers(0, 2), step), max_size=40),
    )
    def check(messages: int, per_seconds: float, steps: list[tuple[int, Any]]) -> None:
        key = (messages, per_seconds)
        if key not in limiters:
            limiters[key] = make_limiter(messages=messages, per_seconds=per_seconds)
        limiter = limiters[key]
        # The store outlives one example: fresh accounts keep the examples apart.
        tag = uuid.uuid4().hex[:12]
        per_us = round(per_seconds * 1_000_000)
        stamps: dict[int, list[int]] = {0: [], 1: [], 2: []}
        waits = {0: 0, 1: 0, 2: 0}
        now = micros(T0)
        for account, move in steps:
            if move == "retry":
                now += waits[account]
            elif move == "just-before":
                now += max(waits[account] - 1, 0)
            else:
                now += move
            grant = limiter.acquire(f"{tag}-{account}", now=from_micros(now))
            mine = stamps[account]
            effective = max(now, mine[-1]) if mine else now
            in_window = [s for s in mine if s > effective - per_us]
            if grant.granted:
                assert len(in_window) < messages
                assert micros(granted(grant)) == effective
                mine.append(effective)
            else:
                # Refused only when the window is really full, with the exact wait.
                assert len(in_window) >= messages
                want = in_window[len(in_window) - messages] + per_us - now
                assert want > 0
                assert round(refused(grant) * 1_000_000) == want
                waits[account] = want
        for mine in stamps.values():
            assert_window_property(mine, messages, per_us)

    check()


# --- choosing a backend ---------------------------------------------------------------


def test_open_rate_limiter_follows_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUNTAZE_RATE_LIMIT__MESSAGES", "7")
    monkeypatch.setenv("HUNTAZE_RATE_LIMIT__PER_SECONDS", "30")
    config = load_config()
    limiter = open_rate_limiter(config)
    assert isinstance(limiter, SQLiteRateLimiter)
    assert limiter.path == config.ratelimit_path
    assert (limiter.messages, limiter.per_seconds) == (7, 30.0)
    limiter.close()

    from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter

    monkeypatch.setenv("HUNTAZE_RATE_LIMIT__BACKEND", "dynamodb")
    monkeypatch.setenv("HUNTAZE_RATE_LIMIT__TABLE", "from-env")
    monkeypatch.setenv("HUNTAZE_RATE_LIMIT__REGION", "eu-west-3")
    monkeypatch.setenv("HUNTAZE_RATE_LIMIT__ENDPOINT_URL", "http://127.0.0.1:4566")
    remote = open_rate_limiter(load_config())
    assert isinstance(remote, DynamoDBRateLimiter)
    assert (remote.table, remote.messages, remote.per_seconds) == ("from-env", 7, 30.0)
    assert remote._db.client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert remote._db.client.meta.region_name == "eu-west-3"
    remote.close()


def test_the_sqlite_limiter_never_imports_boto3(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from huntaze_cli.storage import open_rate_limiter\n"
        "from huntaze_cli.config import load_config\n"
        "limiter = open_rate_limiter(load_config())\n"
        "assert limiter.acquire('a').granted\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- SQLite specifics -----------------------------------------------------------------


def test_sqlite_records_its_migration_and_prunes_idle_accounts(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "rl.db"
    limiter = SQLiteRateLimiter(path, messages=2, per_seconds=PER)
    granted(limiter.acquire("idle", now=at(0)))
    granted(limiter.acquire("active", now=at(0)))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM _migrations").fetchall() == [
            ("ratelimit_001_windows",),
            ("ratelimit_002_quotas",),
        ]
        rows = dict(conn.execute("SELECT account, grants FROM windows").fetchall())
    assert rows == {"idle": str(micros(at(0))), "active": str(micros(at(0)))}
    # Two days on, the next (hourly) prune removes the account idle since.
    limiter._next_prune = 0.0
    granted(limiter.acquire("active", now=at(2 * 86_400)))
    with sqlite3.connect(path) as conn:
        accounts = [row[0] for row in conn.execute("SELECT account FROM windows")]
    assert accounts == ["active"]
    limiter.close()


def test_sqlite_keeps_only_the_window_in_each_row(tmp_path: Path) -> None:
    import sqlite3

    limiter = SQLiteRateLimiter(tmp_path / "rl.db", messages=3, per_seconds=1.0)
    for i in range(10):
        granted(limiter.acquire("a", now=at(i * 0.4)))
    with sqlite3.connect(tmp_path / "rl.db") as conn:
        (grants,) = conn.execute("SELECT grants FROM windows WHERE account = 'a'").fetchone()
    # At 3.6 s the window (2.6, 3.6] holds 2.8, 3.2 and 3.6: nothing older is kept.
    assert grants.split() == [str(micros(at(s))) for s in (2.8, 3.2, 3.6)]
    limiter.close()


def test_sqlite_errors_are_backend_errors(tmp_path: Path) -> None:
    limiter = SQLiteRateLimiter(tmp_path / "rl.db")
    limiter.close()
    with pytest.raises(BackendError, match="rate limiter is closed"):
        limiter.acquire("a")
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not a database file" * 100)
    with pytest.raises(BackendError, match="not-a-db"):
        SQLiteRateLimiter(bad)
    with pytest.raises(ValueError, match="messages"):
        SQLiteRateLimiter(tmp_path / "x.db", messages=0)


def test_sqlite_threads_sharing_one_limiter_stay_within_the_limit(tmp_path: Path) -> None:
    limiter = SQLiteRateLimiter(tmp_path / "rl.db", messages=4, per_seconds=PER)
    results: list[Grant] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(5):
            grant = limiter.acquire("shared", now=at(1))
            with lock:
                results.append(grant)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(g.granted for g in results) == 4
    limiter.close()


# --- delivery quotas --------------------------------------------------------------------


def test_a_quota_counts_to_its_limit_per_key_and_period(make_limiter: MakeLimiter) -> None:
    first, second = make_limiter(), make_limiter()  # two processes' views of one store
    tomorrow = at(86_400)
    taken = [
        (first, second)[n % 2].take_quota("tenant:a", "2026-03-01", 3, expires_at=tomorrow)
        for n in range(5)
    ]
    assert taken == [True, True, True, False, False]
    # Another period and another key count on their own.
    assert first.take_quota("tenant:a", "2026-03-02", 3, expires_at=tomorrow)
    assert second.take_quota("tenant:b", "2026-03-01", 1, expires_at=tomorrow)
    assert not first.take_quota("tenant:b", "2026-03-01", 1, expires_at=tomorrow)
    # A raised limit lets more through; rate-limit windows are untouched by quotas.
    assert first.take_quota("tenant:a", "2026-03-01", 4, expires_at=tomorrow)
    granted(first.acquire("tenant:a", now=at(0)))


def test_racing_writers_never_take_more_than_the_quota(make_limiter: MakeLimiter) -> None:
    limiters = [make_limiter() for _ in range(4)]
    results: list[bool] = []
    lock = threading.Lock()

    def take(limiter: RateLimiter) -> None:
        for _ in range(10):
            ok = limiter.take_quota("tenant:race", "2026-03-01", 17, expires_at=at(86_400))
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=take, args=(lim,)) for lim in limiters for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80 and sum(results) == 17


def test_sqlite_drops_expired_quota_counters(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    limiter = SQLiteRateLimiter(tmp_path / "rl.db", clock=clock)
    assert limiter.take_quota("tenant:a", "2026-03-01", 5, expires_at=at(3600))
    clock.advance(7200)
    granted(limiter.acquire("any"))  # an acquire prunes (at most hourly per process)
    import sqlite3

    with sqlite3.connect(tmp_path / "rl.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM quotas").fetchone() == (0,)
    limiter.close()


# --- DynamoDB specifics ---------------------------------------------------------------


@pytest.fixture
def aws() -> Iterator[Any]:
    """An emulated AWS account; yields a raw DynamoDB client to inspect the table."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("dynamodb", region_name=REGION)


def test_dynamodb_creates_an_on_demand_table_with_ttl(aws: Any) -> None:
    from huntaze_cli.storage.aws.dynamodb_ratelimit import TTL_ATTRIBUTE, DynamoDBRateLimiter

    limiter = DynamoDBRateLimiter(
        "fresh", messages=2, per_seconds=PER, region=REGION, create_tables=True
    )
    granted(limiter.acquire("acct", now=at(0)))
    granted(limiter.acquire("acct", now=at(0.5)))
    table = aws.describe_table(TableName="fresh")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = aws.describe_time_to_live(TableName="fresh")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}
    item = aws.get_item(
        TableName="fresh", Key={"pk": {"S": "RL#acct"}, "sk": {"S": "RL"}}, ConsistentRead=True
    )["Item"]
    assert [int(v["N"]) for v in item["grants"]["L"]] == [micros(at(0)), micros(at(0.5))]
    # The item expires a day after its latest grant has left the window.
    expires = int(item[TTL_ATTRIBUTE]["N"])
    assert expires == int((at(0.5) + timedelta(seconds=PER, days=1)).timestamp()) + 1
    limiter.close()


def test_dynamodb_missing_table_names_the_table_and_the_setting(aws: Any) -> None:
    from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter

    limiter = DynamoDBRateLimiter("absent-table", region=REGION)
    with pytest.raises(BackendError) as caught:
        limiter.acquire("acct")
    message = str(caught.value)
    assert "'absent-table'" in message
    assert "[rate_limit] create_tables" in message
    limiter.close()


def test_dynamodb_wrong_key_schema_is_reported(aws: Any) -> None:
    from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter

    aws.create_table(
        TableName="other",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for create in (False, True):
        limiter = DynamoDBRateLimiter("other", region=REGION, create_tables=create)
        with pytest.raises(BackendError, match="'other'.*not a huntaze table"):
            limiter.acquire("acct")
        limiter.close()


def test_dynamodb_unreachable_endpoint_fails_fast() -> None:
    import socket

    from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    for create in (False, True):
        limiter = DynamoDBRateLimiter(
            "rl", region=REGION, endpoint_url=endpoint, create_tables=create
        )
        with pytest.raises(BackendError) as caught:
            limiter.acquire("acct")
        assert_gives_up_quickly(limiter._db.client)
        assert "cannot reach DynamoDB" in str(caught.value)
        assert endpoint in str(caught.value)
        limiter.close()


def test_dynamodb_a_lost_race_decides_again_on_the_winners_item(aws: Any) -> None:
    """Two hosts read the same window with one slot left: exactly one gets it."""
    from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter

    host_a = DynamoDBRateLimiter("race", messages=2, per_seconds=PER, region=REGION)
    host_b = DynamoDBRateLimiter(
        "race", messages=2, per_seconds=PER, region=REGION, create_tables=True
    )
    granted(host_b.acquire("acct", now=at(0)))
    real_get = host_a._db.client.get_item
    b_grants: list[Grant] = []

    def get_then_lose_the_race(**params: Any) -> Any:
        found = real_get(**params)
        # Host B takes a slot between host A's read and host A's write.
        account = params["Key"]["pk"]["S"].removeprefix("RL#")
        b_grants.append(host_b.acquire(account, now=at(1)))
        return found

    host_a._db.client.get_item = get_then_lose_the_race
    puts: list[dict[str, Any]] = []
    real_put = host_a._db.client.put_item

    def counting_put(**params: Any) -> Any:
        puts.append(params)
        return real_put(**params)

    host_a._db.client.put_item = counting_put
    # Host A decided "granted" on the stale read; its write fails, and deciding again
    # on host B's item (returned by the failed write, no second read) it refuses.
    assert refused(host_a.acquire("acct", now=at(2))) == 58.0
    assert granted(b_grants[0]) == at(1)
    assert len(puts) == 1
    item = aws.get_item(TableName="race", Key={"pk": {"S": "RL#acct"}, "sk": {"S": "RL"}})
    assert [int(v["N"]) for v in item["Item"]["grants"]["L"]] == [micros(at(0)), micros(at(1))]
    # The same race on a new account: both try to create its item.
    b_grants.clear()
    assert granted(host_a.acquire("new", now=at(3))) == at(3)  # 2 slots: both fit
    assert granted(b_grants[0]) == at(1)
    assert len(puts) == 3
    host_a.close()
    host_b.close()


def test_dynamodb_endless_lost_races_answer_wait_briefly(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crowd winning every race delays a caller a little; it never fails it."""
    from huntaze_cli.storage.aws.dynamodb_ratelimit import DynamoDBRateLimiter

    limiter = DynamoDBRateLimiter("crowd", region=REGION, create_tables=True)
    attempts: list[int] = []

    def always_lose(*args: Any) -> tuple[bool, dict[str, Any] | None]:
        attempts.append(1)
        return False, None

    monkeypatch.setattr(limiter, "_put", always_lose)
    wait = refused(limiter.acquire("acct", now=at(0)))
    assert 0.05 <= wait <= 0.1
    assert len(attempts) > 1
    limiter.close()
