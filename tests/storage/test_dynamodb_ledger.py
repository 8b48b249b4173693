"""DynamoDB specifics of the cost ledger: table set-up, errors, transactions, processes.

The backend-agnostic behaviour is in test_ledger_contract.py; these tests cover what only
the DynamoDB ledger has. moto emulates DynamoDB in-process (``mock_aws``) and, for the
multi-process test, as a server on a loopback port.
"""

from __future__ import annotations

import multiprocessing
import random
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from huntaze_cli.config import load_config
from huntaze_cli.errors import BackendError
from huntaze_cli.models import CostEvent
from huntaze_cli.storage import open_ledger
from huntaze_cli.storage.aws.dynamodb_ledger import GSI_NAME, TTL_ATTRIBUTE, DynamoDBLedger
from huntaze_cli.storage.ledger import Counters, RecordResult, aggregate
from tests.helpers import assert_gives_up_quickly

REGION = "us-east-1"


def make_event(attempt_id: str, ts: datetime | None = None, **overrides: Any) -> CostEvent:
    data: dict[str, Any] = {
        "attempt_id": attempt_id,
        "request_id": f"req-{attempt_id}",
        "ts": ts or datetime.now(UTC) - timedelta(hours=1),
        "provider": "azure",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 40,
        "cost_nano": 31_415,
        "latency_ms": 250.0,
        "account": "creator_1",
        "campaign_id": "cmp-1",
    }
    data.update(overrides)
    return CostEvent.model_validate(data)


def totals(ledger: DynamoDBLedger) -> tuple[Counters, Counters]:
    """Sums of every daily and every slot rollup of the last few days."""
    now = datetime.now(UTC)
    daily, slots = Counters(), Counters()
    for row in ledger.daily(now.date() - timedelta(days=5), now.date() + timedelta(days=1)):
        daily.add(row.counters)
    for slot in ledger.slots(now - timedelta(days=5), now + timedelta(days=1)):
        slots.add(slot.counters)
    return daily, slots


def expected(events: list[CostEvent]) -> Counters:
    counters = Counters()
    for event in events:
        counters.add_event(event)
    return counters


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def aws() -> Iterator[Any]:
    """An emulated AWS account; yields a raw DynamoDB client to inspect the table."""
    with mock_aws():
        yield boto3.client("dynamodb", region_name=REGION)


# --- table set-up --------------------------------------------------------------------


def test_first_use_creates_the_table_with_index_and_ttl(aws: Any) -> None:
    with pytest.raises(ClientError):
        aws.describe_table(TableName="fresh")
    ledger = DynamoDBLedger("fresh", region=REGION, endpoint_url=None, create_tables=True)
    event = make_event("a-1")
    assert ledger.record([event]) == RecordResult(stored=1)

    table = aws.describe_table(TableName="fresh")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == [GSI_NAME]
    ttl = aws.describe_time_to_live(TableName="fresh")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}

    item = aws.get_item(TableName="fresh", Key={"pk": {"S": "EVENT#a-1"}, "sk": {"S": "E"}})
    stored = item["Item"]
    assert stored["cost_nano"] == {"N": "31415"}
    want_expiry = int(event.ts.timestamp()) + 30 * 86_400
    assert int(stored[TTL_ATTRIBUTE]["N"]) == want_expiry
    ledger.check()
    # A second ledger on the same table (another process, say) finds it ready.
    again = DynamoDBLedger("fresh", region=REGION, endpoint_url=None, create_tables=True)
    again.check()
    assert [e.attempt_id for e in again.events()] == ["a-1"]
    again.close()
    ledger.close()


def test_rollup_items_expire_after_the_rollup_retention(aws: Any) -> None:
    ledger = DynamoDBLedger(
        "ttl", region=REGION, endpoint_url=None, create_tables=True, rollup_retention_days=7
    )
    event = make_event("a-1")
    ledger.record([event])
    day = event.ts.date().isoformat()
    day_start = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())
    items = aws.query(
        TableName="ttl",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"DAY#{day}"}},
    )["Items"]
    assert len(items) == 1
    # Kept through the whole day that is rollup_retention_days old.
    assert int(items[0][TTL_ATTRIBUTE]["N"]) == day_start + 8 * 86_400


def test_missing_table_without_create_tables_names_the_table_and_the_fix(aws: Any) -> None:
    ledger = DynamoDBLedger("no-such-ledger", region=REGION, endpoint_url=None)
    now = datetime.now(UTC)
    calls = [
        ledger.check,
        lambda: ledger.record([make_event("a-1")]),
        lambda: ledger.daily(now.date() - timedelta(days=1), now.date()),
        lambda: ledger.slots(now - timedelta(hours=1), now),
        lambda: list(ledger.events()),
    ]
    for call in calls:
        with pytest.raises(BackendError) as caught:
            call()
        message = str(caught.value)
        assert "'no-such-ledger'" in message
        assert "create_tables = true" in message
        assert "\n" not in message
    # Nothing was created behind the user's back.
    assert aws.list_tables()["TableNames"] == []


def test_a_foreign_table_is_refused_with_a_clear_message(aws: Any) -> None:
    aws.create_table(
        TableName="someone-elses",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ledger = DynamoDBLedger("someone-elses", region=REGION, endpoint_url=None)
    with pytest.raises(BackendError, match="not a huntaze ledger"):
        ledger.check()


def test_unreachable_endpoint_fails_fast_with_the_endpoint_named() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ledger = DynamoDBLedger("ledger", region=REGION, endpoint_url=endpoint, create_tables=True)
    with pytest.raises(BackendError) as caught:
        ledger.record([make_event("a-1")])
    assert endpoint in str(caught.value)
    assert "cannot reach DynamoDB" in str(caught.value)
    with pytest.raises(BackendError):
        ledger.check()
    assert_gives_up_quickly(ledger._db.client)
    ledger.close()


def test_from_config_falls_back_to_the_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("HUNTAZE_LEDGER__BACKEND", "dynamodb")
    monkeypatch.setenv("HUNTAZE_LEDGER__TABLE", "from-env")
    ledger = open_ledger(load_config())
    assert isinstance(ledger, DynamoDBLedger)
    assert ledger.table == "from-env"
    assert ledger._db.client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert ledger._db.client.meta.region_name == "eu-west-3"
    ledger.close()


# --- transactions ----------------------------------------------------------------------


class TransactSpy:
    """Wraps the client's transact_write_items and remembers every call and outcome."""

    def __init__(self, ledger: DynamoDBLedger, *, fail_first_with: str | None = None) -> None:
        self.real = ledger._db.client.transact_write_items
        self.calls: list[tuple[list[dict[str, Any]], str]] = []
        self.fail_first_with = fail_first_with
        ledger._db.client.transact_write_items = self

    def __call__(self, **params: Any) -> Any:
        items = params["TransactItems"]
        if self.fail_first_with and not self.calls:
            self.calls.append((items, "injected"))
            reasons = [{"Code": "None"}] * len(items)
            reasons[-1] = {"Code": self.fail_first_with, "Message": "injected"}
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )
        try:
            answer = self.real(**params)
        except ClientError as exc:
            self.calls.append((items, exc.response["Error"]["Code"]))
            raise
        self.calls.append((items, "ok"))
        return answer

    def puts(self, n: int) -> list[str]:
        return [i["Put"]["Item"]["attempt_id"]["S"] for i in self.calls[n][0] if "Put" in i]


def test_a_transaction_with_duplicates_stores_only_the_new_events(aws: Any) -> None:
    ledger = DynamoDBLedger("mix", region=REGION, endpoint_url=None, create_tables=True)
    first = [make_event(f"m-{n}", cost_nano=1_000 + n) for n in range(6)]
    assert ledger.record(first) == RecordResult(stored=6)

    spy = TransactSpy(ledger)
    # A replay that disagrees with what is stored must not count either.
    replayed = [e.model_copy(update={"cost_nano": 10**12}) for e in first[2:5]]
    new = [make_event(f"m-{n}", cost_nano=1_000 + n, provider="openai") for n in range(6, 9)]
    result = ledger.record([new[0], *replayed, new[1], new[2], new[1]])
    assert result == RecordResult(stored=3, duplicates=4)

    # One cancelled transaction naming the three stored ids, then one with the new ones.
    assert [outcome for _, outcome in spy.calls] == ["TransactionCanceledException", "ok"]
    assert spy.puts(0) == ["m-6", "m-2", "m-3", "m-4", "m-7", "m-8"]
    assert spy.puts(1) == ["m-6", "m-7", "m-8"]

    distinct = first + new
    assert totals(ledger) == (expected(distinct), expected(distinct))
    assert sorted(e.attempt_id for e in ledger.events()) == sorted(e.attempt_id for e in distinct)
    assert {e.cost_nano for e in ledger.events()} == {e.cost_nano for e in distinct}


def test_large_batches_are_split_into_transactions_of_at_most_100_items(aws: Any) -> None:
    ledger = DynamoDBLedger("split", region=REGION, endpoint_url=None, create_tables=True)
    spy = TransactSpy(ledger)
    base = datetime.now(UTC) - timedelta(days=2)
    # Many distinct rollup keys per event, so rollup updates weigh on the item count.
    events = [
        make_event(
            f"b-{n}",
            base + timedelta(minutes=17 * n),
            provider=("azure", "openai", "other")[n % 3],
            account=f"creator_{n % 7}",
            cost_nano=n * 999_999_937,
        )
        for n in range(70)
    ]
    assert ledger.record(events) == RecordResult(stored=70)

    assert len(spy.calls) >= 2  # 70 Puts + 70 slot + ~30 daily updates
    for items, outcome in spy.calls:
        assert outcome == "ok"
        assert len(items) <= 100
        keys = [str(next(iter(i.values())).get("Key") or i["Put"]["Item"]["pk"]) for i in items]
        assert len(keys) == len(set(keys))  # an item appears once per transaction
    assert sum(len(spy.puts(n)) for n in range(len(spy.calls))) == 70
    assert totals(ledger) == (expected(events), expected(events))


def test_transaction_conflicts_are_retried(aws: Any) -> None:
    ledger = DynamoDBLedger("conflict", region=REGION, endpoint_url=None, create_tables=True)
    spy = TransactSpy(ledger, fail_first_with="TransactionConflict")
    events = [make_event(f"c-{n}") for n in range(3)]
    assert ledger.record(events) == RecordResult(stored=3)
    assert [outcome for _, outcome in spy.calls] == ["injected", "ok"]
    assert totals(ledger)[0] == expected(events)


def test_a_rejected_transaction_is_a_backend_error(aws: Any) -> None:
    ledger = DynamoDBLedger("rejected", region=REGION, endpoint_url=None, create_tables=True)
    TransactSpy(ledger, fail_first_with="ValidationError")
    with pytest.raises(BackendError, match=r"'rejected'.*ValidationError: injected"):
        ledger.record([make_event("v-1")])


def test_money_beyond_float_precision_stays_exact(aws: Any) -> None:
    ledger = DynamoDBLedger("exact", region=REGION, endpoint_url=None, create_tables=True)
    events = [make_event(f"x-{n}", cost_nano=123_456_789_012_345_678 + n) for n in range(3)]
    ledger.record(events)
    assert totals(ledger)[0].cost_nano == 3 * 123_456_789_012_345_678 + 3
    assert sorted(e.cost_nano for e in ledger.events()) == [e.cost_nano for e in events]


def test_key_separators_in_values_do_not_merge_rollups(aws: Any) -> None:
    ledger = DynamoDBLedger("escape", region=REGION, endpoint_url=None, create_tables=True)
    ts = datetime.now(UTC) - timedelta(hours=2)
    events = [
        make_event("k-1", ts, account="a\x1fb", campaign_id=None),
        make_event("k-2", ts, account="a", campaign_id="b"),
        make_event("k-3", ts, account="a%1Fb", campaign_id=None),
        make_event("k-4", ts, account="x" * 256, campaign_id="y" * 256),
    ]
    ledger.record(events)
    rows = ledger.daily(ts.date(), ts.date() + timedelta(days=1))
    got = {(r.account, r.campaign_id): r.counters.requests for r in rows}
    assert got == {
        ("a", "b"): 1,
        ("a%1Fb", None): 1,
        ("a\x1fb", None): 1,
        ("x" * 256, "y" * 256): 1,
    }


def test_ids_too_long_for_a_sort_key_still_stream_in_time_order(aws: Any) -> None:
    ledger = DynamoDBLedger("long", region=REGION, endpoint_url=None, create_tables=True)
    ts = datetime.now(UTC) - timedelta(hours=3)
    # 256 four-byte characters: 1 KiB, more than a sort key holds with the time prefix.
    events = [
        make_event("\U0001f600" * 255 + str(n), ts - timedelta(minutes=n), request_id="r")
        for n in range(3)
    ]
    assert ledger.record(events) == RecordResult(stored=3)
    assert ledger.record(events) == RecordResult(duplicates=3)
    assert list(ledger.events()) == events[::-1]
    assert list(ledger.events(since=ts - timedelta(minutes=1))) == events[1::-1]


def test_events_are_read_through_the_time_index_not_a_scan(aws: Any) -> None:
    ledger = DynamoDBLedger("noscan", region=REGION, endpoint_url=None, create_tables=True)
    now = datetime.now(UTC)
    events = [make_event(f"t-{n}", now - timedelta(hours=7 * n)) for n in range(12)]
    ledger.record(events)

    def no_scan(**_: Any) -> None:
        raise AssertionError("events() must not Scan the table")

    ledger._db.client.scan = no_scan
    got = [e.attempt_id for e in ledger.events(since=now - timedelta(days=2))]
    assert got == [f"t-{n}" for n in range(6, -1, -1)]


# --- several processes, one table ----------------------------------------------------


class SerialMotoServer:
    """moto's server on a loopback port, handling one request at a time.

    moto's TransactWriteItems snapshots the whole table and restores the snapshot when a
    transaction is cancelled; two requests handled at once would undo each other's
    writes, which real DynamoDB never does. Serialising requests gives each transaction
    the isolation DynamoDB provides while the clients still run fully in parallel.
    """

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serial_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            with lock:
                return list(app(environ, start_response))

        self.server = make_server(
            "127.0.0.1", 0, serial_app, threaded=True, request_handler=QuietHandler
        )
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SerialMotoServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def _writer(
    endpoint: str,
    table: str,
    batches: list[list[dict[str, Any]]],
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """One writer process: record its batches as soon as every writer is ready."""
    signalled = False
    try:
        ledger = DynamoDBLedger(table, region=REGION, endpoint_url=endpoint)
        events = [[CostEvent.from_record(r)[0] for r in batch] for batch in batches]
        ready.put(True)
        signalled = True
        go.wait(60)
        total = RecordResult()
        for batch in events:
            total.add(ledger.record(batch))
        ledger.close()
        results.put((total.stored, total.duplicates, total.expired, None))
    except BaseException as exc:  # reported to the parent, which fails the test
        if not signalled:
            ready.put(False)
        results.put((0, 0, 0, repr(exc)))


@pytest.mark.slow
def test_concurrent_writer_processes_store_each_attempt_once() -> None:
    distinct = 100
    writers = 4
    rng = random.Random(7)
    base = datetime.now(UTC) - timedelta(days=1, hours=3)
    events = [
        make_event(
            f"mp-{n}",
            base + timedelta(minutes=n, microseconds=n),
            provider=("azure", "openai")[n % 2],
            model=("gpt-4o-mini", "gpt-4o")[n % 3 == 0],
            account=f"creator_{n % 3}",
            cost_nano=rng.randrange(10**9),
            status="error" if n % 13 == 0 else "ok",
            latency_ms=rng.uniform(1, 5000),
        )
        for n in range(distinct)
    ]
    # Each attempt goes to two of the four writers, in a different order each, so most
    # transactions meet ids that another process is writing or has written.
    plans: list[list[list[dict[str, Any]]]] = []
    sent = 0
    for w in range(writers):
        mine = [
            e.to_record() for n, e in enumerate(events) if w in (n % writers, (n + 1) % writers)
        ]
        rng.shuffle(mine)
        sent += len(mine)
        plans.append([mine[i : i + 20] for i in range(0, len(mine), 20)])

    ctx = multiprocessing.get_context("spawn")
    with SerialMotoServer() as server:
        ledger = DynamoDBLedger(
            "shared", region=REGION, endpoint_url=server.endpoint, create_tables=True
        )
        ledger.check()
        ready, go, results = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_writer, args=(server.endpoint, "shared", plan, ready, go, results))
            for plan in plans
        ]
        for proc in procs:
            proc.start()
        try:
            for _ in procs:
                ready.get(timeout=60)
            go.set()
            outcomes = [results.get(timeout=120) for _ in procs]
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
        assert [error for *_, error in outcomes] == [None] * writers
        assert sum(stored for stored, *_ in outcomes) == distinct
        assert sum(dup for _, dup, *_ in outcomes) == sent - distinct
        assert sum(expired for *_, expired, _ in outcomes) == 0

        stored = list(ledger.events())
        assert sorted(e.attempt_id for e in stored) == sorted(e.attempt_id for e in events)
        assert sorted(stored, key=lambda e: e.attempt_id) == sorted(
            events, key=lambda e: e.attempt_id
        )
        assert [e.ts for e in stored] == sorted(e.ts for e in events)

        want_daily, want_slots = aggregate(events)
        since, until = base.date(), base.date() + timedelta(days=3)
        got_daily = {
            (
                r.day.isoformat(),
                r.provider,
                r.model,
                r.account or "",
                r.campaign_id or "",
                r.tenant,
                r.response_model or "",
            ): r.counters
            for r in ledger.daily(since, until)
        }
        assert got_daily == want_daily
        got_slots = {
            (s.slot, s.provider): (s.counters, s.latency)
            for s in ledger.slots(base - timedelta(hours=1), base + timedelta(days=2))
        }
        assert got_slots == {k: (v.counters, v.latency) for k, v in want_slots.items()}
        assert sum(c.cost_nano for c in got_daily.values()) == sum(e.cost_nano for e in events)
        ledger.close()
