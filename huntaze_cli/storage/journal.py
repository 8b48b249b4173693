"""A write-ahead journal of provider attempts, so a killed process never hides spend.

The ledger writer batches cost events in memory for up to ``interval_s`` (DESIGN.md:
>= 20,000 events/s needs batches); a kill -9 in that window would lose attempts that
were paid for upstream. So each process appends to its own journal file, on the
orchestrator's path and with one ``write(2)`` each (no fsync: a killed process's writes
are already in the kernel; a power cut is the ledger's own risk too):

* an *intent* line before each provider call (attempt id, request, provider, model);
* the *event* line (the whole cost event, priced) as soon as the attempt ends.

Once the writer has stored a batch in the ledger, those attempts are settled. The file
is rotated every ``SEGMENT_BYTES`` and a segment is deleted when every attempt begun in
it is settled; a clean close deletes the rest. The file is held with ``flock`` while its
process lives, so ``recover`` (run when a process opens its ledger writer) takes only
the journals of dead processes: their events are recorded as they are (the ledger
ignores attempt ids it already holds), and an intent with no event becomes an attempt
of ``status: error``, ``error_kind: interrupted``, unpriced, with no usage: the call may
have been answered and billed, and the ledger says so instead of nothing.

Journals live in ``<data dir>/journal`` of the host that made the calls, whatever the
ledger backend: a crashed process is recovered by the next huntaze process there.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import Ledger, RecordResult

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 8 * 1024 * 1024
INTERRUPTED = "interrupted"
_SUFFIX = ".jsonl"


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int
    size: int = 0
    open_ids: set[str] = field(default_factory=set)  # begun here, not yet settled


class CostJournal:
    """One process's journal: ``begin`` before a call, ``end`` after, ``settled`` once stored
    (or once known never to have called: a provider that could not be used at all).

    Not thread-safe: the orchestrator calls it from its event loop only.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stem = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._number = 0
        self._segments: list[_Segment] = []
        self._segment_of: dict[str, _Segment] = {}
        self._intents: dict[str, CostEvent] = {}  # begun and not yet settled
        self._open_segment()

    def _open_segment(self) -> None:
        self._number += 1
        path = self.directory / f"{self._stem}-{self._number:05d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # Held while this process lives: recover() skips files whose lock it cannot take.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._segments.append(_Segment(path, fd))

    def begin(self, intent: CostEvent) -> None:
        """Note an attempt about to be made (``intent`` holds its ids, provider and model)."""
        segment = self._segments[-1]
        self._write(segment, b'{"intent":' + intent.model_dump_json().encode() + b"}\n")
        segment.open_ids.add(intent.attempt_id)
        self._segment_of[intent.attempt_id] = segment
        self._intents[intent.attempt_id] = intent

    def end(self, event: CostEvent) -> None:
        """Note the finished, priced attempt (the cost event the ledger will get)."""
        self._write(self._segments[-1], b'{"event":' + event.model_dump_json().encode() + b"}\n")

    def settled(self, attempt_ids: Iterable[str]) -> None:
        """These attempts are stored in the ledger: segments holding nothing else go."""
        for attempt_id in attempt_ids:
            self._intents.pop(attempt_id, None)
            segment = self._segment_of.pop(attempt_id, None)
            if segment is not None:
                segment.open_ids.discard(attempt_id)
        current = self._segments[-1]
        if current.size >= SEGMENT_BYTES:
            self._open_segment()
        for segment in self._segments[:-1]:
            if not segment.open_ids:
                self._drop(segment)

    def unsettled(self) -> list[CostEvent]:
        """The intents of attempts begun and not yet stored."""
        return list(self._intents.values())

    def close(self) -> None:
        """Delete every segment: call it once everything begun is settled."""
        for segment in list(self._segments):
            self._drop(segment)

    def _write(self, segment: _Segment, line: bytes) -> None:
        os.write(segment.fd, line)
        segment.size += len(line)

    def _drop(self, segment: _Segment) -> None:
        self._segments.remove(segment)
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)


def interrupted(intent: CostEvent) -> CostEvent:
    """The ledger's record of an attempt whose outcome a crash lost."""
    return intent.model_copy(
        update={
            "status": "error",
            "error_kind": INTERRUPTED,
            "priced": False,
            "cost_nano": 0,
            "input_tokens": 0,
            "cached_input_tokens": 0,
            "output_tokens": 0,
        }
    )


def recover(directory: Path, ledger: Ledger) -> RecordResult:
    """Record what dead processes' journals hold, then delete those journals.

    Journals still locked by a live process are left alone. Safe to run from several
    processes at once: each file is taken under its lock, and recording is idempotent.
    """
    total = RecordResult()
    if not directory.is_dir():
        return total
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # recovered by another process meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            if not path.exists():
                continue
            with open(fd, "rb", closefd=False) as fh:
                events = _journal_events(fh.read(), path)
            if events:
                total.add(ledger.record(events))
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    if total.stored:
        logger.warning(
            "recovered %d cost events from the journals of huntaze processes that died",
            total.stored,
        )
    return total


def _journal_events(data: bytes, path: Path) -> list[CostEvent]:
    intents: dict[str, CostEvent] = {}
    events: dict[str, CostEvent] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            entry = json.loads(line)
            if "event" in entry:
                event = CostEvent.model_validate(entry["event"])
                events[event.attempt_id] = event
            else:
                intent = CostEvent.model_validate(entry["intent"])
                intents[intent.attempt_id] = intent
        except (ValueError, KeyError, TypeError):
            # The last line of a killed process may be cut short; nothing else is.
            logger.warning("%s: line %d unreadable, skipped", path, number)
    lost = [interrupted(i) for attempt_id, i in intents.items() if attempt_id not in events]
    return [*events.values(), *lost]
