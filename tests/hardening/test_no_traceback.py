"""No input ends in a traceback: every command, hostile flags, files and environment.

The commands are enumerated from the Typer app, so a new command is covered the day it
is added. Each example runs one command in-process with a few of its options set to
hostile values (files with bad bytes or absurd numbers, paths that cannot be read or
written, far dates, markup, empty strings) under a hostile environment, and asserts an
exit code in {0, 1, 2, 3} with, on failure, a one-line `error:` (or click's usage error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from huntaze_cli.cli import app

EXAMPLES = 8  # per command: about 10 s for all of them on an idle 2-core machine
COMMANDS: list[tuple[tuple[str, ...], Any]] = []


def _walk(group: Any, prefix: tuple[str, ...] = ()) -> None:
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            _walk(command, (*prefix, name))
        else:
            COMMANDS.append(((*prefix, name), command))


_walk(typer.main.get_command(app))

HOSTILE_TEXT = [
    "",
    " ",
    "-1",
    "0",
    "99999999999999999999999",
    "1e308",
    "nan",
    "inf",
    "[/]",
    "[red]x[/red]",
    "9999-12-31",
    "0001-01-01",
    "2026-13-45",
    "2026-11-25T10:00:00",
    "../../etc/passwd",
    "/proc/nope/x",
    "/dev/null",
    "cmp_does_not_exist",
    "\u202e\ufeff",
    "é" * 300,
]
HOSTILE_ENV = {
    "HUNTAZE_THRESHOLDS__DAILY_USD": ["1e28", "NaN", "-5", "true"],
    "HUNTAZE_ROUTING__CONCURRENCY": ["true", "0", "1e9", "x"],
    "HUNTAZE_ROUTING__ORDER": ['["nosuch"]', "[", "{}"],
    "HUNTAZE_BOGUS__X": ["1"],
    "HUNTAZE_LEDGER__PATH": ["/proc/nope/ledger.db", "/dev/null"],
    "HUNTAZE_DELIVERY__OUTBOX_PATH": ["/proc/nope/outbox.jsonl"],
    "HUNTAZE_CONFIG": ["/proc/nope.toml"],
    "NO_COLOR": ["1"],
    "COLUMNS": ["5", "x", "100000"],
}


def _files(root: Path) -> list[str]:
    """Hostile input files, written once per test."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "latin1.toml": b'name = "caf\xe9"\naccount = "a"\nprompt = "p"\n',
        "bom.json": b"\xef\xbb\xbf"
        + json.dumps(
            {"name": "[/]", "account": "a", "prompt": "Hi {id}", "recipients": [{"id": "x"}]}
        ).encode(),
        "types.toml": b'name = "n"\naccount = "a"\nprompt = "p"\nmax_tokens = true\n'
        b'temperature = "0.5"\n[[recipients]]\nid = "f"\n',
        "fancy.toml": b'name = "n"\naccount = "a"\nprompt = "{0} {a.b} {x!r}"\n'
        b'[[recipients]]\nid = "f"\n',
        "csvref.toml": b'name = "n"\naccount = "a"\nprompt = "{name}"\n'
        b'recipients_file = "bad.csv"\n',
        "bad.csv": b'id,name\n"f1,unterminated\nf2,\xff\n',
        "events.jsonl": b'{"attempt_id": "a", "cost_usd": 1e999, "ts": "9999-12-31T00:00:00Z"}\n'
        b"[1, 2]\n{}\n\xff\n",
        "events.csv": b"attempt_id,ts,cost_usd\na,not-a-date,=1+1\n",
        "empty.toml": b"",
        "array.json": b"[]",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return [str(root / name) for name in files] + [str(root), "/proc/nope", "-"]


def _value(files: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE_TEXT), st.sampled_from(files), st.text(max_size=8))


@st.composite
def invocations(
    draw: Any, path: tuple[str, ...], command: Any, files: list[str]
) -> tuple[list[str], dict[str, str], str]:
    args = list(path)
    for param in command.params:
        if param.name == "help":
            continue
        if param.param_type_name == "argument":
            if param.required or draw(st.booleans()):
                pool = st.sampled_from(files) if param.name == "file" else _value(files)
                args.append(draw(pool))
            continue
        if not draw(st.booleans()):
            continue
        if getattr(param, "is_flag", False):
            args.append(param.opts[0])
        else:
            args += [param.opts[0], draw(_value(files))]
    # Commands that would otherwise run until stopped, or deliver at the real rate limit.
    if path == ("worker",):
        args.append("--once")
    if path == ("send-campaign",) and "--dry-run" not in args:
        args.append("--no-wait")
    if path == ("serve",):
        args += ["--host", "0.0.0.0"]  # no token: refused before it binds anything
    names = draw(st.lists(st.sampled_from(sorted(HOSTILE_ENV)), max_size=1))
    env = {name: draw(st.sampled_from(HOSTILE_ENV[name])) for name in names}
    stdin = draw(st.sampled_from(["", "{", '{"name": "x\\ud800"}', "\x00\xff"]))
    return args, env, stdin


@pytest.mark.slow
@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_no_command_ends_in_a_traceback(
    tmp_path: Path, path: tuple[str, ...], command: Any
) -> None:
    files = _files(tmp_path / "hostile")
    runner = CliRunner()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(invocation=invocations(path, command, files))
    def check(invocation: tuple[list[str], dict[str, str], str]) -> None:
        args, env, stdin = invocation
        result = runner.invoke(app, args, env=env, input=stdin, catch_exceptions=True)
        where = f"huntaze {' '.join(args)} with {env}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{where}: {type(result.exception).__name__}: {result.exception}")
        assert result.exit_code in (0, 1, 2, 3), (where, result.exit_code, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout, where
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) <= 1, (where, result.stderr)
        if result.exit_code == 2 and "Usage:" not in result.stderr:
            assert errors, (where, result.stderr)  # bad input is named on one line

    check()


def test_every_command_is_covered() -> None:
    assert {" ".join(path) for path, _ in COMMANDS} >= {
        "send-campaign", "status", "worker", "requeue", "health", "serve",
        "check-thresholds", "costs breakdown", "costs stats", "costs export",
        "costs import", "config init", "config path", "config show", "config validate",
    }  # fmt: skip
