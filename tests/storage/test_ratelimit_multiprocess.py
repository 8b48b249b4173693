"""Several processes, one rate limit: exact under real contention and the real clock.

Four worker processes (spawned, so nothing is shared but the store) take slots for the
same three accounts as fast as the limiter lets them, for a few seconds, waiting
``retry_after_s`` after each refusal as the delivery worker does (the drill in
``huntaze_testing.ratelimit_drill``). Every grant from every process is then checked
against the window rule, per account: a limiter that over-grants fails. How many grants
the workers get (no starvation) is a throughput figure: ``python bench/contention.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from huntaze_testing.ratelimit_drill import Drill, open_limiter, run_drill, window_violations

pytestmark = pytest.mark.slow


def assert_exact(drill: Drill) -> None:
    for account, stamps in run_drill(drill).items():
        # More grants than one window holds, or the window rule was never put to the test.
        assert len(stamps) > drill.messages, (account, len(stamps))
        violations = window_violations(drill, stamps)
        assert violations == [], f"{account}: window rule broken at {violations[:5]}"


def test_processes_sharing_one_sqlite_file_keep_the_limit(tmp_path: Path) -> None:
    drill = Drill("sqlite", str(tmp_path / "ratelimit.db"))
    open_limiter(drill).close()  # create the schema before the race starts
    assert_exact(drill)


def test_processes_sharing_one_dynamodb_table_keep_the_limit(moto_server: str) -> None:
    drill = Drill("dynamodb", moto_server)
    setup = open_limiter(drill, create_tables=True)
    setup.acquire("warm-up")  # create the table before the race starts
    setup.close()
    assert_exact(drill)
