"""The README's two commands are the ones that work: the quickstart and CI's test command."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
FRESH_VENV = ["python3 -m venv .venv", ". .venv/bin/activate", "pip install -e ."]


def _sh_block_after(marker: str) -> str:
    """The one-line ```sh block that follows ``marker`` in the README."""
    start = README.index(marker)
    match = re.compile(r"```sh\n(.+?)\n```", re.S).search(README, start)
    assert match, f"no ```sh block after {marker!r}"
    (line,) = match.group(1).splitlines()
    return line


QUICKSTART = _sh_block_after("**Install and run the main job offline")
TEST_COMMAND = _sh_block_after("**Run the whole test suite**")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in [line.strip() for line in ci.splitlines()]
    assert TEST_COMMAND.endswith("python -m pytest")  # the whole suite, nothing deselected
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "test" in pyproject["project"]["optional-dependencies"]
    assert pyproject["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]


def test_the_quickstart_runs_offline_as_written() -> None:
    steps = QUICKSTART.split(" && ")
    assert steps[:3] == FRESH_VENV  # a fresh clone needs nothing else installed
    commands = steps[3:]
    assert [c.split()[:2] for c in commands] == [
        ["huntaze", "send-campaign"],
        ["huntaze", "status"],
        ["huntaze", "costs"],
    ]
    huntaze = Path(sys.executable).parent / "huntaze"  # the installed console script
    outputs = []
    for command in commands:
        argv = [str(huntaze), *shlex.split(command)[1:]]
        done = subprocess.run(
            argv,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}: {done.stderr}"
        outputs.append(done.stdout)
    # status shows the campaign delivered; costs stats shows what generating it cost
    assert re.search(r"Quickstart thank-you\W+creator_demo\W+completed", outputs[1])
    assert "simulated" in outputs[2]
