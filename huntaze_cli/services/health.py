"""`huntaze health`: is everything this process needs reachable, and who is serving?

healthy: the ledger works and every provider can serve; degraded: at least one provider
can serve but another cannot (missing key, open circuit, misconfigured, failed probe);
unhealthy: the ledger fails or no provider can serve. Provider circuit state is the one
the last running process (a `serve` daemon, a worker, on any host sharing the
``[campaigns]`` backend) wrote to the shared provider state.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from huntaze_cli.config import Config, ProviderConfig
from huntaze_cli.errors import HuntazeError
from huntaze_cli.models import CheckResult, HealthReport, ProviderHealth
from huntaze_cli.storage.ledger import Ledger
from huntaze_cli.storage.providers import ProviderState

PROBE_PROMPT = "Reply with the single word: ok"


def check_health(
    config: Config,
    open_ledger: Callable[[], Ledger],
    *,
    deep: bool = False,
    probe_timeout_s: float = 5.0,
) -> HealthReport:
    """Run every check; never raises for a failing component (it is reported)."""
    from huntaze_cli.llm.providers import effective_provider_configs
    from huntaze_cli.services.preflight import problems

    source = str(config.source) if config.source else "built-in defaults"
    found = problems(config)
    checks: dict[str, CheckResult] = {
        "config": CheckResult(
            status="degraded" if found else "ok",
            detail=f"{source}: {'; '.join(found)}" if found else source,
        ),
        "ledger": _check_ledger(config, open_ledger),
        "sink": _check_sink(config),
    }
    shared = _shared_state(config)
    configs = effective_provider_configs(config)
    providers = {
        name: _provider_health(name, cfg, shared.get(name)) for name, cfg in configs.items()
    }
    if deep:
        asyncio.run(_probe_all(config, providers, probe_timeout_s))
    serving = [name for name, health in providers.items() if health.status == "ok"]
    if checks["ledger"].status == "fail" or checks["sink"].status == "fail" or not serving:
        status = "unhealthy"
    elif len(serving) < len(providers) or any(c.status != "ok" for c in checks.values()):
        status = "degraded"
    else:
        status = "healthy"
    return HealthReport(
        status=status, checked_at=datetime.now(UTC), checks=checks, providers=providers
    )


def _check_ledger(config: Config, open_ledger: Callable[[], Ledger]) -> CheckResult:
    where = (
        f"dynamodb table {config.ledger.table}"
        if config.ledger.backend == "dynamodb"
        else str(config.ledger_path)
    )
    try:
        open_ledger().check()
    except HuntazeError as exc:
        return CheckResult(status="fail", detail=exc.message)
    return CheckResult(status="ok", detail=f"{where}: reachable and writable")


def _check_sink(config: Config) -> CheckResult:
    """The delivery sink can be built (its module and settings) and, if local, written."""
    from huntaze_cli.sinks import open_sink

    kind = config.delivery.sink
    try:
        sink = open_sink(config)
        try:
            if kind == "outbox":
                sink.check()  # a local file: cheap to prove writable
        finally:
            sink.close()
    except HuntazeError as exc:
        return CheckResult(status="fail", detail=f"{kind}: {exc.message}")
    except ImportError as exc:  # a dependency missing from the install
        return CheckResult(status="fail", detail=f"{kind}: cannot load: {exc}")
    return CheckResult(status="ok", detail=f"{kind}: ready")


def _shared_state(config: Config) -> dict[str, ProviderState]:
    from huntaze_cli.storage import open_provider_state

    if config.campaigns.backend == "sqlite" and not config.providers_path.exists():
        return {}  # nothing ran yet: do not create the file just to read it
    try:
        store = open_provider_state(config)
    except HuntazeError:
        return {}
    try:
        return store.load()
    except HuntazeError:
        return {}
    finally:
        store.close()


def _provider_health(name: str, cfg: ProviderConfig, state: ProviderState | None) -> ProviderHealth:
    problem = _config_problem(name, cfg)
    health = ProviderHealth(
        kind=cfg.kind,
        status="fail" if problem else "ok",
        configured=problem is None,
        detail=problem or "configured",
    )
    if state is not None:
        health.circuit = state.state
        health.misconfigured = state.misconfigured
        health.consecutive_failures = state.consecutive_failures
        health.last_error = state.last_error
        health.last_error_kind = state.last_error_kind
        health.last_error_at = state.last_error_at
        health.state_updated_at = state.updated_at
        if problem is None and (state.misconfigured or state.state == "open"):
            health.status = "fail"
            health.detail = (
                "misconfigured (401/403 from the provider)"
                if state.misconfigured
                else f"circuit open after {state.consecutive_failures} consecutive failures"
            )
    return health


def _config_problem(name: str, cfg: ProviderConfig) -> str | None:
    if cfg.kind == "simulated":
        return None
    if cfg.kind == "azure" and not cfg.endpoint:
        return f"providers.{name}.endpoint is not set"
    if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
        return f"environment variable {cfg.api_key_env} is not set"
    return None


async def _probe_all(
    config: Config, providers: dict[str, ProviderHealth], timeout_s: float
) -> None:
    from huntaze_cli.llm.providers import build_providers
    from huntaze_cli.llm.types import GenerationRequest, Message

    built = build_providers(config)

    async def probe(name: str) -> None:
        health = providers[name]
        if not health.configured:
            return
        request = GenerationRequest(
            request_id=f"health-{name}",
            model=config.routing.default_model,
            messages=[Message("user", PROBE_PROMPT)],
            max_tokens=1,
        )
        provider = built[name]
        started = time.perf_counter()
        try:
            # The first call pays for building the SDK client, imports inside the SDK and
            # its HTTP stack, and connecting: ~1 s against a 20 ms upstream. probe_ms is
            # the second, the round trip a generation sees on a warm connection.
            await asyncio.wait_for(provider.complete(request, timeout=timeout_s), timeout_s + 1)
            started = time.perf_counter()
            await asyncio.wait_for(provider.complete(request, timeout=timeout_s), timeout_s + 1)
        except Exception as exc:  # every failure is a finding, not a crash of health
            health.status = "fail"
            health.detail = f"live probe failed: {_describe(exc)}"
        else:
            health.status = "ok"
            health.detail = "live probe answered"
        finally:
            health.probe_ms = round((time.perf_counter() - started) * 1000, 1)
            await provider.aclose()

    # One at a time: the probes share an event loop, and one's first-call work would be
    # counted in another's round trip.
    for name in providers:
        await probe(name)


def _describe(exc: BaseException) -> str:
    from huntaze_cli.llm.types import ProviderFailure

    if isinstance(exc, ProviderFailure):
        return f"{exc.kind}: {exc.message}"
    if isinstance(exc, HuntazeError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__
