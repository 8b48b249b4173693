"""Tenants' daily delivery quotas (``[tenants.<name>] quota_messages_day``) for the worker.

Each delivery of a tenant's message counts one against the tenant's quota for the day
(in ``[thresholds] timezone``), in the rate limiter's store (``RateLimiter.take_quota``):
the check and the count are one atomic step across every worker and host sharing it,
so a tenant never gets more than its quota in a day. A message over the quota is not
dropped: the worker puts it back in the queue, due when the tenant's day turns.

The unit is counted once the compliance slot is granted, just before the sink is
called, like the slot itself: a delivery that then fails and is retried counts again
(the quota errs on the side of sending less, never more).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from huntaze_cli.costs.periods import day_period

if TYPE_CHECKING:
    from huntaze_cli.config import Config
    from huntaze_cli.storage.campaigns import CampaignStore
    from huntaze_cli.storage.ratelimit import RateLimiter

KEEP = timedelta(days=2)  # a day's counter is kept this long after the day ends


class DeliveryQuotas:
    """Decides, per message, whether its tenant may have one more delivery today."""

    def __init__(self, config: Config, limiter: RateLimiter, store: CampaignStore) -> None:
        self._limits = {
            name: tenant.quota_messages_day
            for name, tenant in config.tenants.items()
            if tenant.quota_messages_day is not None
        }
        self._tz = config.thresholds.tz
        self._limiter = limiter
        self._store = store
        self._tenant_of: dict[str, str | None] = {}

    @property
    def active(self) -> bool:
        """Whether any tenant has a daily quota (else the worker never asks)."""
        return bool(self._limits)

    def tenant(self, campaign_id: str) -> str | None:
        """The campaign's tenant (looked up once per campaign), None if unknown."""
        if campaign_id not in self._tenant_of:
            found = self._store.get(campaign_id)
            self._tenant_of[campaign_id] = found.tenant if found is not None else None
        return self._tenant_of[campaign_id]

    def take(self, campaign_id: str, *, now: datetime | None = None) -> float:
        """Count one delivery of ``campaign_id``'s tenant: 0.0 when it may go now, else
        the seconds until its day turns (nothing counted)."""
        tenant = self.tenant(campaign_id)
        limit = self._limits.get(tenant) if tenant is not None else None
        if limit is None or tenant is None:
            return 0.0
        now = now or datetime.now(UTC)
        day = day_period(now, self._tz)
        key = f"tenant-messages:{tenant}"
        if self._limiter.take_quota(key, day.label, limit, expires_at=day.end + KEEP):
            return 0.0
        return max((day.end - now).total_seconds(), 0.001)
