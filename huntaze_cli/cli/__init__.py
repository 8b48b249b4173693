"""The `huntaze` command line: one Typer app per command group, joined here.

Every command parses its flags, calls one core function and renders the result. Errors
from the core (the HuntazeError tree) become a one-line message and an exit code here,
in ``_Group.invoke``, and nowhere else.
"""

from __future__ import annotations

import os
import sys

# pydantic looks for third-party plugins through importlib.metadata on first use, which
# costs ~35 ms of start-up; this application uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from huntaze_cli import __version__
from huntaze_cli.errors import HuntazeError
from huntaze_cli.output import report_error

if TYPE_CHECKING:
    from huntaze_cli.backends.campaign_store import CampaignStore
    from huntaze_cli.backends.ledger import Ledger
    from huntaze_cli.backends.queue import DeliveryQueue
    from huntaze_cli.backends.ratelimit import RateLimiter
    from huntaze_cli.config import Config
    from huntaze_cli.sinks import Sink


class _Group(TyperGroup):
    """The root group: maps the HuntazeError tree to exit codes, once for every command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HuntazeError as exc:
            report_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None


@dataclass
class State:
    """Global options, carried to every command on ``ctx.obj``; config loads on first use."""

    config_path: Path | None = None
    _config: Config | None = field(default=None, repr=False)
    _ledger: Ledger | None = field(default=None, repr=False)
    _open: dict[str, Any] = field(default_factory=dict, repr=False)

    def config(self) -> Config:
        if self._config is None:
            from huntaze_cli.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def ledger(self) -> Ledger:
        if self._ledger is None:
            from huntaze_cli.backends import open_ledger

            self._ledger = open_ledger(self.config())
        return self._ledger

    def _get(self, name: str, factory: Any) -> Any:
        if name not in self._open:
            self._open[name] = factory(self.config())
        return self._open[name]

    def store(self) -> CampaignStore:
        from huntaze_cli.backends.campaign_store import CampaignStore

        return self._get("store", lambda config: CampaignStore(config.campaigns_path))

    def queue(self) -> DeliveryQueue:
        from huntaze_cli.backends import open_queue

        return self._get("queue", open_queue)

    def limiter(self) -> RateLimiter:
        from huntaze_cli.backends import open_rate_limiter

        return self._get("limiter", open_rate_limiter)

    def sink(self) -> Sink:
        from huntaze_cli.sinks import open_sink

        return self._get("sink", open_sink)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        for resource in self._open.values():
            resource.close()
        self._open.clear()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # invoked without the root callback (tests of one group)
        obj = ctx.find_root().obj = State()
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
    ctx.obj = State(config_path=config)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from huntaze_cli.cli import campaigns, config_cmd, costs, health, serve, thresholds

    campaigns.register(app)
    health.register(app)
    serve.register(app)
    app.add_typer(costs.app, name="costs")
    thresholds.register(app)
    app.add_typer(config_cmd.app, name="config")


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="huntaze")
