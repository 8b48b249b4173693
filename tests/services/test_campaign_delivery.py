"""The delivery use case: ``campaigns.deliver`` runs one campaign to completion.

What `send-campaign`'s foreground runs (the CLI adds only the progress bar and signal
handling), here over the container's real SQLite store, queue, limiter and outbox.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from huntaze_cli.config import load_config
from huntaze_cli.errors import NotFoundError
from huntaze_cli.services import Services, campaigns
from huntaze_cli.storage.queue import QueueItem, message_key

SPEC: dict[str, Any] = {
    "name": "spring",
    "account": "creator_1",
    "tenant": "agency_a",
    "model": "gpt-4o-mini",
    "provider": "auto",
    "prompt": "Hi {name}",
}


def queued_campaign(services: Services, count: int) -> None:
    """cmp_1, generated and queued as generation leaves it, nothing delivered yet."""
    store, queue = services.store(), services.queue()
    fans = [f"fan_{n}" for n in range(count)]
    store.create(
        campaign_id="cmp_1",
        idempotency_key=None,
        spec=SPEC,
        recipients=[(fan, {"name": fan}) for fan in fans],
        estimated_cost_nano=0,
    )
    store.save_generated("cmp_1", [(fan, f"Hi {fan}", "azure") for fan in fans])
    queue.enqueue(
        [
            QueueItem(message_key("cmp_1", fan), "cmp_1", "creator_1", fan, f"Hi {fan}")
            for fan in fans
        ]
    )
    store.mark_queued("cmp_1", fans)
    store.set_state("cmp_1", "delivering")


def test_deliver_reports_progress_and_completes_the_campaign() -> None:
    services = Services.with_config(load_config())
    try:
        queued_campaign(services, 3)
        starts: list[tuple[int, int]] = []
        progress: list[tuple[int, int, int]] = []
        workers: list[Any] = []
        stopped = asyncio.run(
            campaigns.deliver(
                services,
                "cmp_1",
                on_start=lambda total, sent: starts.append((total, sent)),
                on_progress=lambda *counts: progress.append(counts),
                on_worker=workers.append,
            )
        )
        assert stopped is False
        assert starts == [(3, 0)]
        assert progress == [(1, 0, 0), (2, 0, 0), (3, 0, 0)]
        assert len(workers) == 1 and workers[0].account == "creator_1"
        campaign = services.store().get("cmp_1")
        assert campaign is not None and campaign.state == "completed"
        lines = services.config().outbox_path.read_text().splitlines()
        assert sorted(json.loads(line)["recipient_id"] for line in lines) == [
            "fan_0",
            "fan_1",
            "fan_2",
        ]
    finally:
        services.close()


def test_deliver_names_a_missing_campaign() -> None:
    services = Services.with_config(load_config())
    try:
        with pytest.raises(NotFoundError, match="cmp_nope"):
            asyncio.run(
                campaigns.deliver(
                    services,
                    "cmp_nope",
                    on_start=lambda *_: None,
                    on_progress=lambda *_: None,
                    on_worker=lambda _: None,
                )
            )
    finally:
        services.close()
