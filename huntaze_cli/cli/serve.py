"""`huntaze serve`: the HTTP daemon (the same core behind the HTTP API, plus the worker).

fastapi and uvicorn are imported inside the command only, so `huntaze --help` and every
other command never pay for them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from huntaze_cli.cli import state


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", help="Address to bind (default [server] host, 127.0.0.1).", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Port to bind (default [server] port, 8787; 0: any free port).",
            show_default=False,
        ),
    ] = None,
    no_worker: Annotated[
        bool,
        typer.Option("--no-worker", help="Do not deliver here; a `huntaze worker` delivers."),
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level", help="critical, error, warning, info (one line per request), debug."
        ),
    ] = "info",
) -> None:
    """Run the HTTP API and the delivery worker until SIGTERM or Ctrl-C.

    Routes: POST /api/v2/campaigns/hybrid, GET /api/v2/campaigns/status,
    /api/health/hybrid-orchestrator, /api/v2/costs/breakdown, /api/v2/costs/stats,
    /metrics; the OpenAPI document at /openapi.json and /docs. With [server] token_env
    set, /api and /metrics need `Authorization: Bearer <token>`; without a token it
    refuses to bind anything but a loopback address (exit 2). Logs are JSON lines on
    stderr, one per request. SIGTERM stops taking work, lets deliveries in flight finish
    and returns the rest to the queue, then exits 0; SIGHUP reloads the config file.

    Example: huntaze serve --port 8787 --log-level warning
    """
    from huntaze_cli.server.daemon import Daemon

    st = state(ctx)
    config = st.config()
    daemon = Daemon(
        config,
        host=host if host is not None else config.server.host,
        port=port if port is not None else config.server.port,
        worker=not no_worker,
        log_level=log_level.lower(),
        config_path=st.config_path,
    )
    daemon.prepare()
    daemon.run()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
