"""A recording HTTP receiver on loopback: webhooks, Slack incoming webhooks, anything POSTed.

Tests script its answers (``answer(Reply(status=429, headers={"Retry-After": "1"}))``) and
read back every request it got (``received``), body bytes and headers exactly as sent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes
    client_port: int


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: records every request and answers from a script."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.replies: list[Reply] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/huntaze?source=test"

    def answer(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def next_reply(self) -> Reply:
        with self.lock:
            return self.replies.pop(0) if self.replies else Reply()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.received.append(
                Received(self.path, self.headers, body, self.client_address[1])
            )
        reply = self.server.next_reply()
        time.sleep(reply.delay_s)
        with contextlib.suppress(ConnectionError):  # a client that timed out has left
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A Receiver serving on a loopback port for the duration of the block."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
