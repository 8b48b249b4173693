"""One tenant's share of the ledger: every report filtered to a tenant by the same view.

``TenantLedger`` answers the read side of the ``Ledger`` protocol with only the events
of one tenant, so a report function (breakdown, stats, forecast, anomalies, optimize,
experiments, roi) filters by tenant without knowing it: the services hand it this view
instead of the ledger when a tenant token asks (``services.tenancy.ledger_for``).

Where each figure comes from:

* daily rollups carry the tenant: filtered as they are read;
* quarter-hour figures (stats, hourly series) come from the scope rollups, which carry
  the tenant too, grouped by slot and provider. Stats read ``slot_groups``, answered by
  ``scope_slot_groups``: the scope rollups keep the same latency histogram as the
  quarter-hour rollups, so a tenant's p50/p95 latency is its own attempts', computed by
  the same ``percentile`` as the global figures. ``mismatches`` is not kept per scope
  (a tenant's ``model_mismatches`` reads 0). Scope rollups are kept
  ``SCOPE_RETENTION_DAYS`` (62), longer than any period stats read;
* usage rollups (recommendations, experiments, ROI) carry the campaign, not the tenant:
  the view keeps the campaigns the daily rollups of the same days attribute to the
  tenant. Attempts made outside a campaign (the /v1 gateway) have no usage rollup of
  the tenant's own and stay out of those three reports;
* raw events: filtered as they stream.

The view is read-only: ``record`` and ``prune`` refuse, so nothing writes through it, and
``close`` leaves the ledger open (its owner closes it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime

from huntaze_cli.models import CostEvent
from huntaze_cli.storage.ledger import (
    Counters,
    DailyRollup,
    Ledger,
    RecordResult,
    SlotCost,
    SlotRollup,
    UsageRollup,
    group_usage,
)


class TenantLedger:
    """The read side of ``ledger`` restricted to the events of ``tenant``."""

    def __init__(self, ledger: Ledger, tenant: str) -> None:
        self._ledger = ledger
        self.tenant = tenant
        self.retention_days = ledger.retention_days

    # --- daily rollups -------------------------------------------------------------------

    def daily(self, since: date, until: date) -> list[DailyRollup]:
        return [row for row in self._ledger.daily(since, until) if row.tenant == self.tenant]

    def daily_groups(
        self, since: date, until: date, group_by: Sequence[str]
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        # Grouped with the tenant as the first key, so the backend still sums in SQL.
        rows = self._ledger.daily_groups(since, until, ["tenant", *group_by])
        return [(key[1:], counters) for key, counters in rows if key[0] == self.tenant]

    # --- quarter-hour figures, from the scope rollups ------------------------------------

    def _slot_rows(self, since: datetime, until: datetime) -> list[SlotRollup]:
        rows = self._ledger.scope_groups(
            since, until, ["slot", "provider"], where={"tenant": self.tenant}
        )
        out = [SlotRollup(int(str(key[0])), str(key[1]), counters) for key, counters in rows]
        out.sort(key=lambda row: (row.slot, row.provider))
        return out

    def slots(self, since: datetime, until: datetime) -> list[SlotRollup]:
        return self._slot_rows(since, until)

    def slot_costs(self, since: datetime, until: datetime) -> list[SlotCost]:
        rows = self._slot_rows(since, until)
        return [(row.slot, row.provider, row.counters.cost_nano) for row in rows]

    def slot_groups(
        self, ranges: Sequence[tuple[datetime, datetime]]
    ) -> list[dict[str, SlotRollup]]:
        return self._ledger.scope_slot_groups(ranges, {"tenant": self.tenant})

    def scope_slot_groups(
        self, ranges: Sequence[tuple[datetime, datetime]], where: Mapping[str, str]
    ) -> list[dict[str, SlotRollup]]:
        if where.get("tenant", self.tenant) != self.tenant:
            return [{} for _ in ranges]
        return self._ledger.scope_slot_groups(ranges, {**where, "tenant": self.tenant})

    def scope_groups(
        self,
        since: datetime,
        until: datetime,
        group_by: Sequence[str],
        where: Mapping[str, str] | None = None,
    ) -> list[tuple[tuple[str | None, ...], Counters]]:
        wanted = dict(where or {})
        if wanted.get("tenant", self.tenant) != self.tenant:
            return []
        wanted["tenant"] = self.tenant
        return self._ledger.scope_groups(since, until, group_by, where=wanted)

    # --- usage rollups, by the tenant's campaigns ----------------------------------------

    def _campaigns(self, since: date, until: date) -> set[str]:
        rows = self._ledger.daily_groups(since, until, ["tenant", "campaign"])
        return {str(key[1]) for key, _ in rows if key[0] == self.tenant and key[1]}

    def usage(
        self, since: date, until: date, *, experiment: str | None = None
    ) -> list[UsageRollup]:
        mine = self._campaigns(since, until)
        rows = self._ledger.usage(since, until, experiment=experiment)
        return [row for row in rows if row.campaign_id in mine]

    def usage_groups(
        self,
        since: date,
        until: date,
        group_by: Sequence[str],
        *,
        experiment: str | None = None,
    ) -> list[UsageRollup]:
        keys = list(dict.fromkeys([*group_by, "campaign"]))
        mine = self._campaigns(since, until)
        rows = self._ledger.usage_groups(since, until, keys, experiment=experiment)
        return group_usage([row for row in rows if row.campaign_id in mine], group_by)

    # --- raw events ----------------------------------------------------------------------

    def events(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[CostEvent]:
        return (e for e in self._ledger.events(since, until) if e.tenant == self.tenant)

    # --- the rest of the protocol -------------------------------------------------------

    def record(self, events: Sequence[CostEvent]) -> RecordResult:
        raise TypeError("a tenant's view of the ledger is read-only")

    def prune(self, now: datetime) -> None:
        raise TypeError("a tenant's view of the ledger is read-only")

    def check(self) -> None:
        self._ledger.check()

    def close(self) -> None:
        """Nothing to close: the ledger belongs to whoever made this view."""
