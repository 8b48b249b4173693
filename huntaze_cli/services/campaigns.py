"""The campaign use cases, the same for `send-campaign`/`status`/`requeue` and the HTTP API.

``start`` stores a campaign (or finds the one with its idempotency key, also when
several processes race to create it) and says whether messages still need writing;
``generate`` writes them through the container's orchestrator; ``report``,
``overview`` and ``requeue`` are what `status` and `requeue` show. Delivery is the
worker's job (``campaigns.worker``); the CLI runs it in the foreground, the daemon in
the background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huntaze_cli.errors import NotFoundError

if TYPE_CHECKING:
    from huntaze_cli.campaigns.file import LoadedCampaign
    from huntaze_cli.models import CampaignReport, DryRunReport, RequeueReport, StatusOverview
    from huntaze_cli.services import Services
    from huntaze_cli.storage.sqlite.campaigns import CampaignRow


@dataclass
class Started:
    """A stored (or resumed) campaign and whether messages still need generating."""

    campaign: CampaignRow
    resumed: bool
    generate: bool


def plan(services: Services, loaded: LoadedCampaign) -> DryRunReport:
    """The dry run: routing plan, cost estimate and ETA; calls and stores nothing."""
    from huntaze_cli.campaigns.generation import dry_run

    return dry_run(services.config(), loaded)


def start(services: Services, loaded: LoadedCampaign, *, idempotency_key: str | None) -> Started:
    """Store ``loaded`` with its estimate, or resume the campaign with this key."""
    from huntaze_cli.campaigns.generation import needs_generation, start_campaign

    store = services.store()
    campaign, resumed = start_campaign(
        services.config(), store, loaded, idempotency_key=idempotency_key
    )
    return Started(campaign, resumed, needs_generation(store, campaign))


async def generate(
    services: Services,
    campaign_id: str,
    orchestrator: Any,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write every message still missing and move it into the delivery queue."""
    from huntaze_cli.campaigns.generation import generate_campaign

    store = services.store()
    campaign = store.get(campaign_id)
    if campaign is None:
        raise NotFoundError(f"campaign {campaign_id!r} not found")
    await generate_campaign(
        store,
        services.queue(),
        orchestrator,
        campaign,
        concurrency=services.config().routing.concurrency,
        on_progress=on_progress,
    )


def report(services: Services, campaign_id: str, *, resumed: bool | None = None) -> CampaignReport:
    """One campaign as `status ID --json` shows it (``resumed`` set by a start)."""
    from huntaze_cli.campaigns.generation import campaign_report

    result = campaign_report(services.config(), services.store(), services.ledger(), campaign_id)
    if resumed is not None:
        result.resumed = resumed
    return result


def overview(services: Services, *, limit: int) -> StatusOverview:
    """Recent campaigns, queue depth per account and worker heartbeats."""
    from huntaze_cli.campaigns.generation import status_overview

    return status_overview(
        services.config(), services.store(), services.ledger(), services.queue(), limit=limit
    )


def requeue(services: Services, campaign_id: str) -> RequeueReport:
    """Put a campaign's dead letters back in the queue with attempts reset."""
    from huntaze_cli.models import RequeueReport

    store = services.store()
    if store.get(campaign_id) is None:
        raise NotFoundError(f"campaign {campaign_id!r} not found")
    moved = services.queue().requeue_dead(campaign_id)
    store.requeued(campaign_id)
    return RequeueReport(campaign_id=campaign_id, requeued=moved)
