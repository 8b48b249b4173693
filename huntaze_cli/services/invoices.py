"""Invoices: `costs invoice` (one tenant or all), GET /api/v2/costs/invoice, and the
monthly billing run `serve` does by itself.

``invoice`` builds one tenant's invoice (``costs.invoice``); ``write_invoices`` writes
every tenant's in the chosen formats into a directory, one file per tenant and format
(``<tenant>-<YYYY-MM>.<format>``), each written to a temporary file and renamed, so a
reader never sees half an invoice. ``bill_closed_month`` is the daemon's run: once the
month has closed, every tenant's invoice is written under the data dir
(``invoices/<YYYY-MM>/``) and announced on the alert channels, each step exactly once
across restarts and hosts by the alert store's atomic claims (the same claims that send
each alert once).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from huntaze_cli.errors import HuntazeError, NotFoundError, UsageError

if TYPE_CHECKING:
    from huntaze_cli.costs.invoice import Invoice
    from huntaze_cli.services import Services
    from huntaze_cli.storage.alerts import AlertKey, AlertStore

BILLING_RULE = "invoice"  # the alert store's name for the billing run's claims
FILES_CHANNEL = "files"


def invoice(
    services: Services,
    *,
    tenant: str | None,
    month: str,
    scope: str | None = None,
    now: datetime | None = None,
) -> Invoice:
    """``tenant``'s invoice for ``month`` (YYYY-MM or ``last``).

    ``scope`` is the tenant a tenant token speaks for: it may omit ``tenant`` and may
    not name another one (not found, as a missing one). A tenant must be configured
    (``[tenants.<name>]``): its ``markup_pct`` is part of the invoice.
    """
    from huntaze_cli.config.tenants import configured_tenant
    from huntaze_cli.costs.invoice import build_invoice, parse_month

    if scope is not None:
        if tenant is not None and tenant != scope:
            raise NotFoundError(f"no invoice for tenant {tenant!r}", field="tenant")
        tenant = scope
    if tenant is None:
        raise UsageError("<tenant> is required: name a tenant", field="tenant")
    config = services.config()
    found = configured_tenant(config.tenants, tenant)
    now = now or datetime.now(UTC)
    chosen = parse_month(month, now=now, tz=config.thresholds.tz)
    return build_invoice(
        services.ledger(),
        tenant=tenant,
        month=chosen,
        timezone=config.thresholds.timezone,
        markup_pct=found.markup_pct,
        now=now,
    )


def invoice_format(value: str) -> str:
    """``json``, ``csv`` or ``pdf``; anything else is a usage error on ``format``."""
    from huntaze_cli.costs.invoice import INVOICE_FORMATS

    if value not in INVOICE_FORMATS:
        raise UsageError(
            f"<format> {value!r}: choose json, csv or pdf", field="format", value=value
        )
    return value


def invoice_path(directory: Path, tenant: str, month: str, fmt: str) -> Path:
    return directory / f"{tenant}-{month}.{fmt}"


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_invoices(
    services: Services,
    *,
    month: str,
    formats: Sequence[str],
    directory: Path,
    now: datetime | None = None,
) -> list[Path]:
    """Every configured tenant's invoice for ``month``, one file per tenant and format."""
    from huntaze_cli.costs.invoice import render_invoice

    chosen = [invoice_format(fmt) for fmt in formats]
    tenants = sorted(services.config().tenants)
    if not tenants:
        raise UsageError("no tenant is configured; add [tenants.<name>] to the config")
    written: list[Path] = []
    for tenant in tenants:
        bill = invoice(services, tenant=tenant, month=month, now=now)
        for fmt in chosen:
            path = invoice_path(directory, tenant, bill.month, fmt)
            write_file(path, render_invoice(bill, fmt))
            written.append(path)
    return written


@dataclass
class BillingRun:
    """What one billing run did: invoices written and announced, errors to log."""

    month: str
    written: list[str] = field(default_factory=list)
    announced: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def bill_closed_month(services: Services, *, now: datetime | None = None) -> BillingRun:
    """Write and announce every tenant's invoice for the month that last closed, once.

    Per tenant, a claim on the alert store (rule ``invoice``, scope ``tenant=<name>``,
    the month, channel ``files``) lets exactly one run write the files; then one claim
    per alert channel lets exactly one run announce it there. A failed step releases its
    claim, so the next run (serve runs this every hour) tries again.
    """
    from huntaze_cli.costs.invoice import INVOICE_FORMATS, parse_month, render_invoice
    from huntaze_cli.storage.alerts import AlertKey

    config = services.config()
    now = now or datetime.now(UTC)
    month = parse_month("last", now=now, tz=config.thresholds.tz)
    run = BillingRun(month)
    store = services.alert_store()
    owner = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(3)}"
    directory = config.data_dir / "invoices" / month
    for tenant in sorted(config.tenants):
        scope = f"tenant={tenant}"
        files = AlertKey(BILLING_RULE, scope, month, 100, FILES_CHANNEL)
        if store.claim(files, owner=owner, now=now):
            try:
                bill = invoice(services, tenant=tenant, month=month, now=now)
                for fmt in INVOICE_FORMATS:
                    path = invoice_path(directory, tenant, month, fmt)
                    write_file(path, render_invoice(bill, fmt))
                    run.written.append(str(path))
            except HuntazeError as exc:
                store.finish(files, owner=owner, now=now, error=exc.message)
                run.errors.append(f"invoice {tenant} {month}: {exc.message}")
                continue
            store.finish(files, owner=owner, now=now, error=None)
        if not _files_done(store, files):
            continue  # another run is writing them; it announces them too, or we do later
        _announce(services, tenant, month, owner=owner, now=now, run=run)
    return run


def _files_done(store: AlertStore, key: AlertKey) -> bool:
    """Whether some run has finished writing the files of ``key``."""
    claims = store.claims(key.rule, key.scope, key.period)
    return any(c.key == key and c.status == "sent" for c in claims)


def _announce(
    services: Services,
    tenant: str,
    month: str,
    *,
    owner: str,
    now: datetime,
    run: BillingRun,
) -> None:
    """Tell each alert channel (once per channel) that ``tenant``'s invoice is written."""
    from huntaze_cli.alerts.channels import SENDERS
    from huntaze_cli.alerts.notice import Alert, Notice
    from huntaze_cli.costs.invoice import month_bounds
    from huntaze_cli.storage.alerts import AlertKey

    config = services.config()
    store = services.alert_store()
    channels = list(config.alerts.channels)
    if not channels:
        return
    bill = invoice(services, tenant=tenant, month=month, now=now)
    start, _ = month_bounds(month, config.thresholds.tz)
    alert = Alert(
        alert_id=f"inv_{tenant}_{month}",
        rule=BILLING_RULE,
        kind="invoice",
        scope={"tenant": tenant},
        period="month",
        period_label=month,
        period_start=start,
        level_pct=100,
        limit_nano=bill.total_nano,
        observed_nano=bill.total_nano,
        created_at=now,
        contributors=[(f"{line.provider} {line.model}", line.cost_nano) for line in bill.lines],
        unpriced_requests=bill.unpriced_requests,
    )
    notice = Notice([alert], timezone=bill.timezone)
    for channel in channels:
        key = AlertKey(BILLING_RULE, f"tenant={tenant}", month, 100, channel)
        if not store.claim(key, owner=owner, now=now):
            continue
        try:
            SENDERS[channel](config.alerts, notice)
        except HuntazeError as exc:
            store.finish(key, owner=owner, now=now, error=exc.message)
            run.errors.append(f"invoice {tenant} {month} on {channel}: {exc.message}")
            continue
        store.finish(key, owner=owner, now=now, error=None)
        run.announced.append(f"{tenant} {month} {channel}")
