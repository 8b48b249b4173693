"""Reading users' text files: UTF-8 with or without a BOM, errors that name file and line.

Campaign files, recipient files, the config and `costs import` files are all read
through here, so a stray Latin-1 byte is an exit-2 error naming ``file line N``
everywhere instead of a UnicodeDecodeError traceback, and a byte-order mark (which
Windows editors add) is accepted in every format alike.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from pathlib import Path

from huntaze_cli.errors import HuntazeError, InputError

BOM = codecs.BOM_UTF8


def _undecodable(source: str, line: int, column: int, byte: int) -> str:
    return (
        f"{source} line {line}: not UTF-8 text (byte 0x{byte:02x} at column {column}); "
        "save the file as UTF-8"
    )


def decode(data: bytes, source: str, *, error: type[HuntazeError] = InputError) -> str:
    """``data`` as text (a leading BOM dropped); ``error`` names the line of a bad byte."""
    data = data.removeprefix(BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start
        before = data[:offset]
        line = before.count(b"\n") + 1
        column = offset - (before.rfind(b"\n") + 1) + 1
        raise error(_undecodable(source, line, column, data[offset])) from None


def read_text(path: Path, source: str, *, error: type[HuntazeError] = InputError) -> str:
    """The whole file as text; OSError is left to the caller (it knows what to say)."""
    return decode(path.read_bytes(), source, error=error)


def lines(
    raw: Iterable[bytes], source: str, *, error: type[HuntazeError] = InputError
) -> Iterator[str]:
    """Decode a binary stream line by line (line endings kept, for csv); BOM dropped."""
    for number, line in enumerate(raw, start=1):
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(_undecodable(source, number, exc.start + 1, line[exc.start])) from None
