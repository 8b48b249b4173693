"""A campaign's generation lease: one generator at a time, orphans found when it lapses."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore as CampaignStore

SPEC = {
    "name": "n",
    "account": "a",
    "tenant": "default",
    "model": "m",
    "provider": "auto",
    "prompt": "p",
}


def _store(tmp_path: Path) -> CampaignStore:
    return CampaignStore(tmp_path / "campaigns.db")


def _create(store: CampaignStore, cid: str, owner: str | None) -> None:
    store.create(
        campaign_id=cid,
        idempotency_key=None,
        spec=SPEC,
        recipients=[("f1", {}), ("f2", {})],
        estimated_cost_nano=0,
        generation_owner=owner,
        lease_s=60,
    )


def _expire(path: Path, cid: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE generation_leases SET until = '2000-01-01T00:00:00+00:00' "
            "WHERE campaign_id = ?",
            (cid,),
        )


def test_one_owner_at_a_time_and_a_lapsed_lease_is_an_orphan(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _create(store, "cmp_a", "host:1:a")
    _create(store, "cmp_b", None)  # created before leases existed, or its creator died
    assert store.orphaned() == ["cmp_b"]
    assert not store.claim_generation("cmp_a", "host:2:b", lease_s=60)
    assert store.claim_generation("cmp_a", "host:1:a", lease_s=60)  # renewal
    assert store.generation_owner("cmp_a") == "host:1:a"
    _expire(tmp_path / "campaigns.db", "cmp_a")
    assert store.orphaned() == ["cmp_a", "cmp_b"]
    assert store.claim_generation("cmp_a", "host:2:b", lease_s=60)  # taken over
    assert store.orphaned() == ["cmp_b"]
    store.release_generation("cmp_a", "host:1:a")  # not the owner any more: no effect
    assert store.generation_owner("cmp_a") == "host:2:b"
    store.set_state("cmp_b", "delivering")  # done generating: not an orphan
    assert store.orphaned() == []  # cmp_a has a live lease, cmp_b is past generating
    store.close()
