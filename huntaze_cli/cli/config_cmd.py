"""`huntaze config init|path|show|validate`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit
from huntaze_cli.errors import ConfigError

app = typer.Typer(help="Write, locate, show and validate the config file.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _target(ctx: typer.Context) -> tuple[Path, bool]:
    from huntaze_cli.config import resolve_config_path

    return resolve_config_path(state(ctx).config_path)


@app.command("init")
def init(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a valid, fully commented starter config (mode 0600).

    Refuses to overwrite an existing file unless --force is given.

    Example: huntaze config init && huntaze config validate
    """
    from huntaze_cli.config.template import render_example

    path, _ = _target(ctx)
    if path.exists() and not force:
        raise ConfigError(
            f"{path} already exists", hint="use --force to overwrite it, or edit it in place"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Create with 0600 from the start: the file may later hold secret-adjacent settings.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render_example())
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    emit(
        {"path": str(path), "written": True},
        as_json=as_json,
        render=lambda console: console.print(f"wrote {path}"),
    )


@app.command("path")
def path_cmd(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Print the path of the config file in use (whether or not it exists).

    Example: $EDITOR "$(huntaze config path)"
    """
    path, _ = _target(ctx)
    emit(
        {"path": str(path), "exists": path.exists()},
        as_json=as_json,
        render=lambda console: console.print(str(path), markup=False),
    )


@app.command("show")
def show(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show the effective config (defaults, file, environment), secrets masked.

    The TOML can be pasted back into a config file; comments say which variables named
    by *_env keys are set.

    Example: huntaze config show --json | jq .routing
    """
    from huntaze_cli.config import env_status, masked_dump

    config = state(ctx).config()
    data = masked_dump(config)

    def render(console: Any) -> None:
        import tomli_w

        source = config.source or "built-in defaults (no config file)"
        lines = [f"# effective config; file: {source}"]
        lines += [
            f"# {name}: {'set' if is_set else 'NOT SET'}"
            for name, is_set in sorted(env_status(config).items())
        ]
        # Plain text, never wrapped at the terminal width: it is meant to be pasted.
        sys.stdout.write("\n".join(lines) + "\n" + tomli_w.dumps(_drop_none(data)))

    emit(data, as_json=as_json, render=render)


@app.command("validate")
def validate(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Check the config file and HUNTAZE_* variables; exit 2 naming what is wrong.

    Beyond each key's own value it checks cross-references: providers named by
    [routing] order and weights and [flags] legacy_provider exist, the delivery sink has
    its settings, and every variable a *_env key relies on is set.

    Example: huntaze --config /etc/huntaze/config.toml config validate
    """
    from huntaze_cli.services.preflight import problems

    config = state(ctx).config()
    source = str(config.source) if config.source else None
    found = problems(config)
    if found:
        raise ConfigError(
            "invalid config: " + "; ".join(found),
            hint="fix these in the config file or the environment, then run this again",
        )
    emit(
        {"valid": True, "path": source, "providers": sorted(config.providers)},
        as_json=as_json,
        render=lambda console: console.print(
            f"ok: {source or 'built-in defaults (no config file)'}", markup=False
        ),
    )


def _drop_none(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_none(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_drop_none(v) for v in node]
    return node
