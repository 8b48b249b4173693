"""The SQS sink against moto's SQS, and against a loopback server for SQS's failures."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from huntaze_cli.config import load_config
from huntaze_cli.errors import ConfigError, DeliveryError
from huntaze_cli.sinks import PermanentDelivery, RetryableDelivery, encode_payload, open_sink
from huntaze_cli.sinks.sqs import SQSSink, fifo_id, region_from_queue_url


def payload(n: int = 1, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "idempotency_key": f"cmp-3:fan-{n}",
        "campaign_id": "cmp-3",
        "account": "creator_9",
        "recipient_id": f"fan-{n}",
        "text": "Bonjour ✨ à ce soir",
        "sent_at": "2025-03-01T12:00:00-05:00",
    }
    data.update(overrides)
    return data


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def test_standard_queue_gets_the_payload_and_key_attribute(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="huntaze-out")["QueueUrl"]
    sink = SQSSink(url)
    assert sink.fifo is False
    message = payload()
    assert sink.deliver(message) is True
    (got,) = receive_all(sqs, url)
    assert got["Body"].encode() == encode_payload(message)[1]
    assert json.loads(got["Body"]) == message
    assert got["MessageAttributes"]["idempotency_key"]["StringValue"] == "cmp-3:fan-1"
    assert "MessageDeduplicationId" not in got["Attributes"]
    sink.check()
    sink.close()


def test_fifo_queue_dedupes_on_the_key_and_groups_by_account(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="huntaze-out.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    sink = SQSSink(url)
    assert sink.fifo is True
    assert sink.deliver(payload(1)) is True
    assert sink.deliver(payload(1)) is True  # a replay: SQS accepts and drops it
    assert sink.deliver(payload(2)) is True
    got = receive_all(sqs, url)
    assert [json.loads(m["Body"])["recipient_id"] for m in got] == ["fan-1", "fan-2"]
    assert [m["Attributes"]["MessageDeduplicationId"] for m in got] == [
        "cmp-3:fan-1",
        "cmp-3:fan-2",
    ]
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {"creator_9"}
    sink.close()


def test_fifo_ids_outside_the_allowed_set_are_hashed(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="odd.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    sink = SQSSink(url)
    long_key = "cmp-3:" + "r" * 200
    odd = payload(idempotency_key=long_key, account="créatrice à paris")
    assert sink.deliver(odd) is True
    assert sink.deliver(odd) is True
    (got,) = receive_all(sqs, url)
    assert got["Attributes"]["MessageDeduplicationId"] == fifo_id(long_key)
    assert got["Attributes"]["MessageGroupId"] == fifo_id("créatrice à paris")
    assert json.loads(got["Body"])["idempotency_key"] == long_key  # exact key in the body
    sink.close()


def test_fifo_id() -> None:
    assert fifo_id("cmp-1:fan_2/x!~") == "cmp-1:fan_2/x!~"
    assert fifo_id("k" * 128) == "k" * 128
    for value in ("k" * 129, "with space", "ünï", ""):
        hashed = fifo_id(value)
        assert len(hashed) == 64 and all(c in "0123456789abcdef" for c in hashed)
        assert fifo_id(value) == hashed  # stable: replays collapse


def test_region_comes_from_the_queue_url() -> None:
    assert region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/1/q") == "eu-west-1"
    assert region_from_queue_url("https://us-gov-west-1.queue.amazonaws.com/1/q") == (
        "us-gov-west-1"
    )
    assert region_from_queue_url("http://127.0.0.1:9324/000/q") is None


def test_missing_queue_is_a_config_error(sqs: Any) -> None:
    sink = SQSSink("https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue")
    with pytest.raises(ConfigError, match=r"delivery\.sqs_queue_url: queue .* does not exist"):
        sink.deliver(payload())
    with pytest.raises(DeliveryError, match="does not exist"):
        sink.check()
    sink.close()


def test_open_sink_builds_the_sqs_sink(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="from-config")["QueueUrl"]
    config = load_config(overrides={"delivery.sink": "sqs", "delivery.sqs_queue_url": url})
    sink = open_sink(config)
    assert isinstance(sink, SQSSink)
    assert sink.deliver(payload()) is True
    assert len(receive_all(sqs, url)) == 1
    sink.close()
    with pytest.raises(ConfigError, match=r"delivery\.sqs_queue_url"):
        open_sink(load_config(overrides={"delivery.sink": "sqs"}))


# --- failures, from a loopback server that answers like SQS's JSON protocol -----------


class FakeSQS(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeSQSHandler)
        self.status = 200
        self.error_code = ""
        self.calls = 0

    @property
    def queue_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/123456789012/local-queue"


class _FakeSQSHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeSQS

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.calls += 1
        if self.server.status == 200:
            body = json.dumps({"MessageId": "m-1", "MD5OfMessageBody": "x"}).encode()
        else:
            body = json.dumps(
                {"__type": f"com.amazonaws.sqs#{self.server.error_code}", "message": "no"}
            ).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_sqs() -> Iterator[FakeSQS]:
    server = FakeSQS()
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_non_aws_queue_url_is_its_own_endpoint(fake_sqs: FakeSQS) -> None:
    sink = SQSSink(fake_sqs.queue_url)
    assert sink.deliver(payload()) is True
    assert fake_sqs.calls == 1
    sink.close()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, "InternalError", RetryableDelivery),
        (503, "ServiceUnavailable", RetryableDelivery),
        (400, "InvalidMessageContents", PermanentDelivery),
        (400, "AccessDenied", ConfigError),
        (400, "KmsDisabled", ConfigError),
    ],
)
def test_sqs_errors_are_classified(
    fake_sqs: FakeSQS, status: int, code: str, expected: type[Exception]
) -> None:
    fake_sqs.status, fake_sqs.error_code = status, code
    sink = SQSSink(fake_sqs.queue_url)
    with pytest.raises(expected, match=code if expected is not ConfigError else "refused"):
        sink.deliver(payload())
    sink.close()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("RequestThrottled", 400, RetryableDelivery),
        ("ThrottlingException", 400, RetryableDelivery),
        ("KmsThrottled", 400, RetryableDelivery),
        ("SomethingNew", 500, RetryableDelivery),
        ("AWS.SimpleQueueService.NonExistentQueue", 400, ConfigError),
        ("InvalidParameterValue", 400, PermanentDelivery),
    ],
)
def test_classification_of_client_errors(code: str, status: int, expected: type[Exception]) -> None:
    sink = SQSSink("https://sqs.us-east-1.amazonaws.com/123456789012/q")
    error = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendMessage",
    )
    assert type(sink._classify(error, "message k")) is expected
    sink.close()


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SQSSink(f"http://127.0.0.1:{port}/123456789012/q", region="us-east-1")
    with pytest.raises(RetryableDelivery, match="unreachable"):
        sink.deliver(payload())
    with pytest.raises(DeliveryError, match="unreachable"):
        sink.check()
    sink.close()
