"""`huntaze serve` keeps answering while its worker waits on the queue.

The worker's SQS calls go through a proxy to a moto server that holds every
ReceiveMessage at a gate until the test opens it. A request made while one is held can
only be answered if the call waits in a thread rather than on the event loop.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.server.conftest import Served

STATS = "/api/v2/costs/stats"


class GatedProxy:
    """Forwards AWS requests to ``upstream``; holds each SQS ReceiveMessage at a gate."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.held = threading.Event()  # a ReceiveMessage is waiting at the gate
        self.gate = threading.Event()  # set: everything passes
        self.passed_while_held = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target_header = self.headers.get("X-Amz-Target") or ""
                if target_header.endswith(".ReceiveMessage") or b"Action=ReceiveMessage" in body:
                    proxy.held.set()
                    proxy.gate.wait(60)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gated_sqs(moto_server: str) -> Iterator[tuple[GatedProxy, dict[str, str]]]:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    url = sqs.create_queue(QueueName="huntaze-event-loop")["QueueUrl"]
    proxy = GatedProxy(moto_server)
    env = {
        "HUNTAZE_QUEUE__BACKEND": "sqs",
        "HUNTAZE_QUEUE__QUEUE_URL": url,
        "HUNTAZE_QUEUE__ENDPOINT_URL": proxy.url,
        "HUNTAZE_QUEUE__REGION": "us-east-1",
    }
    try:
        yield proxy, env
    finally:
        proxy.close()


@pytest.mark.slow
def test_stats_answer_while_the_worker_is_inside_a_receive_message(
    serve: Callable[..., Served], gated_sqs: tuple[GatedProxy, dict[str, str]]
) -> None:
    proxy, env = gated_sqs
    served = serve(worker=True, env=env)
    client = served.client()
    try:
        assert proxy.held.wait(30), "the worker never polled the queue"
        response = client.get(STATS)
        # Answered while the worker's ReceiveMessage is still held at the gate.
        assert not proxy.gate.is_set()
        assert response.status_code == 200
        assert response.json()["today"]["requests"] == 0
        status = client.get("/api/v2/campaigns/status")
        assert status.status_code == 200 and not proxy.gate.is_set()
    finally:
        proxy.gate.set()
