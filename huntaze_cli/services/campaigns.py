"""The campaign use cases, the same for `send-campaign`/`status`/`requeue` and the HTTP API.

``start`` stores a campaign (or finds the one with its idempotency key, also when
several processes race to create it) and says whether messages still need writing;
``generate`` writes them through the container's orchestrator; ``delivery_worker``
builds the one delivery worker (`worker`, `serve`) and ``deliver`` runs it in the
foreground for one campaign (`send-campaign`); ``report``, ``overview`` and
``requeue`` are what `status` and `requeue` show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huntaze_cli.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from huntaze_cli.campaigns.detail import CampaignDetail
    from huntaze_cli.campaigns.file import LoadedCampaign
    from huntaze_cli.campaigns.worker import DeliveryWorker
    from huntaze_cli.models import CampaignReport, DryRunReport, RequeueReport, StatusOverview
    from huntaze_cli.services import Services
    from huntaze_cli.storage.campaigns import CampaignRow
    from huntaze_cli.storage.queue import Lease
    from huntaze_cli.storage.ratelimit import RateLimiter


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


def start(
    services: Services,
    loaded: LoadedCampaign,
    *,
    idempotency_key: str | None,
    tenant: str | None = None,
) -> Started:
    """Store ``loaded`` with its estimate, or resume the campaign with this key.

    The config is checked first (providers named by routing exist, the sink has its URL
    and secret, some provider has its key): nothing is stored or spent on a config
    that would fail after the LLM calls were paid for. With ``tenant`` the campaign is
    that tenant's whatever the body says, and a key already used by another tenant's
    campaign is a conflict (its campaign is neither shown nor resumed).
    """
    from huntaze_cli.campaigns.generation import needs_generation, start_campaign
    from huntaze_cli.services.preflight import check_before_sending

    check_before_sending(services.config())
    store = services.store()
    taken = ConflictError(
        "<idempotency_key> is already used by another campaign; choose another",
        field="idempotency_key",
    )
    if tenant is not None:
        spec = loaded.spec.model_copy(update={"tenant": tenant})
        loaded = type(loaded)(spec, loaded.base_dir, loaded.source)
        existing = store.find_by_key(idempotency_key) if idempotency_key else None
        found = store.get(existing) if existing is not None else None
        if found is not None and found.tenant != tenant:
            raise taken
    campaign, resumed = start_campaign(
        services.config(), store, loaded, idempotency_key=idempotency_key
    )
    if tenant is not None and campaign.tenant != tenant:  # another tenant won a race
        raise taken
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
    from huntaze_cli.campaigns.offload import off_loop

    store = services.store()
    campaign = await off_loop(store.get, campaign_id)
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


def delivery_worker(
    services: Services,
    *,
    account: str | None = None,
    on_event: Callable[[str, Lease], None] | None = None,
    wrap_limiter: Callable[[RateLimiter], RateLimiter] | None = None,
) -> DeliveryWorker:
    """The delivery worker over the container's queue, limiter, sink and store."""
    from huntaze_cli.campaigns.worker import DeliveryWorker

    limiter = services.limiter()
    return DeliveryWorker(
        services.config(),
        queue=services.queue(),
        limiter=wrap_limiter(limiter) if wrap_limiter else limiter,
        sink=services.sink(),
        store=services.store(),
        account=account,
        on_event=on_event,
    )


async def deliver(
    services: Services,
    campaign_id: str,
    *,
    on_start: Callable[[int, int], None],
    on_progress: Callable[[int, int, int], None],
    on_worker: Callable[[DeliveryWorker], None],
) -> bool:
    """Deliver one campaign's messages until it completes; True when stopped before.

    ``on_start(total, sent)`` once, then ``on_progress(sent, retrying, dead)`` after each
    delivery of this campaign; ``on_worker`` gets the worker (to stop it on a signal).
    """
    from huntaze_cli.campaigns.offload import off_loop

    store = services.store()
    campaign = await off_loop(store.get, campaign_id)
    if campaign is None:
        raise NotFoundError(f"campaign {campaign_id!r} not found")
    counts = await off_loop(store.counts, campaign_id)
    on_start(counts["queued"] + counts["failed"] + counts["sent"], counts["sent"])
    # Counted from the worker's events: a store count per delivery would scan the whole
    # campaign each time.
    sent, dead = counts["sent"], counts["dead"]
    retrying: set[str] = set()

    def on_event(what: str, lease: Lease) -> None:
        nonlocal sent, dead
        if lease.item.campaign_id != campaign_id:
            return  # another campaign of the same account
        key = lease.item.key
        if what == "failed":
            retrying.add(key)
            return
        retrying.discard(key)
        if what == "sent":
            sent += 1
        elif what == "dead":
            dead += 1
        on_progress(sent, len(retrying), dead)

    async def completed() -> bool:
        return (await off_loop(store.refresh_state, campaign_id)).startswith("completed")

    worker = delivery_worker(services, account=campaign.account, on_event=on_event)
    on_worker(worker)
    await worker.run(until=completed)
    return worker.stopping


def report(
    services: Services,
    campaign_id: str,
    *,
    resumed: bool | None = None,
    tenant: str | None = None,
) -> CampaignReport:
    """One campaign as `status ID --json` shows it (``resumed`` set by a start).

    With ``tenant``, another tenant's campaign is not found, exactly as a missing one.
    """
    from huntaze_cli.campaigns.generation import campaign_report

    _check_tenant(services, campaign_id, tenant)
    result = campaign_report(services.config(), services.store(), services.ledger(), campaign_id)
    if resumed is not None:
        result.resumed = resumed
    if result.state == "paused_budget":
        from huntaze_cli.services.budgets import paused_by

        result.paused_by = paused_by(services, result.tenant, result.account, result.campaign_id)
    return result


def overview(services: Services, *, limit: int, tenant: str | None = None) -> StatusOverview:
    """Recent campaigns, queue depth per account and worker heartbeats; with ``tenant``,
    its recent campaigns and the queues of their accounts, no workers."""
    from huntaze_cli.campaigns.generation import status_overview

    return status_overview(
        services.config(),
        services.store(),
        services.ledger(),
        services.queue(),
        limit=limit,
        tenant=tenant,
    )


def _check_tenant(services: Services, campaign_id: str, tenant: str | None) -> None:
    """With ``tenant``, another tenant's campaign is not found, exactly as a missing one."""
    if tenant is not None:
        found = services.store().get(campaign_id)
        if found is None or found.tenant != tenant:
            raise NotFoundError(f"campaign {campaign_id!r} not found")


def detail(
    services: Services, campaign_id: str, *, limit: int = 50, tenant: str | None = None
) -> CampaignDetail:
    """The campaign with cost and latency per provider and its dead letters (drill-down);
    with ``tenant``, another tenant's campaign is not found."""
    from huntaze_cli.campaigns.detail import campaign_detail

    _check_tenant(services, campaign_id, tenant)
    return campaign_detail(
        services.config(), services.store(), services.ledger(), campaign_id, limit=limit
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
