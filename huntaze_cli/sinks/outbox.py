"""The outbox sink: one JSON line per delivered message in a local file, each key once.

The outbox is the default sink and the one that makes replays harmless: the queue
delivers at least once, and a message whose idempotency key is already in the file is
not written again (``deliver`` returns False). That holds for threads of one process,
for several worker processes appending to the same file at once, and across restarts.

How (all of it in ``OutboxSink.deliver``):

* Every process keeps the set of keys in the file and the byte offset it has read up to.
  A key already in the set returns False at once, without touching the file.
* Otherwise it takes an exclusive ``flock`` on the outbox itself, reads whatever other
  processes appended since its offset, and appends the line only if the key is still
  unknown. Reading and appending under one lock is what makes "each key once" hold
  across processes; a ``threading.Lock`` serialises the threads of one process, which
  share one descriptor (and so one flock).
* A last line without its newline can only be the remains of a writer that died
  mid-write (writers hold the lock for the whole line). The next writer truncates it
  under the lock, so the file stays one complete JSON document per line; that message
  was never acknowledged, so the queue delivers it again.
* If the file at the path is replaced (moved away by log rotation, or deleted) the sink
  continues in the new file at the path, keeping the keys it knows.

Durability: a line is written with one unbuffered ``write`` before the lock is released
and before ``deliver`` returns, so it survives the death of the process (kill -9) at
any point. It is not fsynced by default, the same choice as the SQLite queue
(``synchronous=NORMAL``): an fsync per message would serialise every writer behind the
disk, and a power cut can then lose the last lines written, exactly as it can lose the
queue's last acknowledgements. ``OutboxSink(path, fsync=True)`` syncs every line before
returning, for hosts where losing a line at a power cut is not acceptable.

Memory: opening streams the existing file in 1 MiB chunks and keeps only the keys (about
120 bytes per key: some 12 MB and 0.2 s to load for 100k lines). Keep the file on a
local file system: ``flock`` on network shares is emulated and not reliable everywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huntaze_cli.errors import DeliveryError
from huntaze_cli.sinks.base import RetryableDelivery, encode_payload
from huntaze_cli.storage.files import FILE_MODE, private_dir

if TYPE_CHECKING:
    from huntaze_cli.config import Config

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20
# How every line this sink writes starts (see encode_payload); lines that start
# differently are parsed in full.
_KEY_PREFIX = b'{"idempotency_key":"'
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_HINT = "point [delivery] outbox_path at a writable file on a local file system"
# fdatasync skips the inode timestamps an append does not need; macOS has only fsync.
_fdatasync = getattr(os, "fdatasync", os.fsync)


class OutboxSink:
    """Append-only JSON-lines outbox that writes each idempotency key at most once."""

    name = "outbox"

    def __init__(self, path: Path | str, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.unreadable_lines = 0  # complete lines seen that hold no key (not ours)
        self._keys: set[str] = set()
        self._offset = 0  # bytes of complete lines read into _keys
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._pid = 0  # process that opened _fd; a forked child reopens
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config) -> OutboxSink:
        """The outbox at ``[delivery] outbox_path`` (default outbox.jsonl in the data dir)."""
        return cls(config.outbox_path)

    # --- Sink protocol ---------------------------------------------------------------

    def deliver(self, payload: Mapping[str, Any]) -> bool:
        """Append the message unless its key is already in the outbox; False if it was."""
        key, body = encode_payload(payload)
        line = body + b"\n"
        with self._lock:
            self._ensure_open()
            if key in self._keys:
                return False
            self._lock_file()
            try:
                self._follow_path()
                self._read_new(locked=True)
                if key in self._keys:
                    return False
                self._append(line)
            finally:
                self._unlock_file()
            self._keys.add(key)
            return True

    def check(self) -> None:
        """Raise DeliveryError unless the outbox can be appended to (or created)."""
        try:
            if self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))
            else:
                private_dir(self.path.parent)
                # A real write probe: os.access() says yes to root on a read-only mount.
                fd, probe = tempfile.mkstemp(dir=self.path.parent, prefix=".huntaze-probe-")
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise DeliveryError(
                f"outbox {self.path} is not writable: {exc.strerror or exc}", hint=_HINT
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None

    # --- what the outbox already holds -----------------------------------------------

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is in the outbox as far as this process has read it."""
        with self._lock:
            self._ensure_open()
            return key in self._keys

    def __len__(self) -> int:
        """Keys known to be in the outbox (read so far or written by this process)."""
        with self._lock:
            self._ensure_open()
            return len(self._keys)

    # --- internals (called with self._lock held) --------------------------------------

    def _ensure_open(self) -> int:
        """The outbox descriptor, opened (and its keys loaded) on first use."""
        if self._fd is not None and self._pid == os.getpid():
            return self._fd
        if self._fd is not None:
            # A forked child shares the parent's open file description, and so its flock:
            # the two would not exclude each other. The child gets its own.
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._open()
        # Unlocked: reads complete lines only and leaves a torn tail to the next writer.
        self._read_new(locked=False)
        assert self._fd is not None
        return self._fd

    def _open(self) -> None:
        try:
            created = not self.path.exists()
            private_dir(self.path.parent)
            fd = os.open(self.path, _OPEN_FLAGS, FILE_MODE)  # fans' messages: owner only
        except OSError as exc:
            raise DeliveryError(
                f"cannot open outbox {self.path}: {exc.strerror or exc}", hint=_HINT
            ) from None
        if created and self.fsync:
            self._sync_dir()
        stat = os.fstat(fd)
        self._fd = fd
        self._ident = (stat.st_dev, stat.st_ino)
        self._pid = os.getpid()
        self._offset = 0

    def _lock_file(self) -> None:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise RetryableDelivery(
                f"outbox {self.path}: cannot lock the file: {exc.strerror or exc}"
            ) from None

    def _unlock_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _follow_path(self) -> None:
        """Move to the file now at ``self.path`` if ours was rotated away or deleted."""
        while True:
            try:
                stat = os.stat(self.path)
                if (stat.st_dev, stat.st_ino) == self._ident:
                    return
            except FileNotFoundError:
                pass
            log.warning("outbox %s was moved or deleted; continuing in a new file", self.path)
            self._unlock_file()
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            # The keys stay: this process still never writes them again.
            self._open()
            self._lock_file()

    def _read_new(self, *, locked: bool) -> None:
        """Add the keys of complete lines past ``_offset``; drop a torn tail if ``locked``."""
        fd = self._fd
        assert fd is not None
        size = os.fstat(fd).st_size
        if size < self._offset:
            # Truncated behind our back (a torn tail is never inside what we have read).
            log.warning("outbox %s shrank; reading it again from the start", self.path)
            self._offset = 0
        pos = self._offset
        tail = b""
        while pos < size:
            chunk = os.pread(fd, min(_READ_CHUNK, size - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            data = tail + chunk if tail else chunk
            end = data.rfind(b"\n")
            if end < 0:
                tail = data
                continue
            for line in data[:end].split(b"\n"):
                self._add_line(line)
            tail = data[end + 1 :]
            self._offset = pos - len(tail)
        if tail and locked:
            # Writers hold the lock for the whole line, so a partial line seen under the
            # lock is what a writer that died mid-write left: it was never acknowledged.
            log.warning(
                "outbox %s: dropping %d bytes of a line left unfinished by a crash",
                self.path,
                len(tail),
            )
            try:
                os.ftruncate(fd, self._offset)
            except OSError as exc:
                raise RetryableDelivery(
                    f"outbox {self.path}: cannot remove an unfinished line: {exc.strerror or exc}"
                ) from None

    def _add_line(self, line: bytes) -> None:
        if not line.strip():
            return
        if line.startswith(_KEY_PREFIX):
            # Fast path for our own lines: the key is the first string, and if it holds
            # no backslash its first quote is the closing one.
            end = line.find(b'"', len(_KEY_PREFIX))
            if end > 0:
                raw = line[len(_KEY_PREFIX) : end]
                if b"\\" not in raw:
                    with contextlib.suppress(UnicodeDecodeError):
                        self._keys.add(raw.decode("utf-8"))
                        return
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        key = record.get("idempotency_key") if isinstance(record, dict) else None
        if isinstance(key, str):
            self._keys.add(key)
            return
        self.unreadable_lines += 1
        log.warning("outbox %s: skipping a line with no idempotency_key", self.path)

    def _append(self, line: bytes) -> None:
        fd = self._fd
        assert fd is not None
        start = self._offset  # the end of the file: everything before it was just read
        view = memoryview(line)
        written = 0
        try:
            while written < len(line):
                written += os.write(fd, view[written:])
            if self.fsync:
                _fdatasync(fd)
        except OSError as exc:
            # Leave no partial line behind (a full disk can cut a write short).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise RetryableDelivery(
                f"outbox {self.path}: write failed: {exc.strerror or exc}"
            ) from None
        self._offset = start + len(line)

    def _sync_dir(self) -> None:
        # A new file's directory entry is only durable once the directory is synced.
        try:
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
