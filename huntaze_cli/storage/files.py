"""Files that hold fans' messages, spend and campaign state: readable by their owner only.

The data dir is created 0700 and every file huntaze creates in it (SQLite databases and
their -wal/-shm files, the outbox, exports) 0600, whatever the umask: the outbox holds
the text of every message sent to a fan. Files and directories that already exist keep
the mode their owner gave them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) if needed; the directories created get 0700."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask


def touch_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (in a private directory)."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def open_private(path: Path) -> TextIO:
    """Open ``path`` for writing text (truncating); a new file is created 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")
