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
    from huntaze_cli.storage.campaigns import CampaignRow


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
    """Store ``loaded`` with its estimate, or resume the campaign with this key.

    The config is checked first (providers named by routing exist, the sink has its URL
    and secret, some provider has its key): nothing is stored or spent on a config
    that would fail after the LLM calls were paid for.
    """
    from huntaze_cli.campaigns.generation import needs_generation, start_campaign
    from huntaze_cli.services.preflight import check_before_sending

    check_before_sending(services.config())
    store = services.store()
    campaign, resumed = start_campaign(
        services.config(), store, loaded, idempotency_key=idempotency_key
    )
    return Started(campaign, resumed, needs_generation(store, campaign))


def resume(services: Services, campaign_id: str) -> Started:
    """Any campaign by its id, to finish: generate what is missing, deliver what is queued."""
    from huntaze_cli.campaigns.generation import needs_generation

    store = services.store()
    campaign = store.get(campaign_id)
    if campaign is None:
        raise NotFoundError(
            f"campaign {campaign_id!r} not found", hint="`huntaze status` lists recent campaigns"
        )
    return Started(campaign, True, needs_generation(store, campaign))


async def generate(
    services: Services,
    campaign_id: str,
    orchestrator: Any,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> bool:
    """Write every message still missing and move it into the delivery queue.

    False when another live process is generating the campaign (it holds the lease):
    that process finishes it, and what it queues is delivered all the same.
    """
    from huntaze_cli.campaigns.generation import GenerationBusy, generate_campaign

    store = services.store()
    campaign = store.get(campaign_id)
    if campaign is None:
        raise NotFoundError(f"campaign {campaign_id!r} not found")
    try:
        await generate_campaign(
            store,
            services.queue(),
            orchestrator,
            campaign,
            concurrency=services.config().routing.concurrency,
            on_progress=on_progress,
            lease_s=services.config().campaigns.generation_lease_s,
        )
    except GenerationBusy:
        return False
    return True


async def generate_orphans(services: Services, orchestrator: Any) -> list[str]:
    """Finish campaigns whose generating process stopped (`worker` and `serve` call this)."""
    from huntaze_cli.campaigns.generation import generate_orphans as finish

    return await finish(
        services.store(),
        services.queue(),
        orchestrator,
        concurrency=services.config().routing.concurrency,
        lease_s=services.config().campaigns.generation_lease_s,
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
    """Retry a campaign's dead messages: dead in delivery and dead in generation.

    Delivery dead letters go back in the queue with attempts reset. Messages whose
    generation gave up go back to pending and the campaign to generating, with no
    lease: `huntaze resume ID`, or any running `worker`/`serve`, writes them.
    """
    from huntaze_cli.models import RequeueReport

    store = services.store()
    if store.get(campaign_id) is None:
        raise NotFoundError(f"campaign {campaign_id!r} not found")
    moved = services.queue().requeue_dead(campaign_id)
    store.requeued(campaign_id)
    regenerate = store.retry_failed_generation(campaign_id)
    if regenerate:
        store.set_state(campaign_id, "generating")
    return RequeueReport(campaign_id=campaign_id, requeued=moved, regenerate=regenerate)
