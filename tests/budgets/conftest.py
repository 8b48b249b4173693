"""The fake upstream fixtures of the orchestrator tests, shared with the budget tests."""

from tests.llm.test_orchestrator import fake, server  # noqa: F401
