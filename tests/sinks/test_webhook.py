"""The webhook sink against a real HTTP server on loopback that records what it gets."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from huntaze_cli.config import load_config
from huntaze_cli.errors import ConfigError, DeliveryError
from huntaze_cli.sinks import PermanentDelivery, RetryableDelivery, encode_payload, open_sink
from huntaze_cli.sinks.webhook import WebhookSink
from huntaze_testing.receiver import Receiver, Reply, running_receiver

SECRET = "whsec-Zq81-very-secret-value"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


@pytest.fixture
def sink(receiver: Receiver) -> Iterator[WebhookSink]:
    webhook = WebhookSink(receiver.url, SECRET, timeout_s=2.0)
    yield webhook
    webhook.close()


def payload(n: int = 1, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "idempotency_key": f"cmp-7:fan-{n}",
        "campaign_id": "cmp-7",
        "account": "creator_1",
        "recipient_id": f"fan-{n}",
        "text": "Salut ✨ new set tonight",
        "sent_at": "2025-03-01T12:00:00+00:00",
    }
    data.update(overrides)
    return data


def test_posts_the_signed_payload(receiver: Receiver, sink: WebhookSink) -> None:
    message = payload()
    assert sink.deliver(message) is True
    (got,) = receiver.received
    assert got.path == "/hooks/huntaze?source=test"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Idempotency-Key"] == "cmp-7:fan-1"
    assert got.body == encode_payload(message)[1]
    assert b": " not in got.body and b", " not in got.body  # compact
    assert json.loads(got.body) == message
    # The receiver's check: HMAC-SHA256 of the exact raw bytes with the shared secret.
    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Huntaze-Signature"] == f"sha256={expected}"
    assert SECRET not in str(got.headers)


def test_a_key_outside_ascii_is_percent_encoded_in_the_header(
    receiver: Receiver, sink: WebhookSink
) -> None:
    message = payload(recipient_id="fän 100%", idempotency_key="cmp-7:fän 100%")
    assert sink.deliver(message) is True
    (got,) = receiver.received
    assert got.headers["Idempotency-Key"] == "cmp-7:f%C3%A4n 100%25"
    assert unquote(got.headers["Idempotency-Key"]) == "cmp-7:fän 100%"
    assert json.loads(got.body)["idempotency_key"] == "cmp-7:fän 100%"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(receiver: Receiver, sink: WebhookSink, status: int) -> None:
    receiver.answer(Reply(status))
    assert sink.deliver(payload()) is True


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 410, 413, 422])
def test_other_statuses_are_permanent(receiver: Receiver, sink: WebhookSink, status: int) -> None:
    receiver.answer(Reply(status, body=b"nope:\n  bad   request"))
    with pytest.raises(PermanentDelivery) as caught:
        sink.deliver(payload())
    assert f"answered {status}" in caught.value.message
    assert "nope: bad request" in caught.value.message  # the body, on one line
    assert len(receiver.received) == 1  # no redirect followed, no retry inside


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_429_5xx_and_408_are_retryable(receiver: Receiver, sink: WebhookSink, status: int) -> None:
    receiver.answer(Reply(status))
    with pytest.raises(RetryableDelivery) as caught:
        sink.deliver(payload())
    assert f"answered {status}" in caught.value.message
    assert caught.value.retry_after_s is None


def test_retry_after_seconds_and_date(receiver: Receiver, sink: WebhookSink) -> None:
    in_90_s = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    receiver.answer(
        Reply(429, {"Retry-After": "7"}),
        Reply(503, {"Retry-After": in_90_s}),
        Reply(429, {"Retry-After": "soon"}),
    )
    with pytest.raises(RetryableDelivery) as first:
        sink.deliver(payload())
    assert first.value.retry_after_s == 7.0
    with pytest.raises(RetryableDelivery) as second:
        sink.deliver(payload())
    assert second.value.retry_after_s is not None
    assert 85 <= second.value.retry_after_s <= 90
    with pytest.raises(RetryableDelivery) as third:
        sink.deliver(payload())
    assert third.value.retry_after_s is None


def test_timeout_is_retryable(receiver: Receiver) -> None:
    slow = WebhookSink(receiver.url, SECRET, timeout_s=0.3)
    receiver.answer(Reply(200, delay_s=1.5))
    # The receiver would answer 200 after 1.5 s: raising proves the 0.3 s timeout applied.
    with pytest.raises(RetryableDelivery, match="no answer within 0.3 s"):
        slow.deliver(payload())
    receiver.answer(Reply(200))
    assert slow.deliver(payload(2)) is True  # the client recovers
    slow.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused_is_retryable() -> None:
    refused = WebhookSink(f"http://127.0.0.1:{_closed_port()}/hook", SECRET, timeout_s=1.0)
    with pytest.raises(RetryableDelivery, match="ConnectError"):
        refused.deliver(payload())
    refused.close()


def test_the_secret_appears_in_no_error_or_log(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url_with_token = receiver.url.replace("/hooks/", "/hooks/tok-abc123/")
    sink = WebhookSink(url_with_token, SECRET, timeout_s=0.3)
    errors: list[DeliveryError] = []
    replies = [
        Reply(status, {"Retry-After": "1"}, body=f"echo {SECRET} back".encode())
        for status in (301, 400, 401, 403, 404, 409, 429, 500, 503)
    ]
    receiver.answer(*replies, Reply(200, delay_s=1.0))
    for _ in range(len(replies) + 1):
        with pytest.raises(DeliveryError) as caught:
            sink.deliver(payload())
        errors.append(caught.value)
    sink.close()
    refused = WebhookSink(f"http://127.0.0.1:{_closed_port()}/x", SECRET, timeout_s=0.5)
    with pytest.raises(DeliveryError) as caught:
        refused.deliver(payload())
    errors.append(caught.value)
    refused.close()
    assert len(errors) == 11
    for error in errors:
        for text in (str(error), repr(error), error.message, error.hint or ""):
            assert SECRET not in text
            assert "tok-abc123" not in text  # nor the URL path, which may hold a token
    assert "********" in errors[1].message  # the echoed secret was masked
    assert SECRET not in caplog.text


def test_one_connection_is_reused(receiver: Receiver, sink: WebhookSink) -> None:
    for n in range(5):
        assert sink.deliver(payload(n)) is True
    assert len({got.client_port for got in receiver.received}) == 1


def test_threads_share_the_sink(receiver: Receiver, sink: WebhookSink) -> None:
    results: list[bool] = []

    def work(worker: int) -> None:
        for n in range(10):
            results.append(sink.deliver(payload(worker * 100 + n)))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 80
    keys = {json.loads(got.body)["idempotency_key"] for got in receiver.received}
    assert len(keys) == 80


def test_open_sink_reads_url_and_secret_from_config(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    config = load_config(
        overrides={
            "delivery.sink": "webhook",
            "delivery.webhook_url": receiver.url,
            "delivery.webhook_secret_env": "HOOK_SECRET",
            "delivery.webhook_timeout_s": 1.5,
        }
    )
    sink = open_sink(config)
    assert isinstance(sink, WebhookSink)
    assert sink.timeout_s == 1.5
    sink.check()
    assert sink.deliver(payload()) is True
    sink.close()


def test_missing_url_or_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    no_url = load_config(
        overrides={"delivery.sink": "webhook", "delivery.webhook_secret_env": "HOOK_SECRET"}
    )
    with pytest.raises(ConfigError, match=r"delivery\.webhook_url"):
        open_sink(no_url)
    no_env_name = load_config(
        overrides={"delivery.sink": "webhook", "delivery.webhook_url": "https://h.example/x"}
    )
    with pytest.raises(ConfigError, match=r"delivery\.webhook_secret_env"):
        open_sink(no_env_name)
    unset = load_config(
        overrides={
            "delivery.sink": "webhook",
            "delivery.webhook_url": "https://h.example/x",
            "delivery.webhook_secret_env": "HOOK_SECRET",
        }
    )
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="HOOK_SECRET"):
        open_sink(unset)
    with pytest.raises(ConfigError, match=r"delivery\.webhook_url"):
        WebhookSink("ftp://h.example/x", SECRET)
