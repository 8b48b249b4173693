"""Invoices: `costs invoice` (one tenant or all), GET /api/v2/costs/invoice, and the
monthly billing run `serve` does by itself.

``invoice`` builds one tenant's invoice (``costs.invoice``); ``write_invoices`` writes
every tenant's in the chosen formats, one file per tenant and format
(``<tenant>-<YYYY-MM>.<format>``), to the ``destination``: a directory (each file written
to a temporary file and renamed, so a reader never sees half an invoice) or, when
``[invoices] s3_bucket`` is set, S3 objects ``<s3_prefix><YYYY-MM>/<tenant>-<YYYY-MM>.<format>``
(a PutObject is atomic). ``bill_closed_month`` is the daemon's run: once the month has
closed, every tenant's invoice is written there (under the data dir, ``invoices/<YYYY-MM>/``,
without a bucket) and announced on the alert channels, each step exactly once across
restarts and hosts by the alert store's atomic claims (the same claims that send each
alert once).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from huntaze_cli.errors import HuntazeError, NotFoundError, UsageError

if TYPE_CHECKING:
    from huntaze_cli.costs.invoice import Invoice
    from huntaze_cli.services import Services
    from huntaze_cli.storage.alerts import AlertKey, AlertStore
    from huntaze_cli.storage.aws.s3_objects import S3Objects

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


CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "pdf": "application/pdf"}


class Destination(Protocol):
    """Where a month's invoices go: ``write`` returns the file's path or ``s3://`` URL."""

    def write(self, tenant: str, month: str, fmt: str, data: bytes) -> str: ...


@dataclass
class Directory:
    """Invoice files in a local directory, written whole (temporary file and rename)."""

    path: Path

    def write(self, tenant: str, month: str, fmt: str, data: bytes) -> str:
        target = invoice_path(self.path, tenant, month, fmt)
        write_file(target, data)
        return str(target)


@dataclass
class Bucket:
    """Invoice objects in S3, ``<prefix><month>/<tenant>-<month>.<format>``."""

    objects: S3Objects

    def write(self, tenant: str, month: str, fmt: str, data: bytes) -> str:
        name = f"{month}/{tenant}-{month}.{fmt}"
        return self.objects.put(name, data, content_type=CONTENT_TYPES[fmt])


def destination(services: Services, month: str, directory: Path | None = None) -> Destination:
    """``directory`` when given; else S3 when ``[invoices] s3_bucket`` is set; else the
    data dir's ``invoices/<month>/``."""
    if directory is not None:
        return Directory(directory)
    config = services.config()
    where = config.invoices
    if where.s3_bucket:
        from huntaze_cli.storage.aws.s3_objects import S3Objects

        objects = S3Objects(
            where.s3_bucket,
            prefix=where.s3_prefix,
            region=where.region,
            endpoint_url=where.endpoint_url,
        )
        return Bucket(objects)
    return Directory(config.data_dir / "invoices" / month)


def write_invoices(
    services: Services,
    *,
    month: str,
    formats: Sequence[str],
    directory: Path | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Every configured tenant's invoice for ``month`` (YYYY-MM), one file per tenant and
    format, to ``destination(services, month, directory)``; where each went."""
    from huntaze_cli.costs.invoice import render_invoice

    chosen = [invoice_format(fmt) for fmt in formats]
    tenants = sorted(services.config().tenants)
    if not tenants:
        raise UsageError("no tenant is configured; add [tenants.<name>] to the config")
    target = destination(services, month, directory)
    written: list[str] = []
    for tenant in tenants:
        bill = invoice(services, tenant=tenant, month=month, now=now)
        for fmt in chosen:
            written.append(target.write(tenant, bill.month, fmt, render_invoice(bill, fmt)))
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
    target = destination(services, month)
    for tenant in sorted(config.tenants):
        scope = f"tenant={tenant}"
        files = AlertKey(BILLING_RULE, scope, month, 100, FILES_CHANNEL)
        if store.claim(files, owner=owner, now=now):
            try:
                bill = invoice(services, tenant=tenant, month=month, now=now)
                for fmt in INVOICE_FORMATS:
                    data = render_invoice(bill, fmt)
                    run.written.append(target.write(tenant, month, fmt, data))
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
