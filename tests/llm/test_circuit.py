"""The circuit breaker on a clock the test moves: no waiting out cooldowns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from huntaze_cli.clock import ManualClock
from huntaze_cli.llm.circuit import CircuitBreaker
from huntaze_cli.storage.sqlite.providers import SQLiteProviderStateStore as StateStore

START = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


def test_opens_after_the_threshold_and_half_opens_after_the_cooldown(tmp_path: Path) -> None:
    clock = ManualClock(START)
    store = StateStore(tmp_path / "providers.db")
    changes: list[str] = []
    breaker = CircuitBreaker(
        "azure",
        threshold=2,
        cooldown_s=30.0,
        store=store,
        clock=clock,
        on_change=lambda _, state: changes.append(state),
    )
    breaker.failure("server_error", "503")
    assert breaker.state == "closed" and breaker.allow()
    breaker.failure("server_error", "503 again")
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.ready_in() == 30.0
    saved = store.load()["azure"]
    assert saved.state == "open" and saved.opened_at == START
    assert saved.last_error == "503 again" and saved.consecutive_failures == 2

    clock.advance(29.5)
    assert not breaker.allow() and breaker.ready_in() == 0.5
    clock.advance(0.5)
    assert breaker.allow()  # the one probe
    assert breaker.state == "half_open" and not breaker.allow()
    breaker.failure("timeout", "no answer")  # a failed probe opens it again at once
    assert breaker.state == "open" and breaker.ready_in() == 30.0

    clock.advance(30)
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()
    assert changes == ["open", "half_open", "open", "half_open", "closed"]
    closed = store.load()["azure"]
    assert closed.state == "closed" and closed.last_ok_at == START + timedelta(seconds=60)
    store.close()


def test_auth_failure_opens_at_once_and_marks_misconfigured() -> None:
    breaker = CircuitBreaker("openai", threshold=5, cooldown_s=10, clock=ManualClock(START))
    breaker.failure("auth", "401", misconfigured=True)
    assert breaker.state == "open" and breaker.misconfigured
    assert breaker.snapshot().opened_at == START
