"""Every command teaches through --help; completions are current; start-up stays lean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from huntaze_cli.cli import app
from tests.helpers import run

REPO = Path(__file__).resolve().parents[2]


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in getattr(group, "commands", {}).items():
        path = (*prefix, name)
        found.append(path)
        found.extend(_commands(command, path))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def test_command_tree_is_complete() -> None:
    for expected in [
        ("costs", "breakdown"),
        ("costs", "stats"),
        ("costs", "export"),
        ("costs", "import"),
        ("costs", "optimize"),
        ("costs", "roi"),
        ("experiments", "list"),
        ("experiments", "report"),
        ("campaigns", "outcomes", "import"),
        ("check-thresholds",),
        ("thresholds", "list"),
        ("thresholds", "set"),
        ("thresholds", "delete"),
        ("alerts", "list"),
        ("alerts", "ack"),
        ("alerts", "test"),
        ("config", "init"),
        ("config", "path"),
        ("config", "show"),
        ("config", "validate"),
    ]:
        assert expected in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0
    assert len(result.stdout.strip()) > 40
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    if not hasattr(command, "commands"):
        assert "Example" in (command.help or ""), f"{' '.join(path)} --help lacks an example"


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
