"""Shared fixtures: no test touches a real home directory or a real AWS account."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Never let a test reach real AWS: fake credentials and a fixed region for boto3/moto.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point config and data dirs at tmp_path and drop inherited huntaze/SDK settings."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for name in list(os.environ):
        if name.startswith("HUNTAZE_") or name in {
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
            "OPENAI_API_VERSION",
            "AWS_ENDPOINT_URL",
            "NO_COLOR",
        }:
            monkeypatch.delenv(name, raising=False)
    yield tmp_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto in server mode on a loopback port; yields its endpoint.

    Its DynamoDB gets atomic conditional writes and cheap transactions, and its SQS
    hands a message to one receiver at a time, as the real services do (see
    huntaze_testing.moto_dynamodb and moto_sqs).
    """
    from moto.server import ThreadedMotoServer

    from huntaze_testing import moto_dynamodb, moto_sqs

    undo_dynamodb = moto_dynamodb.install()
    undo_sqs = moto_sqs.install()
    # One log line per request otherwise, thousands of them in a failure report.
    requests_log = logging.getLogger("werkzeug")
    monkeypatch.setattr(requests_log, "level", logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        undo_sqs()
        undo_dynamodb()


@pytest.fixture(params=["sqlite", "aws"])
def backends(request: pytest.FixtureRequest) -> dict[str, str]:
    """Queue and rate limiter: SQLite files, or SQS + DynamoDB on one moto server."""
    if request.param == "sqlite":
        return {}
    import boto3

    endpoint = request.getfixturevalue("moto_server")
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"huntaze-{os.getpid()}-{time.time_ns()}")["QueueUrl"]
    return {
        "HUNTAZE_QUEUE__BACKEND": "sqs",
        "HUNTAZE_QUEUE__QUEUE_URL": url,
        "HUNTAZE_QUEUE__ENDPOINT_URL": endpoint,
        "HUNTAZE_QUEUE__REGION": "us-east-1",
        "HUNTAZE_RATE_LIMIT__BACKEND": "dynamodb",
        "HUNTAZE_RATE_LIMIT__ENDPOINT_URL": endpoint,
        "HUNTAZE_RATE_LIMIT__REGION": "us-east-1",
        "HUNTAZE_RATE_LIMIT__CREATE_TABLES": "true",
        "HUNTAZE_RATE_LIMIT__TABLE": f"rl-{time.time_ns()}",
    }
