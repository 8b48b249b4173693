"""`huntaze send-campaign`, `status`, `worker`, `requeue`: the main job of huntaze."""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer

from huntaze_cli.cli import state
from huntaze_cli.cli.output import emit, styled, table, warn
from huntaze_cli.errors import UsageError
from huntaze_cli.services import Services

if TYPE_CHECKING:
    from rich.console import Console

    from huntaze_cli.campaigns.worker import DeliveryWorker
    from huntaze_cli.models import CampaignReport, StatusOverview
    from huntaze_cli.services.campaigns import Started

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
GENERATION_POLL_S = 2.0  # waiting on another process's generation of the same campaign


def send_campaign(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(help="Campaign file (TOML or JSON); - reads JSON from stdin.")
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Plan and estimate only: no provider call, no write."),
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Generate and enqueue, then exit; a worker delivers."),
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Resume the campaign created with this key instead of creating another.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate, estimate, generate every message and deliver under the rate limit.

    Messages are written through the hybrid orchestrator and queued; then they are
    delivered in the foreground at no more than [rate_limit] messages per per_seconds
    for the account, with progress on stderr. Ctrl-C leaves the rest queued: `huntaze
    worker` (or the same command with the same --idempotency-key) finishes it.

    Exit 0 when every message was sent (or queued with --no-wait), 1 when some failed
    for good (see `huntaze status`), 2 for an invalid campaign file, 3 when a budget
    has no room: the campaign is paused_budget, the rest stays pending, and a `worker`
    or `serve` goes on by itself when the period turns or the limit is raised.

    Example: huntaze send-campaign examples/quickstart.toml --idempotency-key nov-ppv
    """
    from huntaze_cli.campaigns.file import load_campaign
    from huntaze_cli.services import campaigns

    if idempotency_key is not None and not idempotency_key.strip():
        raise UsageError("--idempotency-key: the key is empty; give a key, or leave the option out")
    st = state(ctx)
    loaded = load_campaign(file)
    if dry_run:
        report = campaigns.plan(st, loaded)
        emit(report, as_json=as_json, render=lambda console: _render_dry_run(console, report))
        return
    started = campaigns.start(st, loaded, idempotency_key=idempotency_key)
    campaign = started.campaign
    if started.resumed:
        warn(f"resuming campaign {campaign.id} (idempotency key {idempotency_key!r})")
    else:
        sys.stderr.write(f"campaign {campaign.id}: {campaign.recipients:,} recipients\n")
    _finish(st, started, wait=not no_wait, as_json=as_json)


def resume(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="The campaign to finish.")],
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Generate and enqueue, then exit; a worker delivers."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Finish any campaign by its id: write what is missing, deliver what is queued.

    For a campaign that was interrupted (Ctrl-C, a crash, every provider down) with or
    without an --idempotency-key. A running `worker` or `serve` also picks up a
    campaign whose generation stopped, once its lease (60 s) runs out.

    Example: huntaze resume cmp_0193a1b2c3d4e5f6 --json
    """
    from huntaze_cli.services import campaigns

    st = state(ctx)
    started = campaigns.resume(st, campaign_id)
    sys.stderr.write(f"resuming campaign {campaign_id}\n")
    _finish(st, started, wait=not no_wait, as_json=as_json)


def _finish(st: Services, started: Started, *, wait: bool, as_json: bool) -> None:
    """Generate, deliver (unless not ``wait``), report; the exit code of the outcome."""
    from huntaze_cli.cli.exit_codes import WARNING, for_campaign
    from huntaze_cli.errors import BudgetExceeded, ProviderError
    from huntaze_cli.services import campaigns

    campaign = started.campaign
    error: ProviderError | BudgetExceeded | None = None
    try:
        interrupted = _run(_send(st, started, wait=wait))
    except ProviderError as exc:  # every provider's circuit open: the rest stays pending
        interrupted, error = False, exc
    except BudgetExceeded as exc:  # paused: queued messages go on with a worker
        interrupted, error = False, exc
    final = campaigns.report(st, campaign.id, resumed=started.resumed)
    if error is not None:
        final.error = error.message
    emit(final, as_json=as_json, render=lambda console: _render_campaign(console, final))
    finish = f"`huntaze resume {campaign.id}`"
    if isinstance(error, BudgetExceeded):
        sys.stderr.write(f"paused: {error.message}\n")
        sys.stderr.write(
            f"hint: {error.hint}; a running `huntaze worker` or `serve` resumes it, or {finish}\n"
        )
        raise typer.Exit(WARNING)
    if error is not None:
        sys.stderr.write(f"error: {error.message}\n")
        sys.stderr.write(f"hint: the rest stays pending; {finish} finishes it\n")
        raise typer.Exit(1)
    if interrupted:
        remaining = final.counts["queued"] + final.counts["failed"] + final.counts["pending"]
        sys.stderr.write(
            f"interrupted: {remaining:,} messages remain; {finish} finishes them "
            "(a running `huntaze worker` or `serve` does too)\n"
        )
    code = for_campaign(final, interrupted=interrupted)
    if code:
        raise typer.Exit(code)


async def _send(st: Services, started: Started, *, wait: bool) -> bool:
    """Generate what is missing, then deliver in the foreground; True if interrupted."""
    import asyncio

    from huntaze_cli.campaigns.offload import off_loop
    from huntaze_cli.services import campaigns

    campaign = started.campaign
    if started.generate:
        orchestrator = st.orchestrator(warn=warn)
        progress = _Progress("generating", campaign.recipients)
        try:
            while not await campaigns.generate(
                st,
                campaign.id,
                orchestrator,
                on_progress=lambda ok, bad: progress.update(ok + bad, f"{bad:,} failed"),
            ):
                # Another process holds the lease. With --no-wait it finishes the job;
                # otherwise wait for it, and take over if its lease lapses (it died).
                if not wait:
                    warn(f"campaign {campaign.id} is being generated by another process")
                    break
                await asyncio.sleep(GENERATION_POLL_S)
                current = await off_loop(st.store().get, campaign.id)
                if current is None or current.state not in ("estimating", "generating"):
                    break
        finally:
            progress.close()
            await orchestrator.aclose()
    if wait:
        return await _deliver_foreground(st, campaign.id)
    return False


async def _deliver_foreground(st: Services, campaign_id: str) -> bool:
    from huntaze_cli.services import campaigns

    progress: _Progress | None = None

    def start(total: int, sent: int) -> None:
        nonlocal progress
        progress = _Progress("delivering", total)
        progress.update(sent, "")

    def update(sent: int, retrying: int, dead: int) -> None:
        assert progress is not None
        progress.update(sent, f"{retrying:,} retrying, {dead:,} dead")

    try:
        return await campaigns.deliver(
            st, campaign_id, on_start=start, on_progress=update, on_worker=_stop_on_signals
        )
    finally:
        if progress is not None:
            progress.close()


def _stop_on_signals(worker: DeliveryWorker) -> None:
    """First SIGINT/SIGTERM stops gracefully; a second one interrupts at once."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()

    def first() -> None:
        sys.stderr.write("stopping: finishing deliveries in flight, returning the rest...\n")
        worker.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, first)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            return


def _run(coro: Coroutine[Any, Any, bool | None]) -> bool:
    """Run ``coro``; True when it was interrupted (Ctrl-C), False when it finished."""
    import asyncio

    try:
        return bool(asyncio.run(coro))
    except KeyboardInterrupt:
        return True


class _Progress:
    """A rich progress bar on stderr when stderr is a terminal; silent otherwise."""

    def __init__(self, what: str, total: int) -> None:
        self.bar: Any = None
        if not sys.stderr.isatty():
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from huntaze_cli.cli.output import stderr_console

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeRemainingColumn(),
            console=stderr_console(),
            transient=False,
        )
        self.task = self.bar.add_task(what, total=total, note="")
        self.bar.start()

    def update(self, done: int, note: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, note=note)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def status(
    ctx: typer.Context,
    campaign_id: Annotated[
        str | None, typer.Argument(help="A campaign id; omit to list recent campaigns.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many recent campaigns.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """One campaign in detail, or recent campaigns with queue depth per account.

    Example: huntaze status cmp_0193a1b2c3d4e5f6 --json | jq .counts
    """
    from huntaze_cli.services import campaigns

    st = state(ctx)
    if campaign_id:
        report = campaigns.report(st, campaign_id)
        emit(report, as_json=as_json, render=lambda console: _render_campaign(console, report))
        return
    overview = campaigns.overview(st, limit=limit)
    emit(overview, as_json=as_json, render=lambda console: _render_overview(console, overview))


def worker(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit (for cron).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Drain the delivery queue for every account until stopped (SIGINT/SIGTERM).

    Honours the per-account rate limit shared with every other worker, retries failed
    deliveries with backoff and moves them to dead letters after [queue] max_attempts.
    Stopping finishes deliveries in flight and returns the rest to the queue.

    Example: huntaze worker --once --json
    """
    from huntaze_cli.services import campaigns, costs

    st = state(ctx)
    instance = campaigns.delivery_worker(st)
    # Its own connections: the day's forecast is fitted in a thread beside the deliveries.
    forecasts = Services.with_config(st.config(), config_path=st.config_path)

    async def main() -> None:
        import asyncio

        _stop_on_signals(instance)
        if once:
            await _orphans(st)
            await instance.run(once=True)
            return
        finder = asyncio.create_task(_orphans_forever(st, instance))
        warmer = asyncio.create_task(costs.keep_forecast_warm(forecasts, lambda: instance.stopping))
        try:
            await instance.run()
        finally:
            finder.cancel()
            warmer.cancel()

    if not once:
        sys.stderr.write(f"worker {instance.worker_id} delivering; Ctrl-C to stop\n")
    try:
        _run(main())
    finally:
        forecasts.close()
    stats = instance.stats
    result = {
        "worker_id": instance.worker_id,
        "delivered": stats.delivered,
        "replayed": stats.replayed,
        "retried": stats.retried,
        "dead": stats.dead,
        "released": stats.released,
        "over_quota": stats.over_quota,
    }
    emit(
        result,
        as_json=as_json,
        render=lambda console: console.print(
            f"delivered {stats.delivered:,}, retried {stats.retried:,}, dead {stats.dead:,}"
        ),
    )


async def _orphans(st: Services) -> None:
    """Finish campaigns whose generation stopped (interrupted or crashed) without a lease."""
    from huntaze_cli.campaigns.offload import off_loop
    from huntaze_cli.errors import HuntazeError
    from huntaze_cli.services import campaigns

    if not await off_loop(st.store().orphaned, limit=1):
        return  # no orchestrator (nor provider SDK) for nothing
    orchestrator = st.orchestrator(warn=warn)
    try:
        for campaign_id in await campaigns.generate_orphans(st, orchestrator):
            warn(f"finished generating campaign {campaign_id}, left by a stopped process")
    except HuntazeError as exc:  # providers down, config: say so and keep delivering
        warn(f"could not finish an interrupted campaign: {exc.message}")
    finally:
        await orchestrator.aclose()


async def _orphans_forever(st: Services, worker: DeliveryWorker) -> None:
    import asyncio

    while not worker.stopping:
        await _orphans(st)
        await asyncio.sleep(st.config().campaigns.generation_lease_s / 2)


def requeue(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="The campaign whose dead letters to retry.")],
    as_json: JsonFlag = False,
) -> None:
    """Retry a campaign's dead messages, dead in delivery and dead in generation.

    Delivery dead letters go back in the queue with attempts reset; messages whose
    generation failed go back to pending, and `huntaze resume CAMPAIGN_ID` (or a
    running worker or serve) writes them again.

    Example: huntaze requeue cmp_0193a1b2c3d4e5f6 && huntaze worker --once
    """
    from huntaze_cli.services import campaigns

    report = campaigns.requeue(state(ctx), campaign_id)
    emit(
        report,
        as_json=as_json,
        render=lambda console: console.print(
            f"requeued {report.requeued:,} messages dead in delivery; "
            f"{report.regenerate:,} dead in generation are pending again"
            + (f" (`huntaze resume {campaign_id}` writes them)" if report.regenerate else "")
        ),
    )


# --- rendering ---------------------------------------------------------------------------


def _cost(cost_usd: float, requests: int | None, unpriced: int) -> str:
    """Money with its unpriced requests marked: never a bare $0 for calls with no price."""
    if unpriced and requests is not None and unpriced >= requests:
        return "unpriced"
    text = f"${cost_usd:,.6f}"
    return f"{text} + {unpriced:,} unpriced" if unpriced else text


def _render_campaign(console: Console, report: CampaignReport) -> None:
    counts = report.counts
    requests = sum(p.requests for p in report.providers.values())
    console.print(
        styled(
            (report.name, "bold"),
            f" {report.campaign_id}  account {report.account}  state ",
            (report.state, "bold"),
        )
    )
    # One row per figure: fits any terminal width, however many states there are.
    # A model with no known price was estimated at nothing: say so, never a bare $0.
    unknown = not report.estimated_cost_usd and report.unpriced_requests
    estimated = "unpriced" if unknown else f"${report.estimated_cost_usd:,.6f}"
    figures = [
        ("recipients", f"{report.recipients:,}"),
        *((name, f"{n:,}") for name, n in counts.items()),
        ("cost", _cost(report.cost_usd, requests, report.unpriced_requests)),
        ("estimated", estimated),
        ("eta", f"{report.eta_seconds:,.0f} s"),
    ]
    if report.paused_by:
        figures.append(("paused by budget", report.paused_by))
    console.print(table(None, ["", "value"], figures, right=["value"]))
    if report.providers:
        console.print(
            table(
                "Providers",
                ["provider", "requests", "cost"],
                [
                    [n, f"{p.requests:,}", _cost(p.cost_usd, p.requests, p.unpriced_requests)]
                    for n, p in report.providers.items()
                ],
                right=["requests", "cost"],
            )
        )


def _render_dry_run(console: Console, report: Any) -> None:
    console.print(
        styled(
            ("dry run", "bold"),
            f": {report.name} for {report.account}, {report.recipients:,} "
            f"recipients, model {report.model}; nothing was called, stored or sent",
        )
    )
    routing = report.routing
    console.print(
        f"routing: {routing['strategy']} ({routing['reason']}), order "
        f"{' -> '.join(routing['order'])}{'' if routing['fallback'] else ', no fallback'}"
    )

    def usd(value: float | None) -> str:
        return "unpriced" if value is None else f"${value:,.6f}"

    console.print(
        table(
            "Estimate",
            [
                "provider",
                "kind",
                "input tokens",
                "input max",
                "output max",
                "cost low",
                "cost high",
            ],
            [
                [
                    name,
                    p.kind,
                    f"{p.input_tokens:,}",
                    f"{p.input_tokens_max:,}",
                    f"{p.output_tokens_max:,}",
                    usd(p.cost_low_usd),
                    usd(p.cost_high_usd),
                ]
                for name, p in report.providers.items()
            ],
            right=["input tokens", "input max", "output max", "cost low", "cost high"],
        )
    )
    console.print(f"delivery ETA under the rate limit: {report.eta_seconds:,.0f} s")


def _render_overview(console: Console, overview: StatusOverview) -> None:
    console.print(
        table(
            "Recent campaigns",
            ["campaign", "name", "account", "state", "sent", "queued", "dead", "cost"],
            [
                [
                    c.campaign_id,
                    c.name,
                    c.account,
                    c.state,
                    f"{c.counts['sent']:,}",
                    f"{c.counts['queued']:,}",
                    f"{c.counts['dead']:,}",
                    _cost(
                        c.cost_usd,
                        sum(p.requests for p in c.providers.values()),
                        c.unpriced_requests,
                    ),
                ]
                for c in overview.campaigns
            ],
            right=["sent", "queued", "dead", "cost"],
            whole=["campaign"],
        )
    )
    console.print(
        table(
            "Queue per account",
            ["account", "queued", "in flight", "dead"],
            [[a, d.queued, d.in_flight, d.dead] for a, d in overview.queue.items()],
            right=["queued", "in flight", "dead"],
        )
    )


def register(app: typer.Typer) -> None:
    app.command("send-campaign")(send_campaign)
    app.command("status")(status)
    app.command("worker")(worker)
    app.command("requeue")(requeue)
    app.command("resume")(resume)
