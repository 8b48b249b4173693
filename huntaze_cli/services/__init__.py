"""The service container both the CLI and the HTTP daemon build on.

Commands and routes get their config, stores, queue, limiter, sink and orchestrator from
a ``Services`` object and call the application services in this package with it
(``campaigns``, ``costs``, ``thresholds``, ``health``); neither layer opens a backend or
builds an orchestrator itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from huntaze_cli.config import Config
    from huntaze_cli.llm.orchestrator import Orchestrator
    from huntaze_cli.observability.metrics import Metrics
    from huntaze_cli.sinks import Sink
    from huntaze_cli.storage.alerts import AlertStore
    from huntaze_cli.storage.budgets import ReservationStore
    from huntaze_cli.storage.campaigns import CampaignStore
    from huntaze_cli.storage.ledger import Ledger
    from huntaze_cli.storage.queue import DeliveryQueue
    from huntaze_cli.storage.ratelimit import RateLimiter
    from huntaze_cli.storage.sqlite.outcomes import OutcomeStore


@dataclass
class Services:
    """The stores, sinks and config one process uses, opened lazily and closed together.

    The CLI keeps one on ``ctx.obj`` for the command it runs; `serve` keeps two (one
    for the event loop's thread, one for request handlers). Nothing opens before it is
    first asked for, so a command that reads only the ledger never opens the queue.
    """

    config_path: Path | None = None
    _config: Config | None = field(default=None, repr=False)
    _ledger: Ledger | None = field(default=None, repr=False)
    _open: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def with_config(cls, config: Config, *, config_path: Path | None = None) -> Services:
        """A container around an already loaded config (the daemon loads it once)."""
        services = cls(config_path=config_path)
        services._config = config
        return services

    def reload(self, config: Config) -> None:
        """Use ``config`` from now on; stores already open stay open (their sections
        need a restart to change, see ``server.runtime.RESTART_SECTIONS``)."""
        self._config = config

    def config(self) -> Config:
        if self._config is None:
            from huntaze_cli.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def ledger(self) -> Ledger:
        if self._ledger is None:
            from huntaze_cli.storage import open_ledger

            self._ledger = open_ledger(self.config())
        return self._ledger

    def ledger_for(self, tenant: str | None) -> Ledger:
        """The ledger as ``tenant`` may read it: only its events (``costs.tenant_view``);
        all of it for None (the admin, the CLI)."""
        if tenant is None:
            return self.ledger()
        from huntaze_cli.costs.tenant_view import TenantLedger

        return TenantLedger(self.ledger(), tenant)

    def _get(self, name: str, factory: Any) -> Any:
        if name not in self._open:
            self._open[name] = factory(self.config())
        return self._open[name]

    def alert_store(self) -> AlertStore:
        from huntaze_cli.storage import open_alert_store

        return self._get("alert_store", open_alert_store)

    def reservations(self) -> ReservationStore:
        from huntaze_cli.storage import open_reservation_store

        return self._get("reservations", open_reservation_store)

    def store(self) -> CampaignStore:
        from huntaze_cli.storage import open_campaign_store

        return self._get("store", open_campaign_store)

    def outcomes(self) -> OutcomeStore:
        from huntaze_cli.storage.sqlite.outcomes import OutcomeStore

        return self._get("outcomes", lambda config: OutcomeStore(config.outcomes_path))

    def queue(self) -> DeliveryQueue:
        from huntaze_cli.storage import open_queue

        return self._get("queue", open_queue)

    def limiter(self) -> RateLimiter:
        from huntaze_cli.storage import open_rate_limiter

        return self._get("limiter", open_rate_limiter)

    def sink(self) -> Sink:
        from huntaze_cli.sinks import open_sink

        return self._get("sink", open_sink)

    def orchestrator(
        self,
        config: Config | None = None,
        *,
        metrics: Metrics | None = None,
        warn: Callable[[str], None] | None = None,
        wrap_ledger: Callable[[Ledger], Ledger] | None = None,
    ) -> Orchestrator:
        """A new orchestrator over this container's ledger; the caller closes it.

        ``config`` builds it for a config not yet swapped in (a reload checks it first);
        ``wrap_ledger`` lets the daemon count ledger writes. The orchestrator itself
        decides whether cost events are written (``[flags] cost_tracking``).
        """
        from huntaze_cli.llm.orchestrator import Orchestrator
        from huntaze_cli.services.budgets import budget_gate

        ledger = self.ledger()
        if wrap_ledger is not None:
            ledger = wrap_ledger(ledger)
        config = config or self.config()
        return Orchestrator.from_config(
            config,
            ledger=ledger,
            metrics=metrics,
            warn=warn,
            budget=budget_gate(self, config, warn=warn),
        )

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        for resource in self._open.values():
            resource.close()
        self._open.clear()
