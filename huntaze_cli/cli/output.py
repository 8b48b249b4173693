"""The one output layer: a model becomes one JSON document on stdout, or rich for people.

stdout carries only the result; progress, warnings and errors go to stderr. Styles only
when the stream is a terminal and NO_COLOR is unset (NO_COLOR drops bold and italic too,
not just colour). rich is imported only when something is rendered for people, so
`--json` paths stay fast.

Every console is made with markup and emoji codes off: campaign names, accounts, models
and error texts come from users and the ledger, and ``[/]``, ``[link=..]`` or ``:x:`` in
them must print as written, never as a style, a hyperlink or a MarkupError. Our own
styles are applied with ``styled`` (rich Text objects), never with markup strings.
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
    from rich.text import Text

    from huntaze_cli.errors import HuntazeError


def print_json(result: BaseModel | dict[str, Any] | list[Any]) -> None:
    """Write exactly one JSON document (and a newline) to stdout."""
    sys.stdout.write(json.dumps(to_jsonable(result), ensure_ascii=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


def _console(*, stderr: bool, width: int | None = None) -> Console:
    import os

    from rich.console import Console

    plain = bool(os.environ.get("NO_COLOR"))
    return Console(
        stderr=stderr,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=False,
        width=width,
        # rich's own NO_COLOR handling drops colours but keeps bold/italic/underline.
        no_color=plain or None,
        color_system=None if plain else "auto",
    )


def stdout_console() -> Console:
    """Console for results; piped output gets a wide page instead of rich's 80 columns."""
    import os

    width = None
    if not sys.stdout.isatty():
        try:
            width = max(40, int(os.environ.get("COLUMNS", "160")))
        except ValueError:
            width = 160
    return _console(stderr=False, width=width)


def stderr_console() -> Console:
    return _console(stderr=True)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Text with our own styles: ``styled(("ok", "bold green"), " user data ")``.

    Plain strings stay literal, whatever brackets they hold.
    """
    from rich.text import Text

    return Text.assemble(*parts)


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
    whole: Iterable[str] = (),
    footer: Sequence[Any] | None = None,
) -> Table:
    """A rich table; columns named in ``right`` are right-aligned (numbers).

    Every cell, title and header is literal text (see the module docstring). Right
    aligned columns (figures, money) and those named in ``whole`` (ids people copy) are
    never wrapped or cut: on a narrow terminal the other text columns fold instead, so
    ``$12.345678`` is never shown as ``$12.3…``.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    aligned = set(right)
    kept = aligned | set(whole)
    out = Table(
        title=None if title is None else Text(title),
        show_footer=footer is not None,
        title_justify="left",
        # No vertical rules: nine more columns of room for figures at 80 columns.
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    rows = [["-" if value is None else str(value) for value in row] for row in rows]
    for index, name in enumerate(columns):
        figures = name in aligned
        keep = name in kept
        widest = max([len(name), *(len(row[index]) for row in rows)], default=len(name))
        if footer is not None:
            widest = max(widest, len(str(footer[index])))
        out.add_column(
            Text(name),
            justify="right" if figures else "left",
            footer=Text("" if footer is None else str(footer[index])),
            no_wrap=keep,
            min_width=widest if keep else min(len(name), 12),
            overflow="fold",
        )
    for row in rows:
        out.add_row(*(Text(cell) for cell in row))
    return out


def warn(message: str) -> None:
    """A one-line warning on stderr."""
    sys.stderr.write(f"warning: {message}\n")


def report_error(exc: HuntazeError) -> None:
    """The one-line error (and hint) a user sees, parameters named by their flags."""
    from huntaze_cli.cli.exit_codes import flag

    sys.stderr.write(f"error: {exc.render(flag)}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
