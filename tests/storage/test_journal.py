"""The cost journal: what a killed process had begun or finished reaches the ledger."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from huntaze_cli.models import CostEvent
from huntaze_cli.storage import journal as journal_module
from huntaze_cli.storage.journal import CostJournal, recover
from huntaze_cli.storage.sqlite.ledger import SQLiteLedger


def event(attempt_id: str, **fields: object) -> CostEvent:
    data: dict[str, object] = {
        "attempt_id": attempt_id,
        "request_id": f"cmp-1:{attempt_id}",
        "ts": datetime.now(UTC),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "priced": False,
    }
    data.update(fields)
    return CostEvent.model_validate(data)


def die(journal: CostJournal) -> None:
    """What a kill -9 leaves: the files, with their locks released."""
    for segment in journal._segments:
        os.close(segment.fd)


def test_a_dead_process_s_attempts_are_recovered_once(tmp_path: Path) -> None:
    journal = CostJournal(tmp_path / "journal")
    for name in ("a", "b", "c"):
        journal.begin(event(name))
    done = event("a", input_tokens=1000, cost_nano=150_000, priced=True, response_model="m")
    journal.end(done)
    failed = event("b", status="error", error_kind="rate_limited")
    journal.end(failed)
    die(journal)
    with SQLiteLedger(tmp_path / "ledger.db") as ledger:
        assert recover(tmp_path / "journal", ledger).stored == 3
        stored = {e.attempt_id: e for e in ledger.events()}
        assert stored["a"] == done and stored["b"] == failed
        # c was in flight: maybe answered and billed, so it is in the ledger, unpriced.
        c = stored["c"]
        assert (c.status, c.error_kind, c.priced, c.cost_nano) == (
            "error",
            "interrupted",
            False,
            0,
        )
        assert list((tmp_path / "journal").iterdir()) == []
        assert recover(tmp_path / "journal", ledger).stored == 0


def test_a_live_process_s_journal_is_left_alone(tmp_path: Path) -> None:
    journal = CostJournal(tmp_path / "journal")
    journal.begin(event("a"))
    with SQLiteLedger(tmp_path / "ledger.db") as ledger:
        assert recover(tmp_path / "journal", ledger).stored == 0
        assert list(ledger.events()) == []
    journal.settled(["a"])
    journal.close()
    assert list((tmp_path / "journal").iterdir()) == []


def test_settled_segments_are_deleted_as_the_journal_rotates(
    tmp_path: Path, monkeypatch: object
) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 1)
    journal = CostJournal(tmp_path / "journal")
    journal.begin(event("a"))
    journal.end(event("a"))
    journal.settled([])  # the first segment is full: later attempts go to a new one
    journal.begin(event("b"))
    first, second = sorted((tmp_path / "journal").iterdir())
    journal.settled(["a"])  # everything begun in the first segment is stored
    left = sorted((tmp_path / "journal").iterdir())
    assert first not in left and second in left
    assert [i.attempt_id for i in journal.unsettled()] == ["b"]
    journal.settled(["b"])
    journal.close()
    assert list((tmp_path / "journal").iterdir()) == []
