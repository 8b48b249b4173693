"""The campaign use case: idempotency keys hold when several processes race to start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from huntaze_cli.campaigns.file import CampaignSpec, LoadedCampaign
from huntaze_cli.services import Services, campaigns
from huntaze_cli.storage.sqlite.campaigns import SQLiteCampaignStore as CampaignStore
from tests.cli.test_campaigns_cli import write_campaign


def _spec(count: int) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "name": "Race",
            "account": "creator_r",
            "prompt": "Hi {name}",
            "recipients": [{"id": f"fan_{n}", "name": f"N{n}"} for n in range(count)],
        }
    )


class _Signalling(list[Any]):
    """A recipient list that says when someone starts reading it."""

    def __init__(self, items: list[Any], started: threading.Event) -> None:
        super().__init__(items)
        self.started = started

    def __iter__(self) -> Any:
        self.started.set()
        return super().__iter__()


def test_a_start_that_loses_the_insert_race_resumes_the_winner() -> None:
    services = Services()
    config = services.config()
    winner_store = CampaignStore(config.campaigns_path)
    inserting, release = threading.Event(), threading.Event()

    def held_recipients() -> Any:
        yield "fan_0", {"id": "fan_0", "name": "N0"}
        inserting.set()
        release.wait(30)  # the winner's transaction stays open (key row not committed)

    def win() -> None:
        winner_store.create(
            campaign_id="cmp_winner",
            idempotency_key="race-key",
            spec={
                "name": "Race",
                "account": "creator_r",
                "tenant": "default",
                "model": "gpt-4o-mini",
                "provider": "auto",
                "prompt": "Hi {name}",
            },
            recipients=held_recipients(),
            estimated_cost_nano=0,
        )

    winner = threading.Thread(target=win)
    winner.start()
    assert inserting.wait(30)
    # The loser looks the key up (nothing committed yet), then estimates: reading its
    # recipients shows it is past the look-up, so its insert must meet the winner's key.
    read = threading.Event()
    loaded = LoadedCampaign(_spec(3), Path.cwd(), "body")
    loaded.spec.recipients = _Signalling(list(loaded.spec.recipients or []), read)
    result: list[Any] = []
    loser = threading.Thread(
        target=lambda: result.append(campaigns.start(services, loaded, idempotency_key="race-key"))
    )
    loser.start()
    assert read.wait(30)
    release.set()
    winner.join(30)
    loser.join(30)
    started = result[0]
    assert started.resumed is True
    assert started.campaign.id == "cmp_winner"
    assert [c.id for c in services.store().recent(10)] == ["cmp_winner"]
    services.close()
    winner_store.close()


@pytest.mark.slow
def test_parallel_no_wait_sends_with_one_key_all_succeed_on_one_campaign(
    tmp_path: Path,
) -> None:
    path = write_campaign(tmp_path, 3000)  # a long insert: the starts overlap
    command = [
        sys.executable, "-m", "huntaze_cli", "send-campaign", str(path),
        "--no-wait", "--idempotency-key", "K", "--json",
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        text = err.decode().lower()
        assert "error" not in text and "move it aside" not in text and "delet" not in text
    reports = [json.loads(out) for out, _ in outputs]
    assert len({r["campaign_id"] for r in reports}) == 1
    assert sorted(r["resumed"] for r in reports) == [False, True, True, True]
    services = Services()
    assert len(services.store().recent(10)) == 1
    services.close()
