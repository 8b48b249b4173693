"""The HTTP API of `huntaze serve`: the app factory.

The routes live in ``server.routes`` (one module per area), each a thin layer over the
same application service as the matching command, answering the same JSON as that
command's ``--json``. Errors map to statuses in ``server.errors``; authentication, the
body limit and the access log live in ``server.asgi.Guard``; the shared orchestrator,
worker and backends in ``server.runtime.Runtime``; starting and stopping the process in
``server.daemon``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from huntaze_cli import __version__
from huntaze_cli.config import Config
from huntaze_cli.observability.metrics import Metrics
from huntaze_cli.server import errors
from huntaze_cli.server.asgi import PROTECTED, Guard
from huntaze_cli.server.auth import current_principal
from huntaze_cli.server.routes import routers, v1
from huntaze_cli.server.runtime import Runtime


def create_app(
    config: Config,
    *,
    worker: bool = True,
    config_path: Path | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The daemon's ASGI app; its lifespan starts and stops the worker and the core."""
    runtime = Runtime(config, config_path=config_path, worker=worker, metrics=metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="huntaze",
        version=__version__,
        summary="AI-written creator message campaigns: hybrid routing, delivery, exact costs.",
        lifespan=lifespan,
        # Every route resolves who is asking; none can opt out (server.auth).
        dependencies=[Depends(current_principal)],
    )
    app.state.runtime = runtime
    errors.install(app)
    app.add_middleware(
        Guard,
        tokens=lambda: runtime.tokens,
        max_body=lambda: runtime.config.server.max_body_bytes,
        direct={("POST", "/v1/chat/completions"): v1.direct},
    )
    for router in routers():
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the bearer scheme on the routes Guard protects."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "required on /api and /metrics when [server] token_env is set",
        }
    }
    for path, operations in schema["paths"].items():
        if path.startswith(PROTECTED):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema
