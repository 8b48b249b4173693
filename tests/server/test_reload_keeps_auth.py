"""A config reload (SIGHUP) never weakens authentication or the body limit of a running daemon."""

from __future__ import annotations

from collections.abc import Callable

from huntaze_cli.config import default_config_path
from tests.server.conftest import Served

STATS = "/api/v2/costs/stats"


def test_reload_keeps_token_and_body_limit_until_restart(serve: Callable[..., Served]) -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[server]\ntoken_env = "HUNTAZE_TEST_TOKEN"\nmax_body_bytes = 2048\n')
    served = serve(worker=False, env={"HUNTAZE_TEST_TOKEN": "s3cret-token"})
    client = served.client()
    auth = {"Authorization": "Bearer s3cret-token"}
    assert client.get(STATS).status_code == 401
    # The operator removes the token and raises the limit, then sends SIGHUP.
    path.write_text("[server]\nmax_body_bytes = 10485760\n")
    assert served.daemon.runtime.reload()
    assert client.get(STATS).status_code == 401
    assert client.get(STATS, headers=auth).status_code == 200
    big = client.post("/api/v2/campaigns/hybrid", content=b"x" * 4096, headers=auth)
    assert big.status_code == 413
