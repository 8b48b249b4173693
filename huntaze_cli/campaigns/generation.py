"""Campaigns end to end: estimate, create (or resume by idempotency key), generate, enqueue.

``start_campaign`` validates and stores a campaign with all its recipients in one
transaction (a bad recipient line stores nothing), ``generate_campaign`` writes every
pending message through the orchestrator with bounded concurrency and moves each into
the delivery queue, and ``campaign_report`` is what `status` and the HTTP API show.
Delivery itself is the worker's job (campaigns/worker.py).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from huntaze_cli.campaigns.file import LoadedCampaign, render
from huntaze_cli.campaigns.offload import off_loop, off_loop_on
from huntaze_cli.config import Config
from huntaze_cli.errors import (
    BackendError,
    BudgetExceeded,
    ConfigError,
    HuntazeError,
    NotFoundError,
)
from huntaze_cli.llm.types import GenerationRequest, Message
from huntaze_cli.models import (
    CampaignReport,
    DryRunProvider,
    DryRunReport,
    ProviderSpend,
    QueueDepth,
    StatusOverview,
    WorkerBeat,
)
from huntaze_cli.money import nano_to_usd
from huntaze_cli.storage.campaigns import CampaignRow, CampaignStore, PendingMessage
from huntaze_cli.storage.ledger import Counters, Ledger
from huntaze_cli.storage.queue import DeliveryQueue, QueueItem, message_key

if TYPE_CHECKING:
    from huntaze_cli.llm.routing import Plan

DEFAULT_MAX_TOKENS = 256  # what estimates assume when a campaign sets no max_tokens
FLUSH_EVERY = 256
# The lease on generating a campaign ([campaigns] generation_lease_s): renewed every
# third of it while generating; a campaign whose lease ran out (its process was
# interrupted or killed) is orphaned and the next `worker` or `serve` finishes it.
GENERATION_LEASE_S = 60.0
TENANT_SCAN = 1000  # a tenant's `status` looks for its campaigns among this many recent ones
OWNER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


# States of a campaign whose messages are still to be written (paused_budget: by a budget
# with no room; it resumes by itself).
GENERATING_STATES = ("estimating", "generating", "paused_budget")


class GenerationBusy(HuntazeError):
    """Another live process holds the campaign's generation lease."""


def new_campaign_id() -> str:
    """Time-ordered and unique: ``cmp_`` + milliseconds (hex) + 8 random hex digits."""
    return f"cmp_{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def request_for(
    campaign: CampaignRow, recipient_id: str, fields: dict[str, str]
) -> GenerationRequest:
    messages = []
    if campaign.system:
        messages.append(Message("system", campaign.system))
    messages.append(Message("user", render(campaign.prompt, fields)))
    return GenerationRequest(
        request_id=message_key(campaign.id, recipient_id),
        model=campaign.model,
        messages=messages,
        max_tokens=campaign.max_tokens,
        temperature=campaign.temperature,
        provider=campaign.provider,
        account=campaign.account,
        campaign_id=campaign.id,
        tenant=campaign.tenant,
    )


def eta_seconds(config: Config, remaining: int) -> float:
    """Time the rate limit needs for ``remaining`` messages of one account."""
    if remaining <= 0:
        return 0.0
    windows = (remaining - 1) // config.rate_limit.messages
    return round(windows * config.rate_limit.per_seconds, 1)


# --- estimate ---------------------------------------------------------------------------


@dataclass
class ProviderEstimate:
    """One provider's cost range for a whole campaign, in nano-dollars (None: unpriced)."""

    kind: str
    low_nano: int | None
    high_nano: int | None


@dataclass
class Estimate:
    """What a campaign will cost and take, before anything is called or stored."""

    row: CampaignRow
    recipients: int
    input_tokens: int
    input_tokens_max: int
    output_tokens_max: int
    plan: Plan
    providers: dict[str, ProviderEstimate]

    @property
    def high_nano(self) -> int | None:
        """The upper bound on the first provider of the routing plan."""
        return self.providers[self.plan.order[0]].high_nano


def _spec_row(config: Config, loaded: LoadedCampaign, campaign_id: str) -> CampaignRow:
    spec = loaded.spec
    now = datetime.now(UTC)
    return CampaignRow(
        id=campaign_id,
        idempotency_key=None,
        name=spec.name,
        account=spec.account,
        tenant=spec.tenant,
        model=spec.model or config.routing.default_model,
        provider=spec.provider,
        system=spec.system,
        prompt=spec.prompt,
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        state="estimating",
        recipients=0,
        estimated_cost_nano=0,
        created_at=now,
        updated_at=now,
    )


def estimate(config: Config, loaded: LoadedCampaign) -> Estimate:
    """Routing plan and token and cost estimate per provider; calls and stores nothing."""
    from huntaze_cli.llm.pricing import PriceBook
    from huntaze_cli.llm.providers import effective_provider_configs
    from huntaze_cli.llm.routing import Router
    from huntaze_cli.llm.tokens import estimate_input_tokens, max_input_tokens
    from huntaze_cli.llm.types import Usage

    row = _spec_row(config, loaded, "dry-run")
    recipients = input_tokens = input_tokens_max = 0
    for recipient_id, fields in loaded.iter_recipients():
        recipients += 1
        request = request_for(row, recipient_id, fields)
        input_tokens += estimate_input_tokens(request)
        input_tokens_max += max_input_tokens(request)
    providers = effective_provider_configs(config)
    router = Router(config, list(providers))
    plan = router.plan(
        GenerationRequest(
            request_id=f"{row.account}:estimate",
            model=row.model,
            messages=[],
            provider=row.provider,
            account=row.account,
        )
    )
    prices = PriceBook(config.pricing.overrides)
    max_out = (row.max_tokens or DEFAULT_MAX_TOKENS) * recipients
    per_provider: dict[str, ProviderEstimate] = {}
    for name in plan.order:
        price = prices.price(name, providers[name].kind, row.model)
        low = high = None
        if price is not None:
            low = prices.cost_nano(price, Usage(input_tokens, 0, max_out // 4))
            # Input at its hard bound (one token per byte): the high end holds for any text.
            high = prices.cost_nano(price, Usage(input_tokens_max, 0, max_out))
        per_provider[name] = ProviderEstimate(providers[name].kind, low, high)
    return Estimate(row, recipients, input_tokens, input_tokens_max, max_out, plan, per_provider)


def dry_run(config: Config, loaded: LoadedCampaign) -> DryRunReport:
    """Routing plan, token and cost estimate per provider, ETA; calls and stores nothing."""
    found = estimate(config, loaded)
    row, plan = found.row, found.plan

    def usd(nano: int | None) -> float | None:
        return None if nano is None else nano_to_usd(nano)

    return DryRunReport(
        name=row.name,
        account=row.account,
        tenant=row.tenant,
        model=row.model,
        recipients=found.recipients,
        routing={
            "strategy": config.routing.strategy,
            "reason": plan.reason,
            "order": list(plan.order),
            "fallback": plan.fallback,
        },
        providers={
            name: DryRunProvider(
                kind=p.kind,
                priced=p.high_nano is not None,
                input_tokens=found.input_tokens,
                input_tokens_max=found.input_tokens_max,
                output_tokens_max=found.output_tokens_max,
                cost_low_usd=usd(p.low_nano),
                cost_high_usd=usd(p.high_nano),
            )
            for name, p in found.providers.items()
        },
        estimated_cost_usd=usd(found.high_nano),
        eta_seconds=eta_seconds(config, found.recipients),
        rate_limit={
            "messages": config.rate_limit.messages,
            "per_seconds": config.rate_limit.per_seconds,
        },
    )


# --- create / resume -------------------------------------------------------------------


def start_campaign(
    config: Config,
    store: CampaignStore,
    loaded: LoadedCampaign,
    *,
    idempotency_key: str | None,
) -> tuple[CampaignRow, bool]:
    """Store a new campaign, or find the one with this idempotency key (resumed=True).

    Several processes starting the same key at once all end on one campaign: the key is
    unique in the store, so every insert but the first fails, and those find the winner.
    """
    if idempotency_key:
        found = _by_key(store, idempotency_key)
        if found is not None:
            return found, True
    _check_provider(config, loaded.spec.provider)
    high = estimate(config, loaded).high_nano
    campaign_id = new_campaign_id()
    spec = loaded.spec.model_dump(exclude={"recipients", "recipients_file"})
    spec["model"] = spec["model"] or config.routing.default_model
    try:
        store.create(
            campaign_id=campaign_id,
            idempotency_key=idempotency_key,
            spec=spec,
            recipients=loaded.iter_recipients(),
            estimated_cost_nano=high or 0,
            generation_owner=OWNER,
            lease_s=config.campaigns.generation_lease_s,
        )
    except BackendError:
        # Another process stored this key between our look-up and our insert.
        found = _by_key(store, idempotency_key) if idempotency_key else None
        if found is None:
            raise
        return found, True
    campaign = store.get(campaign_id)
    assert campaign is not None
    return campaign, False


def _by_key(store: CampaignStore, idempotency_key: str) -> CampaignRow | None:
    existing = store.find_by_key(idempotency_key)
    return store.get(existing) if existing else None


def needs_generation(store: CampaignStore, campaign: CampaignRow) -> bool:
    """Whether some message of the campaign still has to be written (or queued)."""
    return campaign.state in GENERATING_STATES or store.needs_generation(campaign.id)


def _check_provider(config: Config, provider: str) -> None:
    from huntaze_cli.errors import InputError
    from huntaze_cli.llm.providers import effective_provider_configs

    known = effective_provider_configs(config)
    if provider != "auto" and provider not in known:
        raise InputError(
            f"provider: unknown provider {provider!r}; configured: {', '.join(known)} or auto",
            field="provider",
            value=provider,
        )


# --- generate --------------------------------------------------------------------------


async def generate_campaign(
    store: CampaignStore,
    queue: DeliveryQueue,
    orchestrator: Any,
    campaign: CampaignRow,
    *,
    concurrency: int,
    on_progress: Callable[[int, int], None] | None = None,
    lease_s: float = GENERATION_LEASE_S,
) -> None:
    """Generate every pending message and enqueue it; leftovers of a crash are enqueued.

    Generation failures are recorded on the message (dead, with the error; a resume
    tries them again). A configuration error (no usable provider), or every provider's
    circuit open (ProvidersDown), stops the campaign: what is left stays pending.
    A budget with no room (BudgetExceeded) stops it as ``paused_budget``, what is left
    pending; `worker` and `serve` try it again (``orphaned`` lists it) and it goes on by
    itself once the period turns or the limit is raised.
    Raises GenerationBusy when another live process is generating it.
    """
    if not await off_loop(store.claim_generation, campaign.id, OWNER, lease_s=lease_s):
        owner = await off_loop(store.generation_owner, campaign.id) or "another process"
        raise GenerationBusy(
            f"campaign {campaign.id} is being generated by {owner}",
            hint=f"`huntaze status {campaign.id}` follows it; it is resumable if that stops",
        )
    renewal = asyncio.create_task(_renew_lease(store, campaign.id, lease_s))
    try:
        await _generate(store, queue, orchestrator, campaign, concurrency, on_progress)
    finally:
        renewal.cancel()
        await off_loop(store.release_generation, campaign.id, OWNER)


async def generate_orphans(
    store: CampaignStore,
    queue: DeliveryQueue,
    orchestrator: Any,
    *,
    concurrency: int,
    limit: int = 10,
    lease_s: float = GENERATION_LEASE_S,
) -> list[str]:
    """Finish campaigns left generating by a process that stopped; their ids.

    Used by `worker` and `serve`, also for campaigns paused by a budget. A campaign
    another process claims first, or still paused by its budget, is skipped;
    ProvidersDown and ConfigError propagate (nothing else could be generated either).
    """
    finished = []
    for campaign_id in await off_loop(store.orphaned, limit=limit):
        campaign = await off_loop(store.get, campaign_id)
        if campaign is None:
            continue
        try:
            await generate_campaign(
                store, queue, orchestrator, campaign, concurrency=concurrency, lease_s=lease_s
            )
        except (GenerationBusy, BudgetExceeded):
            continue
        finished.append(campaign_id)
    return finished


async def _renew_lease(store: CampaignStore, campaign_id: str, lease_s: float) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        await off_loop(store.claim_generation, campaign_id, OWNER, lease_s=lease_s)


async def _generate(
    store: CampaignStore,
    queue: DeliveryQueue,
    orchestrator: Any,
    campaign: CampaignRow,
    concurrency: int,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    from huntaze_cli.llm.experiments import assigner_for
    from huntaze_cli.llm.orchestrator import GenerationFailed, ProvidersDown

    assigner = assigner_for(
        orchestrator.config,
        tenant=campaign.tenant,
        account=campaign.account,
        campaign=(campaign.id, campaign.name),
        model=campaign.model,
        providers=list(orchestrator.providers),
    )
    await off_loop(store.retry_failed_generation, campaign.id)
    await off_loop_on(store, _enqueue_generated, store, queue, campaign)
    if campaign.state not in ("generating", "estimating"):
        await off_loop(store.set_state, campaign.id, "generating")
    work: asyncio.Queue[PendingMessage | None] = asyncio.Queue(maxsize=concurrency * 4)
    done: list[tuple[str, str, str]] = []
    failed: list[tuple[str, str]] = []
    generated = errors = 0
    fatal: list[BaseException] = []
    flushed = [time.monotonic()]

    async def flush() -> None:
        # Take the batches first: other consumers keep adding while this one waits.
        written, lost = done[:], failed[:]
        done.clear()
        failed.clear()
        if written:
            chunk = [(rid, text) for rid, text, _ in written]
            await off_loop_on(store, _save_and_queue, store, queue, campaign, written, chunk)
        if lost:
            await off_loop(store.generation_failed, campaign.id, lost, final=True)

    async def producer() -> None:
        after = -1
        while not fatal:
            batch = await off_loop(store.pending, campaign.id, after_seq=after, limit=1000)
            if not batch:
                break
            for message in batch:
                await work.put(message)
            after = batch[-1].seq
        for _ in range(concurrency):
            await work.put(None)

    async def consumer() -> None:
        nonlocal generated, errors
        while True:
            message = await work.get()
            if message is None or fatal:
                return
            request = request_for(campaign, message.recipient_id, message.fields)
            if assigner is not None:
                request = assigner.apply(request, message.recipient_id)
            try:
                result = await orchestrator.generate(request)
            except (ProvidersDown, BudgetExceeded) as exc:
                # Nothing can be served now: stop, leaving the rest pending to resume.
                fatal.append(exc)
                return
            except GenerationFailed as exc:
                failed.append((message.recipient_id, exc.message))
                errors += 1
            except ConfigError as exc:
                fatal.append(exc)
                return
            else:
                done.append((message.recipient_id, result.text, result.provider))
                generated += 1
            # Failures are stored within a second, so `status` shows them as they happen
            # (a failing provider may produce few of them per second).
            now = time.monotonic()
            if len(done) + len(failed) >= FLUSH_EVERY or (failed and now - flushed[0] >= 1.0):
                flushed[0] = now
                await flush()
            if on_progress:
                on_progress(generated, errors)

    producer_task = asyncio.create_task(producer())
    try:
        await asyncio.gather(*(consumer() for _ in range(concurrency)))
    finally:
        producer_task.cancel()
        await flush()  # also when cancelled (the daemon stopping): keep what was written
    if fatal:
        if isinstance(fatal[0], BudgetExceeded):
            await off_loop(store.set_state, campaign.id, "paused_budget")
        raise fatal[0]
    await off_loop(store.set_state, campaign.id, "delivering")
    await off_loop(store.refresh_state, campaign.id)


def _item(campaign: CampaignRow, recipient_id: str, text: str) -> QueueItem:
    return QueueItem(
        key=message_key(campaign.id, recipient_id),
        campaign_id=campaign.id,
        account=campaign.account,
        recipient_id=recipient_id,
        text=text,
    )


def _enqueue_generated(store: CampaignStore, queue: DeliveryQueue, campaign: CampaignRow) -> None:
    """Queue what a crash left generated but not queued, 1,000 at a time (streamed).

    Blocking: runs in a thread, holding the store's turn (``off_loop_on``).
    """
    chunk: list[tuple[str, str]] = []
    for recipient_id, text in store.generated(campaign.id):
        chunk.append((recipient_id, text))
        if len(chunk) == 1000:
            _queue_chunk(store, queue, campaign, chunk)
            chunk = []
    if chunk:
        _queue_chunk(store, queue, campaign, chunk)


def _save_and_queue(
    store: CampaignStore,
    queue: DeliveryQueue,
    campaign: CampaignRow,
    written: list[tuple[str, str, str]],
    chunk: list[tuple[str, str]],
) -> None:
    store.save_generated(campaign.id, written)
    _queue_chunk(store, queue, campaign, chunk)


def _queue_chunk(
    store: CampaignStore, queue: DeliveryQueue, campaign: CampaignRow, chunk: list[tuple[str, str]]
) -> None:
    queue.enqueue([_item(campaign, rid, text) for rid, text in chunk])
    store.mark_queued(campaign.id, [rid for rid, _ in chunk])


# --- report ----------------------------------------------------------------------------


def campaign_report(
    config: Config, store: CampaignStore, ledger: Ledger | None, campaign_id: str
) -> CampaignReport:
    campaign = store.get(campaign_id)
    if campaign is None:
        raise NotFoundError(
            f"campaign {campaign_id!r} not found", hint="`huntaze status` lists recent campaigns"
        )
    counts = store.counts(campaign_id)
    spend = _spend(ledger, campaign) if ledger is not None else {}
    remaining = counts["pending"] + counts["generated"] + counts["queued"] + counts["failed"]
    cost_nano = sum(c.cost_nano for c in spend.values())
    sent = counts["sent"]
    return CampaignReport(
        campaign_id=campaign.id,
        name=campaign.name,
        account=campaign.account,
        tenant=campaign.tenant,
        model=campaign.model,
        state=campaign.state,
        recipients=campaign.recipients,
        counts=counts,
        cost_usd=nano_to_usd(cost_nano),
        cost_nano=cost_nano,
        cost_per_message_usd=nano_to_usd((cost_nano + sent // 2) // sent) if sent else None,
        unpriced_requests=sum(c.unpriced for c in spend.values()),
        estimated_cost_usd=nano_to_usd(campaign.estimated_cost_nano),
        providers={
            name: ProviderSpend(
                requests=c.requests,
                cost_usd=nano_to_usd(c.cost_nano),
                cost_nano=c.cost_nano,
                unpriced_requests=c.unpriced,
            )
            for name, c in sorted(spend.items())
        },
        eta_seconds=eta_seconds(config, remaining),
        idempotency_key=campaign.idempotency_key,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
    )


def _spend(ledger: Ledger, campaign: CampaignRow) -> dict[str, Counters]:
    """Figures per provider for one campaign, from daily rollups."""
    first = campaign.created_at.astimezone(UTC).date()
    until = datetime.now(UTC).date() + timedelta(days=1)
    spend: dict[str, Counters] = {}
    for (campaign_id, provider), counters in ledger.daily_groups(
        first, until, ["campaign", "provider"]
    ):
        if campaign_id == campaign.id and provider is not None:
            spend.setdefault(provider, Counters()).add(counters)
    return spend


def status_overview(
    config: Config,
    store: CampaignStore,
    ledger: Ledger | None,
    queue: DeliveryQueue,
    *,
    limit: int = 20,
    tenant: str | None = None,
) -> StatusOverview:
    """Recent campaigns, queue depth per account and worker heartbeats (`status`).

    With ``tenant``: that tenant's recent campaigns (among the last ``TENANT_SCAN``), the
    queues of their accounts only, and no workers (they serve every tenant).
    """
    now = datetime.now(UTC)
    if tenant is None:
        recent = store.recent(limit)
    else:
        recent = [c for c in store.recent(max(limit, TENANT_SCAN)) if c.tenant == tenant][:limit]
    accounts = {c.account for c in recent}
    return StatusOverview(
        campaigns=[campaign_report(config, store, ledger, c.id) for c in recent],
        queue={
            account: QueueDepth(queued=d.queued, in_flight=d.in_flight, dead=d.dead)
            for account, d in sorted(queue.depth().items())
            if tenant is None or account in accounts
        },
        workers=[
            WorkerBeat(
                worker_id=b.worker_id,
                host=b.host,
                pid=b.pid,
                beat_at=b.beat_at,
                age_seconds=round((now - b.beat_at).total_seconds(), 1),
                delivered=b.delivered,
                stopped=b.stopped,
            )
            for b in (store.heartbeats()[:10] if tenant is None else [])
        ],
    )
