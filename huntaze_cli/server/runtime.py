"""The core objects one `huntaze serve` process shares, and their lifecycle.

``Runtime`` holds what the CLI commands build per run, built once: the config, the
storage backends (through the shared ``Services`` container), one ``Orchestrator`` with the app's
``Metrics``, the delivery worker (the same ``DeliveryWorker`` as `huntaze worker`) and the
background generation of POSTed campaigns (the same ``services.campaigns.generate`` as
`send-campaign`).

Two sets of backends, because the SQLite campaign store is one connection that serves
one caller at a time: ``loop`` belongs to the worker and the generations, which call it
in threads one call at a time (``campaigns.offload``), so the event loop never waits on
a store, queue or sink; ``http`` belongs to the request handlers, with ``store_lock``
serialising its store (``on_store``).

SIGHUP calls ``reload``: a new config (routing, flags, providers, pricing, thresholds)
is swapped in, with a new orchestrator for generations started after it; a config that
does not load or validate leaves everything as it was. The sections in
``RESTART_SECTIONS`` keep their start-up values in effect until a restart; above all
``[server]``, so a reload can never weaken authentication.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from huntaze_cli.config import Config, load_config
from huntaze_cli.errors import BudgetExceeded, HuntazeError
from huntaze_cli.jsondoc import dump_json
from huntaze_cli.observability.metrics import Metrics
from huntaze_cli.server.auth import Tokens
from huntaze_cli.services import Services, costs

if TYPE_CHECKING:
    from huntaze_cli.campaigns.worker import DeliveryWorker
    from huntaze_cli.llm.orchestrator import Orchestrator
    from huntaze_cli.llm.types import GenerationRequest, GenerationResult
    from huntaze_cli.storage.ledger import Ledger, RecordResult
    from huntaze_cli.storage.queue import Lease
    from huntaze_cli.storage.ratelimit import Grant, RateLimiter

log = logging.getLogger("huntaze.server")
T = TypeVar("T")

STATS_TTL_S = 1.0
WORKER_STOP_S = 20.0  # a webhook delivery in flight may take its timeout (10 s) to finish
WORKER_RESTART_S = 5.0
BILLING_EVERY_S = 3600.0  # how often serve looks for a closed month to invoice
# Sections whose backends are opened once at start: a change needs a restart.
RESTART_SECTIONS = ("ledger", "queue", "rate_limit", "delivery", "server")


class Runtime:
    """Everything a daemon shares between requests, the worker and generations."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        worker: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = metrics or Metrics()
        self.with_worker = worker
        # Read once at start, like [server]: a reload never changes who may call.
        self.tokens = Tokens()
        self.bound_host: str | None = None  # set by the daemon: a reload re-checks the bind
        self.http = Services.with_config(config, config_path=config_path)
        self.loop = Services.with_config(config, config_path=config_path)
        # Alert evaluation runs in its own thread with its own connections.
        self.checks = Services.with_config(config, config_path=config_path)
        # So does fitting the day's forecast ahead of the first request, and the monthly
        # billing run.
        self.forecasts = Services.with_config(config, config_path=config_path)
        self.billing = Services.with_config(config, config_path=config_path)
        self.store_lock = threading.Lock()
        self.metrics_lock = threading.Lock()
        self.stats = StatsCache(STATS_TTL_S)
        self.generator: Generator | None = None
        self.worker: DeliveryWorker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._orphan_task: asyncio.Task[None] | None = None
        self._alerts_task: asyncio.Task[None] | None = None
        self._forecast_task: asyncio.Task[None] | None = None
        self._billing_task: asyncio.Task[None] | None = None
        self._generations: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._opened = False

    # --- start and stop ----------------------------------------------------------------

    def open(self) -> None:
        """Open every backend and build the orchestrator; raises HuntazeError.

        Called before the server starts listening, so a bad config or an unreachable
        backend is a one-line error and an exit code, not a half-started daemon.
        """
        if self._opened:
            return
        self.tokens = Tokens.from_config(self.config)
        self.http.store()
        self.http.queue()
        self.http.ledger()
        self.loop.store()
        self.loop.queue()
        self.generator = Generator(self._build_orchestrator(self.config))
        if self.with_worker:
            from huntaze_cli.services import campaigns

            self.worker = campaigns.delivery_worker(
                self.loop,
                on_event=self._delivery_event,
                wrap_limiter=lambda limiter: cast(
                    "RateLimiter", CountingLimiter(limiter, self.metrics)
                ),
            )
        self._opened = True

    def _build_orchestrator(self, config: Config) -> Orchestrator:
        return self.loop.orchestrator(
            config,
            metrics=self.metrics,
            warn=lambda m: log.warning(m),
            wrap_ledger=lambda ledger: cast(
                "Ledger", CountingLedger(ledger, self.metrics, self.stats.invalidate)
            ),
        )

    async def start(self) -> None:
        """On the server's loop: start the worker and listen for SIGHUP."""
        self.open()
        self._stopping = asyncio.Event()
        if self.worker is not None:
            self._worker_task = asyncio.create_task(self._run_worker())
        self._orphan_task = asyncio.create_task(self._adopt_orphans())
        self._alerts_task = asyncio.create_task(self._evaluate_alerts())
        self._forecast_task = asyncio.create_task(
            costs.keep_forecast_warm(self.forecasts, self._stopping.is_set)
        )
        self._billing_task = asyncio.create_task(self._bill())
        _on_signal("SIGHUP", self.reload)
        log.info(
            "daemon started",
            extra={"worker": self.worker is not None, "auth": self.tokens.configured},
        )

    async def stop(self) -> None:
        """Stop taking work; in-flight deliveries finish or go back to the queue."""
        _on_signal("SIGHUP", None)
        self._stopping.set()
        if self._orphan_task is not None:
            self._orphan_task.cancel()
        if self._alerts_task is not None:
            # An evaluation in its thread finishes (its claims are finished or time out).
            self._alerts_task.cancel()
        if self._forecast_task is not None:
            self._forecast_task.cancel()  # a fit in its thread finishes on its own
        if self._billing_task is not None:
            self._billing_task.cancel()
        if self.worker is not None and self._worker_task is not None:
            self.worker.stop()
            try:
                await asyncio.wait_for(self._worker_task, WORKER_STOP_S)
            except TimeoutError:
                log.warning("delivery worker did not stop in time; its leases will expire")
        for task in list(self._generations.values()):
            task.cancel()  # what was generated is flushed to the queue; the rest stays pending
        await asyncio.gather(*self._generations.values(), return_exceptions=True)
        try:
            if self.generator is not None:
                await self.generator.aclose()  # writes the cost events still buffered
        except HuntazeError as exc:
            log.error("closing the orchestrator failed", extra={"error": exc.message})
        finally:
            self.loop.close()
            self.http.close()
            self.checks.close()
            self.forecasts.close()
            self.billing.close()
            self._opened = False
        log.info("daemon stopped")

    async def _run_worker(self) -> None:
        assert self.worker is not None
        while True:
            try:
                await self.worker.run()
                return
            except HuntazeError as exc:
                log.error(
                    "delivery worker failed; restarting it",
                    extra={"error": exc.message, "restart_in_s": WORKER_RESTART_S},
                )
            try:
                await asyncio.wait_for(self._stopping.wait(), WORKER_RESTART_S)
                return
            except TimeoutError:
                continue

    async def _adopt_orphans(self) -> None:
        """Finish campaigns whose generating process stopped (no live lease), now and
        every half lease: an interrupted send-campaign, a crashed daemon."""
        from huntaze_cli.campaigns.offload import off_loop

        store = self.loop.store()
        while not self._stopping.is_set():
            try:
                for campaign_id in await off_loop(store.orphaned, limit=10):
                    log.info(
                        "finishing an interrupted campaign", extra={"campaign_id": campaign_id}
                    )
                    self.schedule_generation(campaign_id)
            except HuntazeError as exc:
                log.error("looking for interrupted campaigns failed", extra={"error": exc.message})
            try:
                await asyncio.wait_for(
                    self._stopping.wait(), self.config.campaigns.generation_lease_s / 2
                )
            except TimeoutError:
                continue

    async def _evaluate_alerts(self) -> None:
        """Evaluate the alert rules every ``[alerts] evaluate_interval_s`` (0: never), so
        a daemon needs no cron; daemons on several hosts send each alert once (claims)."""
        from huntaze_cli.services.thresholds import check

        while not self._stopping.is_set():
            interval = self.config.alerts.evaluate_interval_s
            if interval > 0:
                try:
                    result = await asyncio.to_thread(check, self.checks, send_alerts=True)
                    for rule, error in result.alert_errors:
                        log.warning("alert not sent", extra={"rule": rule, "error": error})
                    if result.cloudwatch_error:
                        log.warning("cloudwatch", extra={"error": result.cloudwatch_error})
                except HuntazeError as exc:
                    log.error("evaluating alert rules failed", extra={"error": exc.message})
            try:  # a reload may turn the evaluation on: look again a minute later
                await asyncio.wait_for(self._stopping.wait(), interval if interval > 0 else 60)
            except TimeoutError:
                continue

    async def _bill(self) -> None:
        """Once the month has closed, write every tenant's invoice under the data dir and
        announce it (services.invoices.bill_closed_month: once across restarts and hosts);
        looked at on start and every ``BILLING_EVERY_S``."""
        from huntaze_cli.services.invoices import bill_closed_month

        while not self._stopping.is_set():
            if self.config.tenants:
                try:
                    run = await asyncio.to_thread(bill_closed_month, self.billing)
                    for path in run.written:
                        log.info("invoice written", extra={"path": path})
                    for error in run.errors:
                        log.warning("invoice not done", extra={"error": error})
                except HuntazeError as exc:
                    log.error("billing run failed", extra={"error": exc.message})
            try:
                await asyncio.wait_for(self._stopping.wait(), BILLING_EVERY_S)
            except TimeoutError:
                continue

    def _delivery_event(self, outcome: str, lease: Lease) -> None:
        self.metrics.deliveries.labels(outcome).inc()

    # --- services ----------------------------------------------------------------------

    async def on_store(self, call: Callable[[Services], T]) -> T:
        """Run ``call`` with the request handlers' services, off the loop, one at a time
        (the SQLite campaign store is one connection)."""

        def locked() -> T:
            with self.store_lock:
                return call(self.http)

        return await asyncio.to_thread(locked)

    # --- campaigns -----------------------------------------------------------------------

    def schedule_generation(self, campaign_id: str) -> None:
        """Generate a campaign in the background on this loop (once per campaign)."""
        if campaign_id in self._generations or self._stopping.is_set():
            return
        task = asyncio.get_running_loop().create_task(self._generate(campaign_id))
        self._generations[campaign_id] = task
        task.add_done_callback(lambda _: self._generations.pop(campaign_id, None))

    async def _generate(self, campaign_id: str) -> None:
        from huntaze_cli.services import campaigns

        assert self.generator is not None
        try:
            await campaigns.generate(self.loop, campaign_id, self.generator)
        except BudgetExceeded as exc:
            # Not a failure: the campaign waits as paused_budget and the worker resumes
            # it when the period turns or the limit is raised.
            log.warning(
                "campaign generation paused by its budget",
                extra={"campaign_id": campaign_id, "budget": exc.budget, "error": exc.message},
            )
        except HuntazeError as exc:
            log.error(
                "campaign generation stopped",
                extra={"campaign_id": campaign_id, "error": exc.message},
            )
        except Exception as exc:
            log.error(
                "campaign generation failed", exc_info=exc, extra={"campaign_id": campaign_id}
            )

    # --- reports -------------------------------------------------------------------------

    def stats_json(self) -> bytes:
        from huntaze_cli.services import costs

        return dump_json(costs.stats(self.http))

    def metrics_text(self) -> bytes:
        with self.metrics_lock:
            self.metrics.set_queue_depth(self.http.queue().depth())
            return self.metrics.exposition()

    # --- reload --------------------------------------------------------------------------

    def reload(self) -> bool:
        """Load the config file again and swap it in; False (and a warning) if it is bad."""
        try:
            config = load_config(self.config_path)
            orchestrator = self._build_orchestrator(config)
        except HuntazeError as exc:
            log.warning(
                "config reload failed; keeping the running config", extra={"error": exc.message}
            )
            return False
        later = [s for s in RESTART_SECTIONS if getattr(config, s) != getattr(self.config, s)]
        # [server] (token, body limit, address) keeps its start-up values until a restart,
        # as the log and README say: a reload must never turn authentication off.
        config = config.model_copy(update={"server": self.config.server})
        self.config = config
        self.http.reload(config)
        self.loop.reload(config)
        self.checks.reload(config)
        self.forecasts.reload(config)
        self.billing.reload(config)
        assert self.generator is not None
        self.generator.swap(orchestrator)
        self.stats.invalidate()
        if later:
            log.warning(
                "config reloaded; changes to these sections apply after a restart",
                extra={"sections": later},
            )
        else:
            log.info("config reloaded", extra={"source": str(config.source or "defaults")})
        return True


def _on_signal(name: str, handler: Callable[[], Any] | None) -> None:
    """Install (or remove) a loop signal handler; a no-op off the main thread (tests)."""
    import signal

    sig = getattr(signal, name, None)
    if sig is None or threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    if handler is None:
        loop.remove_signal_handler(sig)
    else:
        loop.add_signal_handler(sig, handler)


class Generator:
    """Hands each generation to the current orchestrator; a reload swaps in a new one.

    ``generate_campaign`` holds this object for a whole campaign, so a swap applies to
    the campaign's next message. A replaced orchestrator is closed (its cost events
    written, its clients closed) once its last generation has finished.
    """

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.current = orchestrator
        self._busy: dict[int, int] = {}
        self._retired: list[Orchestrator] = []
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def config(self) -> Config:
        """The current orchestrator's config (experiments are assigned from it)."""
        return self.current.config

    @property
    def providers(self) -> dict[str, Any]:
        return self.current.providers

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        orchestrator = self.current
        key = id(orchestrator)
        self._busy[key] = self._busy.get(key, 0) + 1
        try:
            return await orchestrator.generate(request)
        finally:
            self._busy[key] -= 1
            if orchestrator in self._retired and not self._busy[key]:
                self._close(orchestrator)

    def swap(self, orchestrator: Orchestrator) -> None:
        old, self.current = self.current, orchestrator
        if self._busy.get(id(old)):
            self._retired.append(old)
        else:
            self._close(old)

    def _close(self, orchestrator: Orchestrator) -> None:
        if orchestrator in self._retired:
            self._retired.remove(orchestrator)
        self._busy.pop(id(orchestrator), None)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(orchestrator.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        for orchestrator in [*self._retired, self.current]:
            await orchestrator.aclose()
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class StatsCache:
    """The last `costs stats` JSON, recomputed at most once per ``ttl_s`` (single flight).

    ``invalidate`` (this process wrote cost events, or the config changed) makes the
    next request recompute. The computation runs in a thread; concurrent requests wait
    for the same one instead of each starting their own.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._body: bytes | None = None
        self._at = 0.0
        self._version = 0
        self._body_version = -1
        self._pending: asyncio.Task[bytes] | None = None

    def invalidate(self) -> None:
        self._version += 1

    async def get(self, compute: Callable[[], bytes]) -> bytes:
        body = self._body
        if (
            body is not None
            and self._body_version == self._version
            and time.monotonic() - self._at < self.ttl_s
        ):
            return body
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_task(self._refresh(compute))
        # shield: a client that hangs up must not cancel the refresh others wait for
        return await asyncio.shield(self._pending)

    async def _refresh(self, compute: Callable[[], bytes]) -> bytes:
        version = self._version
        try:
            body = await asyncio.to_thread(compute)
        finally:
            self._pending = None
        self._body, self._at, self._body_version = body, time.monotonic(), version
        return body


class CountingLedger:
    """The orchestrator's ledger, counted into metrics; a write invalidates the stats cache."""

    def __init__(self, ledger: Ledger, metrics: Metrics, on_write: Callable[[], None]) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._on_write = on_write

    def record(self, events: Any) -> RecordResult:
        started = time.perf_counter()
        try:
            result = self._ledger.record(events)
        except HuntazeError:
            self._metrics.ledger_write_errors.inc()
            raise
        self._metrics.ledger_write_latency.observe(time.perf_counter() - started)
        events_metric = self._metrics.ledger_events
        events_metric.labels("stored").inc(result.stored)
        events_metric.labels("duplicate").inc(result.duplicates)
        events_metric.labels("expired").inc(result.expired)
        self._on_write()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


class CountingLimiter:
    """The worker's rate limiter, with its grants and waits counted into metrics."""

    def __init__(self, limiter: RateLimiter, metrics: Metrics) -> None:
        self._limiter = limiter
        self._metrics = metrics
        self.messages = limiter.messages
        self.per_seconds = limiter.per_seconds

    def acquire(self, account: str, *, now: Any = None) -> Grant:
        grant = self._limiter.acquire(account, now=now)
        if grant.granted:
            self._metrics.ratelimit_acquires.labels("granted").inc()
        else:
            self._metrics.ratelimit_acquires.labels("wait").inc()
            self._metrics.ratelimit_wait.observe(grant.retry_after_s)
        return grant

    def take_quota(self, key: str, period: str, limit: int, *, expires_at: Any) -> bool:
        return self._limiter.take_quota(key, period, limit, expires_at=expires_at)

    def close(self) -> None:
        self._limiter.close()
