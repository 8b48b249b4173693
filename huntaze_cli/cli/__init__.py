"""The `huntaze` command line: one Typer app per command group, joined here.

Every command parses its flags, calls one application service (``huntaze_cli.services``)
and renders the result. Errors from the core (the HuntazeError tree) become a one-line
message here, in ``_Group.invoke``; their exit codes, and those of outcomes (health,
thresholds, campaign results), come from ``cli.exit_codes``.
"""

from __future__ import annotations

import os
import sys

# pydantic looks for third-party plugins through importlib.metadata on first use, which
# costs ~35 ms of start-up; this application uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from huntaze_cli import __version__
from huntaze_cli.cli import exit_codes
from huntaze_cli.cli.output import report_error
from huntaze_cli.errors import HuntazeError
from huntaze_cli.services import Services


class _Group(TyperGroup):
    """The root group: reports the HuntazeError tree once for every command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HuntazeError as exc:
            report_error(exc)
            raise typer.Exit(exit_codes.for_error(exc)) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(exit_codes.INTERRUPTED) from None


def state(ctx: typer.Context) -> Services:
    obj = ctx.find_root().obj
    if not isinstance(obj, Services):  # invoked without the root callback (tests of one group)
        obj = ctx.find_root().obj = Services()
    return obj


app = typer.Typer(
    cls=_Group,
    name="huntaze",
    help=(
        "Operate AI-written creator message campaigns: hybrid Azure OpenAI/OpenAI routing, "
        "rate-limited delivery and an exact cost ledger."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"huntaze {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="HUNTAZE_CONFIG",
            help="Config file (default: config.toml in the user config dir).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Operate AI-written creator message campaigns.

    Example: huntaze costs stats --json | jq .today
    """
    ctx.obj = Services(config_path=config)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from huntaze_cli.cli import (
        alerts,
        budgets,
        campaigns,
        config_cmd,
        costs,
        health,
        invoices,
        optimization,
        reports,
        serve,
        thresholds,
    )

    campaigns.register(app)
    health.register(app)
    serve.register(app)
    optimization.register(app, costs.app)
    reports.register(costs.app)
    invoices.register(costs.app)
    app.add_typer(costs.app, name="costs")
    thresholds.register(app)
    alerts.register(app)
    budgets.register(app)
    app.add_typer(config_cmd.app, name="config")


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="huntaze")
