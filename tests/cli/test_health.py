"""`huntaze health`: exit codes 0/3/1, shared circuit state, live probes, no secrets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from huntaze_testing.fake_llm import FakeLLM
from tests.helpers import run

OPENAI_KEY = "sk-health-openai-1234567890"
AZURE_KEY = "az-health-azure-0987654321"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLM]:
    with FakeLLM(openai_keys=[OPENAI_KEY], azure_keys=[AZURE_KEY]) as srv:
        yield srv


@pytest.fixture
def fake(server: FakeLLM) -> FakeLLM:
    server.reset()
    return server


def two_providers(fake: FakeLLM, tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [routing]
            order = ["azure", "openai"]
            circuit_failure_threshold = 2
            circuit_cooldown_s = 300

            [providers.azure]
            kind = "azure"
            endpoint = "{fake.azure_endpoint}"

            [providers.openai]
            kind = "openai"
            base_url = "{fake.openai_base_url}"
            """
        )
    )
    return path


def keys(**extra: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": OPENAI_KEY, "AZURE_OPENAI_API_KEY": AZURE_KEY, **extra}


def test_healthy_on_the_offline_defaults() -> None:
    result = run("health", "--json")
    assert result.exit_code == 0
    data = result.json()
    assert data["status"] == "healthy"
    assert data["checks"]["ledger"]["status"] == "ok"
    assert data["providers"]["simulated"]["status"] == "ok"


def test_a_missing_key_is_degraded(fake: FakeLLM, tmp_path: Path) -> None:
    config = two_providers(fake, tmp_path)
    result = run("--config", str(config), "health", "--json", env={"OPENAI_API_KEY": OPENAI_KEY})
    assert result.exit_code == 3
    data = result.json()
    assert data["status"] == "degraded"
    assert data["providers"]["azure"]["detail"] == (
        "environment variable AZURE_OPENAI_API_KEY is not set"
    )
    assert data["providers"]["openai"]["status"] == "ok"


def test_no_provider_serving_is_unhealthy(fake: FakeLLM, tmp_path: Path) -> None:
    result = run("--config", str(two_providers(fake, tmp_path)), "health")
    assert result.exit_code == 1
    assert "unhealthy" in result.stdout


def test_unreachable_ledger_is_unhealthy() -> None:
    env = {
        "HUNTAZE_LEDGER__BACKEND": "dynamodb",
        "HUNTAZE_LEDGER__ENDPOINT_URL": "http://127.0.0.1:9",
    }
    result = run("health", "--json", env=env)
    assert result.exit_code == 1
    data = result.json()
    assert data["checks"]["ledger"]["status"] == "fail"
    assert "127.0.0.1:9" in data["checks"]["ledger"]["detail"]


def test_deep_probe_finds_a_failing_provider(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_mix("azure", {"500": 1.0})
    result = run(
        "--config", str(two_providers(fake, tmp_path)), "health", "--deep", "--json", env=keys()
    )
    assert result.exit_code == 3
    data = result.json()
    assert data["providers"]["azure"]["status"] == "fail"
    assert data["providers"]["azure"]["detail"].startswith("live probe failed: server_error")
    assert data["providers"]["openai"]["detail"] == "live probe answered"
    assert data["providers"]["openai"]["probe_ms"] > 0
    # A failed first call ends the probe; a good one is followed by the timed call.
    assert fake.count("azure") == 1 and fake.count("openai") == 2
    assert OPENAI_KEY not in result.stdout + result.stderr
    assert AZURE_KEY not in result.stdout + result.stderr


def test_health_shows_the_circuit_another_process_opened(
    fake: FakeLLM, tmp_path: Path, isolated_dirs: Path
) -> None:
    """A separate process (as a daemon would) opens azure's circuit; health sees it."""
    config = two_providers(fake, tmp_path)
    fake.set_mix("azure", {"503": 1.0})
    script = textwrap.dedent(
        f"""
        import asyncio
        from huntaze_cli.config import load_config
        from huntaze_cli.llm.types import GenerationRequest, Message
        from huntaze_cli.llm.orchestrator import Orchestrator

        async def main():
            config = load_config({str(config)!r})
            orch = Orchestrator.from_config(config, ledger=None)
            for n in range(3):
                await orch.generate(GenerationRequest(
                    request_id=f"r{{n}}", model="gpt-4o-mini",
                    messages=[Message("user", "hello there")]))
            await orch.aclose()

        asyncio.run(main())
        """
    )
    import os

    env = {**os.environ, **keys()}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    result = run("--config", str(config), "health", "--json", env=keys())
    assert result.exit_code == 3
    azure = result.json()["providers"]["azure"]
    assert azure["circuit"] == "open" and azure["status"] == "fail"
    assert azure["last_error_kind"] == "server_error"
    assert azure["consecutive_failures"] >= 2
    assert "circuit open" in azure["detail"]


def test_deep_probe_times_a_warm_round_trip(fake: FakeLLM, tmp_path: Path) -> None:
    fake.set_latency(150)
    result = run(
        "--config", str(two_providers(fake, tmp_path)), "health", "--deep", "--json", env=keys()
    )
    assert result.exit_code == 0, result.stderr
    for name in ("azure", "openai"):
        # A warm-up call (client set-up, imports, connecting), then the timed one.
        assert fake.count(name) == 2
        assert result.json()["providers"][name]["probe_ms"] >= 150
