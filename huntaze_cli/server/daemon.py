"""Starting and stopping the daemon: one code path for `huntaze serve` and the tests.

``Daemon.prepare`` does everything that can fail for a reason the operator must fix —
the bind check (no non-loopback address without a token), opening the backends,
building the orchestrator, binding the socket — before uvicorn starts, so each failure
is one line and an exit code (2 for a refused bind or bad config, 1 for the rest).
``Daemon.run`` then runs uvicorn on that socket with the app's lifespan on; SIGTERM or
SIGINT make uvicorn stop accepting connections, finish the requests in flight (at most
``GRACE_S``), and then the lifespan stops the worker (deliveries in flight finish,
waiting ones return to the queue) and writes pending cost events.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from huntaze_cli.config import Config
from huntaze_cli.errors import HuntazeError, UsageError
from huntaze_cli.server.auth import Tokens, check_bind

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from huntaze_cli.server.runtime import Runtime

log = logging.getLogger("huntaze.server")

GRACE_S = 10.0  # longest wait for requests in flight after SIGTERM
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn (port 0: any free port)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UsageError(
            f"<host> {host}: cannot resolve: {exc.strerror or exc}", field="host", value=host
        ) from None
    family, kind, proto, _, address = infos[0]
    # proto must be IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on accepted
    # sockets that say so, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise HuntazeError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port, or stop the process using it",
        ) from None
    sock.set_inheritable(True)
    return sock


class Daemon:
    """One `huntaze serve` process: the app, its runtime and a uvicorn server."""

    def __init__(
        self,
        config: Config,
        *,
        host: str,
        port: int,
        worker: bool = True,
        log_level: str = "info",
        config_path: Path | None = None,
    ) -> None:
        from huntaze_cli.server.app import create_app
        from huntaze_cli.server.asgi import configure_logging

        if log_level not in LOG_LEVELS:
            raise UsageError(
                f"<log_level>: choose one of {', '.join(LOG_LEVELS)}",
                field="log_level",
                value=log_level,
            )
        configure_logging(log_level)
        self.host = host
        self.port = port
        self.log_level = log_level
        self.app: FastAPI = create_app(config, worker=worker, config_path=config_path)
        self.runtime: Runtime = self.app.state.runtime
        self.runtime.bound_host = host
        self.server: uvicorn.Server | None = None
        self.socket: socket.socket | None = None

    def prepare(self) -> int:
        """Check the bind, open the core, bind the socket; returns the bound port."""
        import uvicorn

        check_bind(self.host, Tokens.from_config(self.runtime.config))
        self.runtime.open()
        self.socket = bind_socket(self.host, self.port)
        self.port = int(self.socket.getsockname()[1])
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=self.host,
                port=self.port,
                lifespan="on",
                access_log=False,
                log_config=None,
                log_level=self.log_level,
                timeout_graceful_shutdown=int(GRACE_S),
                server_header=False,
            )
        )
        log.info(
            "listening",
            extra={
                "host": self.host,
                "port": self.port,
                "url": f"http://{_url_host(self.host)}:{self.port}",
                "worker": self.runtime.with_worker,
                "auth": self.runtime.tokens.configured,
            },
        )
        return self.port

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or ``stop``); returns once everything is closed."""
        if self.server is None:
            self.prepare()
        assert self.server is not None and self.socket is not None
        main = threading.current_thread() is threading.main_thread()
        previous = {}
        if main:
            # uvicorn re-raises the signal that stopped it to the handler found before it
            # started; a no-op there makes a graceful stop end in exit 0, not death by
            # SIGTERM (or a KeyboardInterrupt for SIGINT).
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, _stopped)
        try:
            self.server.run(sockets=[self.socket])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.socket.close()

    def stop(self) -> None:
        """Ask the server to stop gracefully (as SIGTERM does); from any thread."""
        if self.server is not None:
            self.server.should_exit = True


def _stopped(signum: int, frame: object) -> None:
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
