"""The outbox sink: each idempotency key written once, by threads, processes and restarts."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import threading
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.errors import DeliveryError
from huntaze_cli.sinks import PAYLOAD_FIELDS, PermanentDelivery
from huntaze_cli.sinks.outbox import OutboxSink


def payload(n: int, *, campaign: str = "cmp-1", text: str | None = None) -> dict[str, Any]:
    return {
        "idempotency_key": f"{campaign}:fan-{n}",
        "campaign_id": campaign,
        "account": "creator_1",
        "recipient_id": f"fan-{n}",
        "text": f"Hi fan {n}, merci ✨" if text is None else text,
        "sent_at": "2025-03-01T12:00:00+01:00",
    }


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the outbox, each of which must be one JSON object."""
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "the outbox must end with a complete line"
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def assert_each_key_once(path: Path) -> list[str]:
    keys = [record["idempotency_key"] for record in read_lines(path)]
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    assert duplicates == []
    return keys


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "data" / "outbox.jsonl"


def test_line_holds_exactly_the_payload_fields(outbox: Path) -> None:
    sink = OutboxSink(outbox)
    message = payload(1, text='line one\nline "two" — ünïcode')
    message["extra"] = "not part of the contract"
    assert sink.deliver(message) is True
    sink.close()
    raw = outbox.read_bytes()
    assert raw.count(b"\n") == 1  # one line, even with a newline in the text
    assert "ünïcode".encode() in raw  # ensure_ascii=False
    (record,) = read_lines(outbox)
    assert list(record) == list(PAYLOAD_FIELDS)
    assert record == {name: message[name] for name in PAYLOAD_FIELDS}


def test_dedupe_within_one_process(outbox: Path) -> None:
    sink = OutboxSink(outbox)
    assert sink.deliver(payload(1)) is True
    assert sink.deliver(payload(2)) is True
    assert sink.deliver(payload(1)) is False
    assert sink.deliver(payload(1, text="same key, other text")) is False
    sink.close()
    assert assert_each_key_once(outbox) == ["cmp-1:fan-1", "cmp-1:fan-2"]


def test_dedupe_across_a_reopen(outbox: Path) -> None:
    first = OutboxSink(outbox)
    for n in range(5):
        first.deliver(payload(n))
    first.close()
    second = OutboxSink(outbox)
    assert len(second) == 5
    assert "cmp-1:fan-3" in second
    assert [second.deliver(payload(n)) for n in range(3, 8)] == [False, False, True, True, True]
    second.close()
    assert len(assert_each_key_once(outbox)) == 8


def test_sees_lines_other_writers_appended_after_it_loaded(outbox: Path) -> None:
    ours, theirs = OutboxSink(outbox), OutboxSink(outbox)
    assert ours.deliver(payload(1)) is True
    assert theirs.deliver(payload(2)) is True  # written after `ours` read the file
    assert ours.deliver(payload(2)) is False
    assert theirs.deliver(payload(1)) is False
    ours.close()
    theirs.close()
    assert len(assert_each_key_once(outbox)) == 2


def test_threads_sharing_one_sink_write_each_key_once(outbox: Path) -> None:
    sink = OutboxSink(outbox)
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        keys = list(range(300))
        random.Random(seed).shuffle(keys)
        start.wait()
        for n in keys:
            fresh = sink.deliver(payload(n))
            with lock:
                results.append(fresh)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    assert sum(results) == 300
    assert len(assert_each_key_once(outbox)) == 300


def _deliver_in_process(
    path: str, keys: list[int], start: Any, results: Any, worker: int, fsync: bool
) -> None:
    """Child process body: deliver ``keys`` once everyone is ready; report the fresh ones."""
    sink = OutboxSink(path, fsync=fsync)
    start.wait()
    fresh = [n for n in keys if sink.deliver(payload(n))]
    sink.close()
    results.put((worker, fresh))


@pytest.mark.slow
@pytest.mark.parametrize("fsync", [False, True], ids=["flush", "fsync"])
def test_processes_appending_at_once_write_each_key_once(outbox: Path, fsync: bool) -> None:
    """4 spawned processes deliver overlapping key sets concurrently into one outbox."""
    per_worker = 120 if fsync else 600
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    results = context.Queue()
    # Worker w delivers keys [w*k/2, w*k/2 + k): every key but the outer ones by two
    # workers, in a shuffled order so they race on the same keys.
    key_sets = []
    for worker in range(4):
        keys = list(range(worker * per_worker // 2, worker * per_worker // 2 + per_worker))
        random.Random(worker).shuffle(keys)
        key_sets.append(keys)
    processes = [
        context.Process(
            target=_deliver_in_process,
            args=(str(outbox), keys, start, results, worker, fsync),
        )
        for worker, keys in enumerate(key_sets)
    ]
    for process in processes:
        process.start()
    reported = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    expected = {n for keys in key_sets for n in keys}
    written = assert_each_key_once(outbox)
    assert sorted(written) == sorted(f"cmp-1:fan-{n}" for n in expected)
    # True exactly once per key across all processes: the others saw a replay.
    fresh = [n for worker_fresh in reported.values() for n in worker_fresh]
    assert sorted(fresh) == sorted(expected)


def _deliver_after_fork(sink: OutboxSink, keys: list[int], start: Any) -> None:
    start.wait()
    for n in keys:
        sink.deliver(payload(n))


@pytest.mark.slow
def test_a_forked_child_gets_its_own_lock(outbox: Path) -> None:
    """Forked children inherit the open sink; they must still exclude one another."""
    sink = OutboxSink(outbox)
    sink.deliver(payload(0))  # opened before the fork
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    keys = list(range(1, 2000))
    children = [
        context.Process(target=_deliver_after_fork, args=(sink, keys, start)) for _ in range(3)
    ]
    for child in children:
        child.start()
    _deliver_after_fork(sink, keys, start)
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    sink.close()
    assert len(assert_each_key_once(outbox)) == 2000


def test_torn_last_line_is_dropped_and_rewritten(outbox: Path) -> None:
    sink = OutboxSink(outbox)
    sink.deliver(payload(1))
    sink.close()
    torn = json.dumps(payload(2), ensure_ascii=False, separators=(",", ":")).encode()[:40]
    with outbox.open("ab") as fh:
        fh.write(torn)  # what a writer killed mid-write leaves behind
    reopened = OutboxSink(outbox)
    assert len(reopened) == 1  # the torn line does not count as written
    assert "cmp-1:fan-2" not in reopened
    assert reopened.deliver(payload(2)) is True  # the queue redelivers it
    assert reopened.deliver(payload(3)) is True
    reopened.close()
    assert assert_each_key_once(outbox) == ["cmp-1:fan-1", "cmp-1:fan-2", "cmp-1:fan-3"]


def test_torn_line_left_by_another_writer_while_open(outbox: Path) -> None:
    sink = OutboxSink(outbox)
    sink.deliver(payload(1))
    with outbox.open("ab") as fh:
        fh.write(b'{"idempotency_key":"cmp-1:fan-9","campaign_id":"cm')
    assert sink.deliver(payload(2)) is True
    assert sink.deliver(payload(9)) is True
    sink.close()
    assert assert_each_key_once(outbox) == ["cmp-1:fan-1", "cmp-1:fan-2", "cmp-1:fan-9"]


def test_torn_file_of_one_partial_line(outbox: Path) -> None:
    outbox.parent.mkdir(parents=True)
    outbox.write_bytes(b'{"idempotency_key":"cmp-1:fan-1","campa')
    sink = OutboxSink(outbox)
    assert len(sink) == 0
    assert sink.deliver(payload(1)) is True
    sink.close()
    assert assert_each_key_once(outbox) == ["cmp-1:fan-1"]


def test_lines_written_by_others_count_whatever_their_layout(outbox: Path) -> None:
    outbox.parent.mkdir(parents=True)
    lines = [
        json.dumps(payload(1)),  # default separators
        json.dumps({"text": "key not first", "idempotency_key": "cmp-1:fan-2"}),
        json.dumps({"idempotency_key": 'cmp-1:fan-"3"'}),  # escaped quote in the key
        "",  # a blank line
        "not json at all",
        json.dumps(["no", "object"]),
    ]
    outbox.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sink = OutboxSink(outbox)
    assert len(sink) == 3
    assert sink.unreadable_lines == 2
    assert sink.deliver(payload(2)) is False
    quoted = payload(3)
    quoted["idempotency_key"] = 'cmp-1:fan-"3"'
    assert sink.deliver(quoted) is False
    assert sink.deliver(payload(4)) is True
    sink.close()


def test_rotated_outbox_continues_in_a_new_file(outbox: Path) -> None:
    sink = OutboxSink(outbox)
    sink.deliver(payload(1))
    rotated = outbox.with_suffix(".jsonl.1")
    outbox.rename(rotated)
    assert sink.deliver(payload(2)) is True
    assert sink.deliver(payload(1)) is False  # still known to this process
    sink.close()
    assert assert_each_key_once(rotated) == ["cmp-1:fan-1"]
    assert assert_each_key_once(outbox) == ["cmp-1:fan-2"]


def test_unencodable_payload_is_permanent(outbox: Path) -> None:
    sink = OutboxSink(outbox)
    broken = payload(1)
    del broken["sent_at"]
    with pytest.raises(PermanentDelivery, match="sent_at"):
        sink.deliver(broken)
    with pytest.raises(PermanentDelivery):
        sink.deliver(payload(2, text="lone surrogate \ud800"))
    sink.close()
    assert not outbox.exists() or outbox.read_bytes() == b""


def test_large_outbox_loads_streaming(outbox: Path) -> None:
    """100k lines load into the key set alone: memory stays far below the file size."""
    outbox.parent.mkdir(parents=True)
    text = "x" * 400
    with outbox.open("w", encoding="utf-8") as fh:
        for n in range(100_000):
            line = json.dumps(payload(n, text=text), ensure_ascii=False, separators=(",", ":"))
            fh.write(line + "\n")
    file_size = outbox.stat().st_size  # about 50 MB
    tracemalloc.start()
    try:
        sink = OutboxSink(outbox)
        loaded = len(sink)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded == 100_000
    # The keys themselves take about 9 MB; a whole-file read would be over 50 MB.
    assert peak < file_size / 3, (peak, file_size)
    assert sink.deliver(payload(99_999)) is False
    assert sink.deliver(payload(100_000)) is True
    sink.close()


def test_check_reports_an_unwritable_place(tmp_path: Path) -> None:
    good = OutboxSink(tmp_path / "new" / "dir" / "outbox.jsonl")
    good.check()
    assert not (tmp_path / "new" / "dir" / "outbox.jsonl").exists()  # check writes nothing
    assert os.listdir(tmp_path / "new" / "dir") == []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = OutboxSink(blocker / "outbox.jsonl")  # its "directory" is a file
    with pytest.raises(DeliveryError, match="not writable"):
        bad.check()
    with pytest.raises(DeliveryError, match="cannot open outbox"):
        bad.deliver(payload(1))
