"""Provider circuit state in providers.db (SQLite), shared by the processes of one host."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from huntaze_cli.storage.providers import ProviderState
from huntaze_cli.storage.sqlite.db import Database

if TYPE_CHECKING:
    from huntaze_cli.config import Config

_MIGRATIONS = [
    (
        "providers_001_state",
        """
        CREATE TABLE provider_state (
            provider TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            consecutive_failures INTEGER NOT NULL,
            misconfigured INTEGER NOT NULL,
            last_error TEXT,
            last_error_kind TEXT,
            last_error_at TEXT,
            last_ok_at TEXT,
            opened_at TEXT,
            updated_at TEXT NOT NULL,
            pid INTEGER NOT NULL
        )
        """,
    )
]


class SQLiteProviderStateStore:
    """The ``ProviderStateStore`` protocol on providers.db; writes are rare (changes only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(path, _MIGRATIONS, what="provider state")

    @classmethod
    def from_config(cls, config: Config) -> SQLiteProviderStateStore:
        return cls(config.providers_path)

    def save(self, state: ProviderState) -> None:
        # One statement: its own transaction, no BEGIN needed.
        with self._db.read("saving provider state") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO provider_state VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    state.provider,
                    state.state,
                    state.consecutive_failures,
                    int(state.misconfigured),
                    state.last_error,
                    state.last_error_kind,
                    _iso(state.last_error_at),
                    _iso(state.last_ok_at),
                    _iso(state.opened_at),
                    _iso(state.updated_at),
                    state.pid,
                ),
            )

    def load(self) -> dict[str, ProviderState]:
        with self._db.read("reading provider state") as conn:
            rows = conn.execute("SELECT * FROM provider_state").fetchall()
        return {
            row[0]: ProviderState(
                provider=row[0],
                state=row[1],
                consecutive_failures=row[2],
                misconfigured=bool(row[3]),
                last_error=row[4],
                last_error_kind=row[5],
                last_error_at=_parse(row[6]),
                last_ok_at=_parse(row[7]),
                opened_at=_parse(row[8]),
                updated_at=_parse(row[9]) or datetime.now(UTC),
                pid=row[10],
            )
            for row in rows
        }

    def close(self) -> None:
        self._db.close()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
