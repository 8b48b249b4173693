"""The daemon fixture of tests/server, for the HTTP side of the report tests."""

from tests.server.conftest import serve  # noqa: F401
