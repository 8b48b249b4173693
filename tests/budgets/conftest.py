"""Fixtures shared with the budget tests: the fake upstream of the orchestrator tests and
the in-thread daemon of the server tests."""

from tests.llm.test_orchestrator import fake, server  # noqa: F401
from tests.server.conftest import serve  # noqa: F401
