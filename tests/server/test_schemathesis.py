"""Property-based requests built from the daemon's own /openapi.json: never a 5xx.

A bounded, derandomised run (the documented examples, then a few dozen valid and invalid
requests per route) so it stays well under a minute; skipped where schemathesis is not
installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.server.conftest import Served

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

EXAMPLES = 25


def test_no_request_from_the_schema_gets_a_server_error(serve: Callable[..., Served]) -> None:
    served = serve()
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 24  # every route of the API, /v1 and the invoice included
    failures: list[str] = []
    for operation in operations:
        examples = operation.get_strategies_from_examples()
        if operation.method.upper() == "POST" and operation.path == "/api/v2/campaigns/hybrid":
            assert examples, "the campaign body documents no example"
            # The documented example is a valid campaign: it must be accepted.
            for strategy in examples:
                _run(strategy, served.url, failures, examples=1, expect=202)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _run(operation.as_strategy(generation_mode=mode), served.url, failures)
    assert not failures, "\n".join(failures)


def _run(
    strategy: Any, url: str, failures: list[str], *, examples: int = EXAMPLES, expect: int = 0
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=url, timeout=30)
        if response.status_code >= 500 or (expect and response.status_code != expect):
            failures.append(
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            )

    check()
