"""Budgets: hard spending limits held exactly, across processes and hosts.

Every provider attempt reserves its worst-case cost against each budget covering it
before the call and settles the real cost after (``gate.BudgetGate``, which the
orchestrator calls through ``llm.budget_gate``); the reservation store
(storage/budgets.py) decides atomically. ``rules.budgets_in_force`` is the one list of
budgets (``[[budgets.rules]]`` plus one per tenant ``quota_usd_month``);
``report.budget_list`` is what `budgets list` and the API show.
"""

from __future__ import annotations

from huntaze_cli.budgets.rules import Limit, budgets_in_force, tenant_quota_budget

__all__ = ["Limit", "budgets_in_force", "tenant_quota_budget"]
