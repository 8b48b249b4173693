"""Start `huntaze serve` for a test: in a thread (most tests) or as a real process.

Both use uvicorn on a free loopback port and a real HTTP client (httpx); the data dir is
the test's tmp_path (tests/conftest.py's isolated_dirs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from huntaze_cli.config import load_config
from huntaze_cli.server.daemon import Daemon

# One delivery window per second and quick retries keep delivery tests short.
FAST = {"HUNTAZE_RATE_LIMIT__PER_SECONDS": "1", "HUNTAZE_QUEUE__BACKOFF__BASE_S": "0.05"}


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(every)


def campaign(count: int = 3, *, account: str = "creator_t", **extra: Any) -> dict[str, Any]:
    """A valid campaign body with ``count`` inline recipients."""
    return {
        "name": "HTTP campaign",
        "account": account,
        "tenant": "agency_t",
        "prompt": "Write a thank-you to {name}, who loves {interest}.",
        "max_tokens": 40,
        "recipients": [
            {"id": f"fan_{n}", "name": f"Name {n}", "interest": f"topic {n % 5}"}
            for n in range(count)
        ],
        **extra,
    }


def outbox() -> list[dict[str, Any]]:
    path = load_config().outbox_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class Served:
    """A daemon running in a thread of the test process."""

    daemon: Daemon
    thread: threading.Thread
    url: str
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30, **kwargs)
        self.clients.append(client)
        return client


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Served]]:
    """``serve(worker=True, env={...})`` starts a daemon in a thread; stopped at teardown."""
    running: list[Served] = []

    def start(*, worker: bool = True, env: dict[str, str] | None = None) -> Served:
        for name, value in {**FAST, **(env or {})}.items():
            monkeypatch.setenv(name, value)
        daemon = Daemon(load_config(), host="127.0.0.1", port=0, worker=worker, log_level="warning")
        port = daemon.prepare()
        thread = threading.Thread(target=daemon.run, name="huntaze-serve", daemon=True)
        thread.start()
        server = daemon.server
        assert server is not None
        wait_for(lambda: server.started or not thread.is_alive(), timeout=15)
        assert thread.is_alive(), "the daemon thread died during start-up"
        served = Served(daemon, thread, f"http://127.0.0.1:{port}")
        running.append(served)
        return served

    yield start
    for served in running:
        for client in served.clients:
            client.close()
        served.daemon.stop()
        served.thread.join(30)
        assert not served.thread.is_alive(), "the daemon did not stop"


@dataclass
class Process:
    """A `huntaze serve` subprocess; its stderr (JSON log lines) goes to ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"raw": line})
        return out

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """``spawn(*args, env={...})`` runs `huntaze serve --port 0 ARGS` and waits until it
    answers; killed at teardown if a test left it running."""
    started: list[Process] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Process:
        log = tmp_path / f"serve-{len(started)}.log"
        environ = {**os.environ, **FAST, **(env or {})}
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "huntaze_cli", "serve", "--port", "0", *args],
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=fh,
            )
        process = Process(proc, log)
        started.append(process)

        def listening() -> str | None:
            assert proc.poll() is None, f"serve exited early:\n{log.read_text()}"
            for line in process.lines():
                if line.get("msg") == "listening":
                    return str(line["url"])
            return None

        process.url = wait_for(listening, timeout=30)

        def answers() -> bool:
            try:
                return httpx.get(process.url + "/openapi.json", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, timeout=30)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(10)
