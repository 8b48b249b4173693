"""Fixtures shared with the budget tests: the fake upstream of the orchestrator tests,
the in-thread daemon of the server tests, and the reservation stores of the store
contract (SQLite and DynamoDB)."""

from tests.llm.test_orchestrator import fake, server  # noqa: F401
from tests.server.conftest import serve  # noqa: F401
from tests.storage.test_reservation_contract import make_store  # noqa: F401
