"""Every command teaches through --help; completions are current; start-up stays lean."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from huntaze_cli.cli import app
from tests.helpers import run

REPO = Path(__file__).resolve().parents[2]


def _leaves(group: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every runnable command under ``group``, by its path (``("costs", "stats")``)."""
    found: dict[tuple[str, ...], Any] = {}
    for name, command in getattr(group, "commands", {}).items():
        path = (*prefix, name)
        if hasattr(command, "commands"):  # a group
            found.update(_leaves(command, path))
        else:
            found[path] = command
    return found


# Enumerated from the Typer app itself, so a new command is checked without being listed.
COMMANDS = _leaves(typer.main.get_command(app))

# Commands whose output is not a report, so they have no --json; each needs its reason.
NO_JSON = {
    ("serve",): "runs the HTTP daemon until stopped; it reports over HTTP",
    ("costs", "export"): "its output is the raw events themselves (JSONL or CSV)",
}

# The last paragraph of a command's help: "Example: ..." or "Example (crontab): ...".
EXAMPLE = re.compile(r"^Example( \([^)]+\))?: \S")


def test_the_tree_reaches_every_group() -> None:
    # Groups nest (campaigns outcomes import): the walk must reach their leaves too.
    assert ("costs", "breakdown") in COMMANDS and ("send-campaign",) in COMMANDS
    assert ("campaigns", "outcomes", "import") in COMMANDS
    assert set(NO_JSON) <= set(COMMANDS), "NO_JSON names a command that does not exist"


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_has_help_ending_with_an_example(path: tuple[str, ...]) -> None:
    help_text = inspect.cleandoc(COMMANDS[path].help or "")
    last = help_text.split("\n\n")[-1]
    assert EXAMPLE.match(last), f"{' '.join(path)}: help must end with an Example: paragraph"
    runs_it = re.search(r"\bhuntaze\b.*\b" + r"\s+".join(map(re.escape, path)) + r"\b", last)
    assert runs_it, f"{' '.join(path)}: the example must run this command"
    result = run(*path, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout  # Typer renders it, not only the docstring


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_reporting_command_has_json(path: tuple[str, ...]) -> None:
    options = {opt for param in COMMANDS[path].params for opt in param.opts}
    if path in NO_JSON:
        assert "--json" not in options, f"{' '.join(path)} has --json now: drop it from NO_JSON"
    else:
        assert "--json" in options, f"{' '.join(path)} reports something but has no --json"


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("huntaze ")


def test_unknown_option_is_usage_error() -> None:
    assert run("costs", "breakdown", "--bogus").exit_code == 2


def test_completion_scripts_are_current() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from update_completions import scripts
    finally:
        sys.path.pop(0)
    for name, text in scripts().items():
        assert (REPO / "completions" / name).read_text(encoding="utf-8") == text, (
            "run: python scripts/update_completions.py"
        )


def test_bash_completion_completes_commands_and_options() -> None:
    env = {**os.environ, "_HUNTAZE_COMPLETE": "complete_bash"}
    words = subprocess.run(
        [sys.executable, "-m", "huntaze_cli"],
        env={**env, "COMP_WORDS": "huntaze co", "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"costs", "config"} <= set(words)
    options = subprocess.run(
        [sys.executable, "-m", "huntaze_cli"],
        env={**env, "COMP_WORDS": "huntaze costs breakdown --", "COMP_CWORD": "3"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"--by", "--since", "--json", "--csv"} <= set(options)


PROBE = """
import sys
from huntaze_cli.cli import main
sys.argv = ["huntaze", *ARGS]
try:
    main()
except SystemExit:
    pass
heavy = ("openai", "boto3", "botocore", "genai_prices")
sys.stderr.write("\\nMODULES " + repr(sorted(m for m in heavy if m in sys.modules)))
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["costs", "stats", "--json"], ["costs", "breakdown", "--json"]]
)
def test_no_openai_or_boto3_on_fast_paths(args: list[str]) -> None:
    code = PROBE.replace("ARGS", json.dumps(args))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "MODULES []" in proc.stderr, proc.stderr
