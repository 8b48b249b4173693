"""The one output layer: a model becomes one JSON document on stdout, or rich for people.

stdout carries only the result; progress, warnings and errors go to stderr. Colour only
when the stream is a terminal and NO_COLOR is unset (rich checks both). rich is imported
only when something is rendered for people, so `--json` paths stay fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from huntaze_cli.jsondoc import to_jsonable

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.console import Console
    from rich.table import Table

    from huntaze_cli.errors import HuntazeError


def print_json(result: BaseModel | dict[str, Any] | list[Any]) -> None:
    """Write exactly one JSON document (and a newline) to stdout."""
    sys.stdout.write(json.dumps(to_jsonable(result), ensure_ascii=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


def stdout_console() -> Console:
    """Console for results; piped output gets a wide page instead of rich's 80 columns."""
    import os

    from rich.console import Console

    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(highlight=False, soft_wrap=False, width=width)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def emit(
    result: BaseModel | dict[str, Any] | list[Any],
    *,
    as_json: bool,
    render: Callable[[Console], None],
) -> None:
    """Print ``result`` as JSON, or let ``render`` draw it for people."""
    if as_json:
        print_json(result)
    else:
        render(stdout_console())


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Iterable[str] = (),
    footer: Sequence[Any] | None = None,
) -> Table:
    """A rich table; columns named in ``right`` are right-aligned (numbers)."""
    from rich.table import Table

    aligned = set(right)
    out = Table(title=title, show_footer=footer is not None, title_justify="left")
    for index, name in enumerate(columns):
        out.add_column(
            name,
            justify="right" if name in aligned else "left",
            footer="" if footer is None else str(footer[index]),
        )
    for row in rows:
        out.add_row(*("-" if value is None else str(value) for value in row))
    return out


def warn(message: str) -> None:
    """A one-line warning on stderr."""
    sys.stderr.write(f"warning: {message}\n")


def report_error(exc: HuntazeError) -> None:
    """The one-line error (and hint) a user sees; never a traceback."""
    sys.stderr.write(f"error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
