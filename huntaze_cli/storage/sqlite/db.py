"""Opening SQLite files the huntaze way, and named, append-only schema migrations.

Every SQLite store (ledger, queue, rate limiter, campaigns, provider state) holds its
file as a ``Database``: opened with ``connect``, its schema brought up to date with
``migrate``, and used through ``read`` and ``write`` (one ``BEGIN IMMEDIATE``
transaction), which take turns between threads and turn sqlite3 errors into ours.

A migration is a ``(name, step)`` pair, where ``step`` is an SQL script or a callable
taking the connection. Names are recorded in ``_migrations`` once applied, so the list
may only ever grow at the end: never rename, reorder or edit a migration that has
shipped; add a new one instead.

    LEDGER_MIGRATIONS = [
        ("ledger_001_tables", "CREATE TABLE events (...); CREATE INDEX ..."),
        ("ledger_002_backfill", backfill_function),
    ]
    db = Database(path, LEDGER_MIGRATIONS, what="cost ledger")
    with db.write("recording cost events") as conn:
        conn.executemany(...)
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from huntaze_cli.errors import BackendError
from huntaze_cli.storage.files import touch_private
from huntaze_cli.text import one_line

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0
CACHE_MB = 64
WAL_CHECKPOINT_PAGES = 10_000

MigrationStep = str | Callable[[sqlite3.Connection], None]
Migration = tuple[str, MigrationStep]

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)


def connect(
    path: Path,
    *,
    what: str = "SQLite database",
    busy_timeout_s: float = BUSY_TIMEOUT_S,
    cache_mb: int = CACHE_MB,
) -> sqlite3.Connection:
    """Open (creating if needed) a SQLite file that several processes can write at once.

    WAL lets readers run alongside one writer; the busy timeout makes a writer wait for
    another process's transaction instead of failing at once. ``isolation_level=None``
    leaves transactions to the caller (``BEGIN IMMEDIATE`` ... ``COMMIT``), since the
    sqlite3 module's implicit ones start too late to take the write lock up front.
    The connection may be used from several threads; callers serialise its use.
    """
    try:
        # 0600 from the start: SQLite gives the -wal and -shm files the same mode.
        touch_private(path)
    except IsADirectoryError:
        pass  # sqlite3 reports it below, with the advice for it
    except OSError as exc:
        raise BackendError(
            f"{path}: opening the {what} failed: cannot create directory {path.parent} "
            f"({exc.strerror}); point the path at a writable directory"
        ) from exc
    with sqlite_errors(path, f"opening the {what}"):
        conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            # Setting the journal mode is the first access to the file: a corrupt or
            # foreign file fails here, inside the wrapper, not at some later query.
            mode = _enable_wal(conn, busy_timeout_s)
            if str(mode).lower() != "wal":
                raise BackendError(
                    f"{path}: opening the {what} failed: SQLite cannot use WAL mode there "
                    f"(got {mode}); keep the file on a local file system, not a network share"
                )
            # In WAL mode NORMAL never corrupts the file; a power cut may lose the last
            # commits, which costs far less than an fsync per transaction.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Batched writes of random keys dirty many pages: a larger page cache and
            # rarer checkpoints (each copies the WAL back and fsyncs) keep the ledger
            # above 20k events/s. The cache is per connection and only grows when used.
            conn.execute(f"PRAGMA cache_size = {-cache_mb * 1024}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        except BaseException:
            conn.close()
            raise
    return conn


def _enable_wal(conn: sqlite3.Connection, timeout_s: float) -> str:
    """Switch the file to WAL, waiting out other processes doing the same.

    Switching a new file needs an exclusive lock and SQLite does not call the busy
    handler for it, so when several processes create the file at once the losers get
    "database is locked" at once; they retry here instead.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
            if not busy or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def open_migrated(
    path: Path, migrations: Sequence[Migration], *, what: str, cache_mb: int = CACHE_MB
) -> sqlite3.Connection:
    """``connect`` then ``migrate``: a store's file, open and with its schema up to date."""
    conn = connect(path, what=what, cache_mb=cache_mb)
    try:
        with sqlite_errors(path, f"preparing the {what}"):
            migrate(conn, migrations)
    except BaseException:
        conn.close()
        raise
    return conn


class Database:
    """One store's open SQLite file: its connection, and transactions on it.

    The connection is shared by the store's threads; a lock makes them take turns, so
    statements of different transactions never interleave on it. ``read`` runs in
    autocommit (each statement its own snapshot); ``write`` is one ``BEGIN IMMEDIATE``
    transaction, which takes the write lock before the first read, so a read-then-write
    never deadlocks against another process and two processes never pick the same row.
    """

    def __init__(
        self, path: Path, migrations: Sequence[Migration], *, what: str, cache_mb: int = CACHE_MB
    ) -> None:
        self.path = path
        self.what = what
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_migrated(
            path, migrations, what=what, cache_mb=cache_mb
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendError(f"{self.path}: the {self.what} is closed; open it again")
        return self._conn

    @contextmanager
    def read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection, for reads (or single-statement writes) outside a transaction."""
        with self._lock, sqlite_errors(self.path, doing):
            yield self._connection()

    @contextmanager
    def write(self, doing: str, *, commit: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed at the end, rolled back on any error.

        ``commit=False`` rolls it back even on success: a probe that proves the file is
        writable without changing it.
        """
        with (
            self._lock,
            sqlite_errors(self.path, doing),
            transaction(self._connection(), commit=commit) as conn,
        ):
            yield conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@contextmanager
def transaction(conn: sqlite3.Connection, *, commit: bool = True) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``conn``; rolled back on any error (or at the
    end when ``commit`` is false). Raises sqlite3.Error; ``Database.write`` wraps it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        if commit:
            conn.execute("COMMIT")
    finally:
        _rollback(conn)  # nothing left to undo after a COMMIT


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # The original error matters more; SQLite rolls back on its own anyway when
            # the connection closes.
            logger.debug("rollback failed", exc_info=True)


@contextmanager
def sqlite_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn any sqlite3 error raised inside into a BackendError naming the file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise BackendError(describe_error(exc, path, doing)) from exc


def describe_error(exc: sqlite3.Error, path: Path, doing: str) -> str:
    """One line: which file, what failed, and what the operator can do about it."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    detail = one_line(exc) or type(exc).__name__
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        advice = (
            "another process held the file locked too long; retry, and look for a stuck "
            "huntaze process if it keeps happening"
        )
    elif name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        advice = (
            "the file is damaged or not a SQLite database; restore it from a backup, or move "
            "it aside and huntaze starts a new one"
        )
    elif name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
        advice = "check that the file, its -wal/-shm files and its directory are writable"
    elif name.startswith("SQLITE_CANTOPEN"):
        advice = "check that the path is a file (not a directory) in a writable directory"
    elif name.startswith("SQLITE_FULL"):
        advice = "free some disk space"
    elif name.startswith("SQLITE_IOERR"):
        advice = "check the disk and the file system holding the file"
    elif isinstance(exc, sqlite3.DataError):
        advice = "a value is out of range for SQLite; nothing of this write was stored"
    elif isinstance(exc, sqlite3.ProgrammingError):
        advice = "the connection was closed or misused; reopen the store"
    else:
        advice = (
            "check the file; if it is damaged, restore it from a backup "
            "(sqlite3 FILE .recover saves what is readable)"
        )
    return f"{path}: {doing} failed: {detail}; {advice}"


def applied_migrations(conn: sqlite3.Connection) -> dict[str, str]:
    """Name -> applied_at of every migration recorded in the file."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
    ).fetchone()
    if not exists:
        return {}
    return dict(conn.execute("SELECT name, applied_at FROM _migrations").fetchall())


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply, in order and in one transaction, the migrations not yet recorded.

    Returns the names applied (empty when the schema was already current). Raises
    sqlite3.Error; wrap the call in ``sqlite_errors``. Safe when several processes open
    a new file at once: the check is repeated under the write lock.
    """
    names = [name for name, _ in migrations]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate migration names in {names}")
    # The common case, a current schema, needs only a read: opening a store must not
    # queue behind another process's write transaction.
    if set(names) <= applied_migrations(conn).keys():
        return []
    applied: list[str] = []
    with transaction(conn):
        conn.execute(_CREATE_TABLE)
        done = applied_migrations(conn)
        # An upgrade of these stores' data, not their first migration in a file another
        # store (with its own migrations) may have created.
        upgrading = any(name in done for name in names)
        for name, step in migrations:
            if name in done:
                continue
            if callable(step):
                if upgrading:
                    # An upgrade that rewrites stored data: on a large file it takes a
                    # while (a minute for a million events), so say why nothing moves.
                    where = conn.execute("PRAGMA database_list").fetchone()[2]
                    logger.warning(
                        "huntaze: upgrading %s (%s): it reads the stored data once, "
                        "which takes a while on a large file",
                        where or "the database",
                        name,
                    )
                step(conn)
            else:
                for statement in split_script(step):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).isoformat()),
            )
            applied.append(name)
    return applied


def split_script(script: str) -> list[str]:
    """The statements of an SQL script, split where SQLite itself sees them end.

    ``executescript`` would do this too, but it commits first, which would take the
    migration out of its transaction.
    """
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    # What is left ends in a line comment, or is a statement missing its semicolon.
    leftover = pending[:-1]
    if leftover.strip():
        if not sqlite3.complete_statement(leftover + "\n;"):
            raise ValueError(f"incomplete SQL statement in migration: {leftover.strip()[:60]!r}")
        statements.append(leftover.strip() + "\n;")
    return statements
