"""Regenerate completions/ from the Typer app: python scripts/update_completions.py"""

from __future__ import annotations

from pathlib import Path

from typer._completion_shared import get_completion_script

ROOT = Path(__file__).resolve().parent.parent
SHELLS = {"bash": "huntaze.bash", "zsh": "_huntaze", "fish": "huntaze.fish"}


def scripts() -> dict[str, str]:
    return {
        name: get_completion_script(
            prog_name="huntaze", complete_var="_HUNTAZE_COMPLETE", shell=shell
        ).rstrip("\n")
        + "\n"
        for shell, name in SHELLS.items()
    }


if __name__ == "__main__":
    for name, text in scripts().items():
        (ROOT / "completions" / name).write_text(text, encoding="utf-8")
        print(f"wrote completions/{name}")
